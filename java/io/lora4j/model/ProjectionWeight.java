package io.lora4j.model;

import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Tensor;

/** The frozen weight of one projection: a dense tensor or an NF4-quantized one. Shape [out, in]. */
public sealed interface ProjectionWeight extends AutoCloseable permits ProjectionWeight.Dense, ProjectionWeight.Quantized {

    /** Logical shape [out, in]. */
    long[] shape();

    /** Bytes of storage held (for NF4: packed codes and scales). */
    long storageBytes();

    /** The element type before quantization, or of the dense tensor. */
    DType sourceDtype();

    @Override
    void close();

    /** A dense F32, BF16 or F16 weight (possibly a view of a file mapping). */
    record Dense(Tensor tensor) implements ProjectionWeight {
        @Override public long[] shape() { return tensor.shape(); }
        @Override public long storageBytes() { return tensor.bytes(); }
        @Override public DType sourceDtype() { return tensor.dtype(); }
        @Override public void close() { tensor.close(); }
    }

    /** An NF4 weight in bitsandbytes' layout. */
    record Quantized(Nf4Weight weight) implements ProjectionWeight {
        @Override public long[] shape() { return weight.shape(); }
        @Override public long storageBytes() { return weight.storageBytes(); }
        @Override public DType sourceDtype() { return weight.sourceDtype(); }
        @Override public void close() { weight.close(); }
    }
}
