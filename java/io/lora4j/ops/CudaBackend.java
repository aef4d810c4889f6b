package io.lora4j.ops;

import static io.lora4j.nativeapi.Lora4jNative.*;

import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;

/**
 * The CUDA backend: liblora4j's hand-written kernels on device 0, all queued on one stream.
 * Device memory comes from cudaMalloc and is counted by the tensor memory tracker.
 */
public final class CudaBackend implements Backend {
    private final Pointer stream;
    private final String deviceInfo;

    /** Opens device 0; throws {@link IllegalStateException} when no usable device exists. */
    public CudaBackend() {
        NativeLibrary.load();
        int n = lora4j_cuda_device_count();
        if (n <= 0) throw new IllegalStateException("CUDA requested but unavailable: " + Backends.cudaProbeReason(n));
        lora4j_cuda_set_device(0);
        deviceInfo = lora4j_cuda_device_info(0).getString();
        stream = lora4j_cuda_stream_create();
    }

    @Override public Device device() { return Device.CUDA; }

    @Override public String description() { return "cuda (" + deviceInfo + ")"; }

    @Override
    public Tensor allocate(DType dtype, MemoryCategory category, long... shape) {
        long bytes = dtype.byteSize(Tensor.numel(shape));
        Pointer p = lora4j_cuda_malloc(Math.max(1, bytes));
        lora4j_cuda_memset(p, 0, bytes, null);
        return Tensor.ofDevice(dtype, Device.CUDA, category, p, q -> lora4j_cuda_free(q), shape);
    }

    @Override
    public Tensor upload(Tensor host, MemoryCategory category) {
        host.requireHost();
        Tensor t = allocate(host.dtype(), category, host.shape());
        lora4j_cuda_memcpy(t.pointer(), host.pointer(), host.bytes(), 1, null);
        return t;
    }

    @Override
    public Tensor download(Tensor t) {
        Tensor h = Tensor.allocate(t.dtype(), MemoryCategory.WORKSPACE, t.shape());
        lora4j_cuda_stream_synchronize(stream);
        lora4j_cuda_memcpy(h.pointer(), t.pointer(), t.bytes(), 2, null);
        return h;
    }

    @Override
    public void synchronize() {
        lora4j_cuda_stream_synchronize(stream);
    }

    @Override
    public void nf4Quantize(Tensor w, int blocksize, Tensor packed, Tensor absmax) {
        lora4j_cuda_nf4_quantize(w.pointer(), NativeDTypes.code(w.dtype()), w.numel(), blocksize,
                packed.pointer(), absmax.pointer(), stream);
    }

    @Override
    public void nf4Dequantize(Tensor packed, Tensor absmax, long n, int blocksize, Tensor out) {
        lora4j_cuda_nf4_dequantize(packed.pointer(), absmax.pointer(), n, blocksize, out.pointer(), stream);
    }

    @Override
    public float nf4DoubleQuant(Tensor absmax, Tensor qabsmax, Tensor nestedAbsmax) {
        Tensor offset = allocate(DType.F32, MemoryCategory.WORKSPACE, 1);
        try (offset; FloatPointer host = new FloatPointer(1)) {
            lora4j_cuda_nf4_double_quant(absmax.pointer(), absmax.numel(), qabsmax.pointer(),
                    nestedAbsmax.pointer(), offset.pointer(), stream);
            lora4j_cuda_stream_synchronize(stream);
            lora4j_cuda_memcpy(host, offset.pointer(), 4, 2, null);
            return host.get();
        }
    }

    @Override
    public void nf4DequantAbsmax(Tensor qabsmax, Tensor nestedAbsmax, float offset, Tensor absmax) {
        lora4j_cuda_nf4_dequant_absmax(qabsmax.pointer(), nestedAbsmax.pointer(), offset, qabsmax.numel(),
                absmax.pointer(), stream);
    }

    @Override
    public void nf4MatmulFwd(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y) {
        lora4j_cuda_nf4_matmul_fwd(x.pointer(), x.dim(0), x.dim(1), out, packed.pointer(), absmax.pointer(),
                blocksize, y.pointer(), stream);
    }

    @Override
    public void nf4MatmulBwdInput(Tensor dy, Tensor packed, Tensor absmax, int blocksize, long in, Tensor dx) {
        lora4j_cuda_nf4_matmul_bwd_input(dy.pointer(), dy.dim(0), in, dy.dim(1), packed.pointer(),
                absmax.pointer(), blocksize, dx.pointer(), stream);
    }
}
