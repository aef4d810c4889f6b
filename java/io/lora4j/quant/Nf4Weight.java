package io.lora4j.quant;

import io.lora4j.tensor.DType;
import io.lora4j.tensor.Tensor;
import java.util.Arrays;

/**
 * An NF4-quantized weight of logical shape {@code shape} (usually [out, in]), in bitsandbytes'
 * layout: {@code packed} holds ceil(n/2) bytes (first element in the high nibble), {@code absmax}
 * one fp32 scale per block of {@code blocksize} flattened elements. With double quantization,
 * {@code doubleQuant} holds the stored 8-bit form and {@code absmax}, where present, is its
 * dequantization (what bitsandbytes computes with), so both paths give the same numbers. On CUDA a
 * double-quantized weight keeps no fp32 absmax ({@code absmax} is null): the kernels dequantize the
 * block scales themselves (native/include/lora4j/storage.h), as bitsandbytes stores them.
 *
 * @param shape        logical shape of the original weight
 * @param blocksize    elements per absmax block (32..4096, a power of two)
 * @param sourceDtype  dtype of the weight before quantization (kept for quant_state metadata)
 * @param packed       U8 [ceil(n/2)]
 * @param absmax       F32 [ceil(n/blocksize)], the scales kernels use; null when {@code doubleQuant}
 *                     holds the only copy (CUDA)
 * @param doubleQuant  the double-quantized absmax, or null
 * @param computeDtype bitsandbytes' bnb_4bit_compute_dtype for the forward product: F32 (exact
 *                     dequantized products, the default) or BF16 (x and the dequantized weight
 *                     rounded to bf16, fp32 accumulation; see {@link Nf4#matmulInto})
 */
public record Nf4Weight(long[] shape, int blocksize, DType sourceDtype, Tensor packed, Tensor absmax,
        DoubleQuant doubleQuant, DType computeDtype) implements AutoCloseable {

    /** bitsandbytes' blocksize for the second-level (absmax) quantization. */
    public static final int NESTED_BLOCKSIZE = 256;

    /**
     * The double-quantized absmax: {@code absmax[b] = dynamicMap[qabsmax[b]] *
     * nestedAbsmax[b / 256] + offset}.
     *
     * @param qabsmax      U8 [nblocks]
     * @param nestedAbsmax F32 [ceil(nblocks/256)]
     * @param offset       the mean of the original absmax
     */
    public record DoubleQuant(Tensor qabsmax, Tensor nestedAbsmax, float offset) {}

    public Nf4Weight {
        shape = shape.clone();
        if (absmax == null && doubleQuant == null) throw new IllegalArgumentException("an NF4 weight needs its absmax or its double-quantized form");
        if (computeDtype != DType.F32 && computeDtype != DType.BF16)
            throw new IllegalArgumentException("NF4 compute dtype must be F32 or BF16, got " + computeDtype);
    }

    /** An fp32-compute weight. */
    public Nf4Weight(long[] shape, int blocksize, DType sourceDtype, Tensor packed, Tensor absmax, DoubleQuant doubleQuant) {
        this(shape, blocksize, sourceDtype, packed, absmax, doubleQuant, DType.F32);
    }

    /** The same tensors with another compute dtype (the returned record takes over closing them). */
    public Nf4Weight withComputeDtype(DType dtype) {
        return new Nf4Weight(shape, blocksize, sourceDtype, packed, absmax, doubleQuant, dtype);
    }

    /** Number of weight elements. */
    public long numel() {
        return Tensor.numel(shape);
    }

    /** Rows of a 2-D weight ([out, in]: out). */
    public long rows() {
        return shape[0];
    }

    /** Columns of a 2-D weight ([out, in]: in). */
    public long cols() {
        return shape.length == 1 ? shape[0] : numel() / shape[0];
    }

    /** Bytes held: packed codes plus the stored scales (8-bit with double quantization). */
    public long storageBytes() {
        long b = packed.bytes();
        if (doubleQuant != null) return b + doubleQuant.qabsmax.bytes() + doubleQuant.nestedAbsmax.bytes() + 4;
        return b + absmax.bytes();
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    @Override
    public void close() {
        packed.close();
        if (absmax != null) absmax.close();
        if (doubleQuant != null) {
            doubleQuant.qabsmax.close();
            doubleQuant.nestedAbsmax.close();
        }
    }

    @Override
    public String toString() {
        return "NF4" + Arrays.toString(shape) + " blocksize " + blocksize + (doubleQuant != null ? " double-quant" : "")
                + (computeDtype == DType.BF16 ? " compute bf16" : "");
    }
}
