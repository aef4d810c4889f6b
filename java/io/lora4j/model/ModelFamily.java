package io.lora4j.model;

/**
 * The decoder families lora4j loads, by HF {@code model_type}. What varies between them is
 * described by {@link Architecture}; the layer itself is one {@link DecoderBlock}.
 */
public enum ModelFamily {
    LLAMA("llama", "LlamaForCausalLM"),
    MISTRAL("mistral", "MistralForCausalLM"),
    QWEN2("qwen2", "Qwen2ForCausalLM"),
    QWEN3("qwen3", "Qwen3ForCausalLM"),
    GEMMA3_TEXT("gemma3_text", "Gemma3ForCausalLM"),
    GEMMA2("gemma2", "Gemma2ForCausalLM"),
    /** Fused qkv_proj and gate_up_proj ({@link Architecture#fusedProjections()}). */
    PHI3("phi3", "Phi3ForCausalLM");

    /** config.json's model_type. */
    public final String modelType;
    /** config.json's architectures[0] (the transformers class). */
    public final String hfClass;

    ModelFamily(String modelType, String hfClass) {
        this.modelType = modelType;
        this.hfClass = hfClass;
    }

    /** The family of {@code modelType}, or null when lora4j does not load it. */
    public static ModelFamily ofModelType(String modelType) {
        for (ModelFamily f : values()) if (f.modelType.equals(modelType)) return f;
        return null;
    }

    /** The model_type values lora4j loads, for error messages. */
    public static String supported() {
        StringBuilder sb = new StringBuilder();
        for (ModelFamily f : values()) sb.append(sb.length() == 0 ? "" : ", ").append('"').append(f.modelType).append('"');
        return sb.toString();
    }
}
