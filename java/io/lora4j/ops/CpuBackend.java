package io.lora4j.ops;

import io.lora4j.nativeapi.Lora4jOpsNative;
import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.function.Consumer;
import org.bytedeco.javacpp.Pointer;

/**
 * The CPU backend: AVX2/FMA kernels of liblora4j on its own thread pool, sgemm from OpenBLAS. The ops are
 * {@link NativeBackend}'s over the CPU entries; this class holds what is particular to host memory.
 */
public final class CpuBackend extends NativeBackend {
    public CpuBackend() {
        super(new KernelEntries.Cpu());
    }

    @Override public Device device() { return Device.CPU; }

    @Override
    public String description() {
        String blas = NativeLibrary.blasName();
        // "openblas:/long/cache/path/libopenblas_nolapack.so.0" -> "openblas (libopenblas_nolapack.so.0)"
        int slash = blas.lastIndexOf('/');
        if (blas.startsWith("openblas:") && slash >= 0) blas = "openblas (" + blas.substring(slash + 1) + ")";
        return "cpu, " + NativeLibrary.numThreads() + " threads (" + NativeLibrary.buildInfo() + "; sgemm " + blas + ")";
    }

    @Override
    public Tensor allocate(DType dtype, MemoryCategory category, long... shape) {
        return Tensor.allocate(dtype, category, shape);
    }

    @Override
    public Tensor empty(DType dtype, MemoryCategory category, long... shape) {
        return Tensor.empty(dtype, category, shape);
    }

    @Override
    public Tensor upload(Tensor host, MemoryCategory category) {
        host.requireHost();
        return host;
    }

    @Override
    public Tensor download(Tensor t) {
        t.requireHost();
        return t;
    }

    @Override
    public void downloadInto(Tensor t, Tensor host) {
        if (t.pointer().address() != host.pointer().address()) Pointer.memcpy(host.pointer(), t.pointer(), t.bytes());
    }

    @Override public void synchronize() {}

    /** The kernel writes straight into the host buffer. */
    @Override
    void resultToHost(long bytes, Consumer<Pointer> kernel, Pointer host) {
        Pointer.memset(host, 0, bytes);
        kernel.accept(host);
    }

    /** bnb_4bit_compute_dtype bfloat16: bf16 operands, fp32 sums (native/cpu/nf4_bf16.cpp); a CPU-only entry. */
    @Override
    public void nf4MatmulFwdBf16(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y) {
        Lora4jOpsNative.lora4j_nf4_matmul_fwd_bf16(x.pointer(), x.dim(0), x.dim(1), out, packed.pointer(), absmax.pointer(),
                blocksize, y.pointer());
    }

    /** The path of the bf16-compute NF4 product ("avx512bf16", "avx512", "avx2" or "scalar"). */
    public static String nf4Bf16Path() {
        NativeLibrary.load();
        return Lora4jOpsNative.lora4j_nf4_bf16_path().getString();
    }

    /** The SIMD path of the decode kernels ("avx512", "avx2" or "scalar"; LORA4J_DECODE_ISA forces one). */
    public static String decodeIsa() {
        NativeLibrary.load();
        return Lora4jOpsNative.lora4j_decode_isa().getString();
    }

    /** The CPU "offload": a plain copy into a separate OFFLOADED host tensor (counted apart from CHECKPOINTS). */
    private record HostCopy(Tensor host) implements Offloaded {
        @Override public void close() {}
    }

    @Override
    public Offloaded offloadAsync(Tensor x) {
        x.requireHost();
        Tensor host = Tensor.empty(x.dtype(), MemoryCategory.OFFLOADED, x.shape()); // overwritten by the copy
        Pointer.memcpy(host.pointer(), x.pointer(), x.bytes());
        x.close();
        return new HostCopy(host);
    }

    @Override public void prefetch(Offloaded h) {}

    @Override
    public Tensor await(Offloaded h) {
        return h.host();
    }
}
