package io.lora4j.ops;

import static io.lora4j.nativeapi.Lora4jNative.*;

import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import org.bytedeco.javacpp.FloatPointer;

/** The CPU backend: AVX2/FMA + OpenMP kernels of liblora4j, sgemm from OpenBLAS. */
public final class CpuBackend implements Backend {
    public CpuBackend() {
        NativeLibrary.load();
    }

    @Override public Device device() { return Device.CPU; }

    @Override
    public String description() {
        return "cpu (" + NativeLibrary.buildInfo() + "; sgemm " + NativeLibrary.blasName() + ")";
    }

    @Override
    public Tensor allocate(DType dtype, MemoryCategory category, long... shape) {
        return Tensor.allocate(dtype, category, shape);
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

    @Override public void synchronize() {}

    @Override
    public void nf4Quantize(Tensor w, int blocksize, Tensor packed, Tensor absmax) {
        lora4j_nf4_quantize(w.pointer(), NativeDTypes.code(w.dtype()), w.numel(), blocksize,
                packed.bytePointer(), absmax.floatPointer());
    }

    @Override
    public void nf4Dequantize(Tensor packed, Tensor absmax, long n, int blocksize, Tensor out) {
        lora4j_nf4_dequantize(packed.bytePointer(), absmax.floatPointer(), n, blocksize, out.floatPointer());
    }

    @Override
    public float nf4DoubleQuant(Tensor absmax, Tensor qabsmax, Tensor nestedAbsmax) {
        try (FloatPointer offset = new FloatPointer(1)) {
            lora4j_nf4_double_quant(absmax.floatPointer(), absmax.numel(), qabsmax.bytePointer(),
                    nestedAbsmax.floatPointer(), offset);
            return offset.get();
        }
    }

    @Override
    public void nf4DequantAbsmax(Tensor qabsmax, Tensor nestedAbsmax, float offset, Tensor absmax) {
        lora4j_nf4_dequant_absmax(qabsmax.bytePointer(), nestedAbsmax.floatPointer(), offset,
                qabsmax.numel(), absmax.floatPointer());
    }

    @Override
    public void nf4MatmulFwd(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y) {
        lora4j_nf4_matmul_fwd(x.floatPointer(), x.dim(0), x.dim(1), out, packed.bytePointer(),
                absmax.floatPointer(), blocksize, y.floatPointer());
    }

    @Override
    public void nf4MatmulBwdInput(Tensor dy, Tensor packed, Tensor absmax, int blocksize, long in, Tensor dx) {
        lora4j_nf4_matmul_bwd_input(dy.floatPointer(), dy.dim(0), in, dy.dim(1), packed.bytePointer(),
                absmax.floatPointer(), blocksize, dx.floatPointer());
    }
}
