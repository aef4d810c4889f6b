package io.lora4j.model;

/**
 * The seven linear projections of a Llama decoder layer, the LoRA/QLoRA targets. Weights are
 * [out, in] (nn.Linear layout).
 */
public enum Projection {
    Q("self_attn", "q_proj"),
    K("self_attn", "k_proj"),
    V("self_attn", "v_proj"),
    O("self_attn", "o_proj"),
    GATE("mlp", "gate_proj"),
    UP("mlp", "up_proj"),
    DOWN("mlp", "down_proj");

    /** The parent module in HF naming ("self_attn" or "mlp"). */
    public final String block;
    /** The module name, as in PEFT's target_modules ("q_proj", ...). */
    public final String moduleName;

    Projection(String block, String moduleName) {
        this.block = block;
        this.moduleName = moduleName;
    }

    /** The module path inside the model, e.g. {@code model.layers.3.self_attn.q_proj}. */
    public String modulePath(int layer) {
        return "model.layers." + layer + "." + block + "." + moduleName;
    }

    /** The HF tensor name of the weight, e.g. {@code model.layers.3.self_attn.q_proj.weight}. */
    public String weightName(int layer) {
        return modulePath(layer) + ".weight";
    }

    /** Rows (output features) of this projection under {@code c}. */
    public long outFeatures(LlamaConfig c) {
        switch (this) {
            case Q: return c.qDim();
            case K: case V: return c.kvDim();
            case O: case DOWN: return c.hiddenSize();
            default: return c.intermediateSize();
        }
    }

    /** Columns (input features) of this projection under {@code c}. */
    public long inFeatures(LlamaConfig c) {
        switch (this) {
            case O: return c.qDim();
            case DOWN: return c.intermediateSize();
            default: return c.hiddenSize();
        }
    }

    /** The weight shape [out, in]. */
    public long[] shape(LlamaConfig c) {
        return new long[] {outFeatures(c), inFeatures(c)};
    }

    /** The projection with PEFT module name {@code name} ("q_proj", ...). */
    public static Projection ofModuleName(String name) {
        for (Projection p : values()) if (p.moduleName.equals(name)) return p;
        throw new IllegalArgumentException("unknown projection '" + name + "' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
    }
}
