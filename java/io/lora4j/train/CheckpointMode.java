package io.lora4j.train;

import java.util.Locale;

/**
 * Unsloth's {@code use_gradient_checkpointing}. Every mode gives bit-identical gradients: the
 * recomputed layers run the same kernels on the same inputs with the same dropout seeds.
 */
public enum CheckpointMode {
    /** {@code false}: every layer's activations stay alive until its backward. */
    NONE,
    /** {@code true}: only each decoder layer's input is kept; the layer is recomputed in the backward. */
    TRUE,
    /**
     * {@code "unsloth"}: as {@link #TRUE}, and the kept layer inputs (all but the last layer's) move
     * to host memory (category {@link io.lora4j.tensor.MemoryCategory#OFFLOADED}) and come back
     * before their layer's backward.
     */
    UNSLOTH,
    /**
     * {@code "chunked"}: one checkpoint per group of k consecutive layers (config key
     * {@code checkpoint_every}; by default a {@link TrainingRun} takes the group size with the
     * lowest predicted peak, {@code io.lora4j.plan.MemoryPlanner.bestCheckpointEvery}, which is
     * usually well below round(√L), the default of a bare {@link LoraTrainingModel}). The forward keeps only the inputs of layers 0, k,
     * 2k, ...; the backward recomputes each group from its stored input, keeping that group's
     * activations, and back-propagates through it. Peak ≈ ⌈L/k⌉ layer inputs + k layers'
     * activations (k = 1 is {@link #TRUE}, k = L stores as much as {@link #NONE} and recomputes all).
     */
    CHUNKED;

    /** Parses false/none/true/"unsloth"/"chunked" (YAML booleans or strings). */
    public static CheckpointMode parse(Object v) {
        String s = String.valueOf(v).trim().toLowerCase(Locale.ROOT);
        switch (s) {
            case "false": case "none": return NONE;
            case "true": return TRUE;
            case "unsloth": return UNSLOTH;
            case "chunked": return CHUNKED;
            default: throw new IllegalArgumentException("use_gradient_checkpointing must be false, true, unsloth or chunked, got '" + v + "'");
        }
    }

    /**
     * The default group size of {@link #CHUNKED} for {@code numLayers} layers: round(√L), at least 1
     * (√L groups of √L layers minimise ⌈L/k⌉ + k, the stored inputs plus the live group).
     */
    public static int defaultEvery(int numLayers) {
        return Math.max(1, (int) Math.round(Math.sqrt(numLayers)));
    }
}
