package io.lora4j.ops;

import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;

/**
 * The compute backend: one implementation per device, same semantics. Arguments are validated by
 * the callers in {@code io.lora4j.quant} and {@code io.lora4j.ops} before they arrive here, so
 * implementations only move pointers to the native kernels. Tensors passed in live on
 * {@link #device()}.
 */
public interface Backend {
    Device device();

    /** A line for logs: device name and what the kernels run on. */
    String description();

    /** A zero-filled tensor on this backend's device. */
    Tensor allocate(DType dtype, MemoryCategory category, long... shape);

    /** A copy of a host tensor on this device (the same tensor's copy on the CPU backend). */
    Tensor upload(Tensor host, MemoryCategory category);

    /** A host copy of a tensor of this device. */
    Tensor download(Tensor t);

    /** Waits until all queued work is done. */
    void synchronize();

    // ---- NF4 (see native/include/lora4j/nf4.h for the exact format) ----

    /** packed [(n+1)/2] U8 and absmax [ceil(n/blocksize)] F32 from w (F32, BF16 or F16). */
    void nf4Quantize(Tensor w, int blocksize, Tensor packed, Tensor absmax);

    /** out [n] F32 from packed NF4 and fp32 absmax. */
    void nf4Dequantize(Tensor packed, Tensor absmax, long n, int blocksize, Tensor out);

    /** qabsmax [nblocks] U8 and nested [ceil(nblocks/256)] F32 from absmax; returns the offset. */
    float nf4DoubleQuant(Tensor absmax, Tensor qabsmax, Tensor nestedAbsmax);

    /** absmax [nblocks] F32 from the double-quantized form. */
    void nf4DequantAbsmax(Tensor qabsmax, Tensor nestedAbsmax, float offset, Tensor absmax);

    /** y [T, out] = x [T, in] · dequant(w)ᵀ for an NF4 weight w of shape [out, in]. */
    void nf4MatmulFwd(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y);

    /** dx [T, in] = dy [T, out] · dequant(w) for an NF4 weight w of shape [out, in]. */
    void nf4MatmulBwdInput(Tensor dy, Tensor packed, Tensor absmax, int blocksize, long in, Tensor dx);
}
