package io.lora4j.ops;

import io.lora4j.tensor.Tensor;

/**
 * The dimensions an op hands its kernel, read from its tensors in one place: {@link NativeBackend}
 * passes them to liblora4j, and {@link CheckedBackend} sizes the other tensors from them (after it
 * checked the ranks these reads assume). Ops whose only dimension is a tensor's element count read
 * {@code numel()} directly.
 */
final class OpShapes {
    private OpShapes() {}

    /**
     * A row-major [rows, cols] activation: RMSNorm's [T, dim] input, cross-entropy's [T, V] logits
     * or a [n, vc] vocabulary slice of them.
     */
    record Rows(long rows, long cols) {
        static Rows of(Tensor x) {
            return new Rows(x.dim(0), x.dim(1));
        }
    }

    /** An NF4 matmul with a packed [out, in] weight: x [T, in] to y [T, out], or dy [T, out] to dx [T, in]. */
    record Nf4Matmul(long t, long in, long out) {
        static Nf4Matmul forward(Tensor x, long out) {
            return new Nf4Matmul(x.dim(0), x.dim(1), out);
        }

        static Nf4Matmul backwardInput(Tensor dy, long in) {
            return new Nf4Matmul(dy.dim(0), in, dy.dim(1));
        }
    }

    /** A LoRA linear: x [T, in], lora_A [r, in], lora_B [out, r]. */
    record Lora(long t, long in, long out, long r) {
        static Lora of(Tensor x, Tensor a, Tensor b) {
            return new Lora(x.dim(0), x.dim(1), b.dim(0), a.dim(0));
        }
    }

    /** An embedding table [vocab, dim]. */
    record Table(long vocab, long dim) {
        static Table of(Tensor table) {
            return new Table(table.dim(0), table.dim(1));
        }
    }

    /** A single-token product with a dense weight [out, in]. */
    record Matvec(long in, long out) {
        static Matvec of(Tensor w) {
            return new Matvec(w.dim(1), w.dim(0));
        }
    }
}
