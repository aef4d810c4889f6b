package io.lora4j.tensor;

/** What an allocation holds; {@link MemoryTracker} counts live and peak bytes per category. */
public enum MemoryCategory {
    WEIGHTS, LORA, GRADS, OPTIMIZER, ACTIVATIONS, CHECKPOINTS, OFFLOADED, WORKSPACE, LOGITS
}
