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

    /** Phi-3's fused module of q_proj, k_proj and v_proj: one weight [Q | K | V] rows. */
    public static final String QKV = "qkv_proj";
    /** Phi-3's fused module of gate_proj and up_proj: one weight [gate | up] rows. */
    public static final String GATE_UP = "gate_up_proj";

    /**
     * The module that holds this projection in a model with fused projections (Phi-3):
     * {@value #QKV} for Q, K, V; {@value #GATE_UP} for GATE, UP; its own name otherwise.
     */
    public String fusedModuleName() {
        return switch (this) {
            case Q, K, V -> QKV;
            case GATE, UP -> GATE_UP;
            default -> moduleName;
        };
    }

    /** The first projection of this one's fused module (Q for K and V, GATE for UP; itself otherwise). */
    public Projection fusedLeader() {
        return switch (this) {
            case K, V -> Q;
            case UP -> GATE;
            default -> this;
        };
    }

    /** The projections of this one's fused module, in row order ([Q, K, V], [GATE, UP], or itself). */
    public Projection[] fusedGroup() {
        return switch (this) {
            case Q, K, V -> new Projection[] {Q, K, V};
            case GATE, UP -> new Projection[] {GATE, UP};
            default -> new Projection[] {this};
        };
    }

    /** Rows of this projection's whole fused module under {@code c}. */
    public long fusedOutFeatures(LlamaConfig c) {
        long n = 0;
        for (Projection p : fusedGroup()) n += p.outFeatures(c);
        return n;
    }

    /** The module path of this projection's fused module, e.g. {@code model.layers.3.self_attn.qkv_proj}. */
    public String fusedModulePath(int layer) {
        return "model.layers." + layer + "." + block + "." + fusedModuleName();
    }

    /** The projection with PEFT module name {@code name} ("q_proj", ...). */
    public static Projection ofModuleName(String name) {
        for (Projection p : values()) if (p.moduleName.equals(name)) return p;
        throw new IllegalArgumentException("unknown projection '" + name + "' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
    }
}
