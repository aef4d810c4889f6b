package io.lora4j.train;

import java.util.Locale;

/**
 * Unsloth's {@code use_gradient_checkpointing}. Every mode gives bit-identical gradients: the
 * recomputed layer runs the same kernels on the same input with the same dropout seeds.
 */
public enum CheckpointMode {
    /** {@code false}: every layer's activations stay alive until its backward. */
    NONE,
    /** {@code true}: only each decoder layer's input is kept; the layer is recomputed in the backward. */
    TRUE,
    /**
     * {@code "unsloth"}: as {@link #TRUE}, and the kept layer inputs (all but the last layer's) move
     * to host memory (category {@link io.lora4j.tensor.MemoryCategory#OFFLOADED}) and come back
     * before their layer's backward. The copy is synchronous here (no side stream yet).
     */
    UNSLOTH;

    /** Parses false/true/"unsloth" (YAML booleans or strings). */
    public static CheckpointMode parse(Object v) {
        String s = String.valueOf(v).trim().toLowerCase(Locale.ROOT);
        switch (s) {
            case "false": case "none": return NONE;
            case "true": return TRUE;
            case "unsloth": return UNSLOTH;
            default: throw new IllegalArgumentException("use_gradient_checkpointing must be false, true or unsloth, got '" + v + "'");
        }
    }
}
