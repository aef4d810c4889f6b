package io.lora4j.model;

/** Where a model's weights came from. */
public enum ModelFormat {
    /** A llama2.c legacy (v0) .bin checkpoint. */
    LLAMA2C,
    /** An HF directory with dense safetensors. */
    HF,
    /** An HF directory saved by bitsandbytes/transformers with 4-bit NF4 projections. */
    HF_BNB4
}
