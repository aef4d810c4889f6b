package io.lora4j.gguf;

/**
 * The whole-file quantization choices of {@code lora4j export --quant}, with llama.cpp's
 * {@code llama_ftype} ids (written as {@code general.file_type}) and the per-tensor type rule of
 * llama.cpp's {@code llama_tensor_get_type} (src/llama-quant.cpp) for these types, so a file
 * written here has the tensor types {@code llama-quantize} would give the f32 file:
 * <ul>
 * <li>1-D tensors (norms, rope_freqs) stay F32; 2-D weights get the default type;</li>
 * <li>quantized types: {@code output.weight} (or {@code token_embd.weight} when the embedding is
 *     tied, llama.cpp's "has_tied_embeddings") gets Q6_K, or Q8_0 when its rows are not a multiple of
 *     256 (or the default is already Q8_0);</li>
 * <li>Q4_K_M: {@code attn_v} and {@code ffn_down} of the layers where {@link #useMoreBits} holds get Q6_K;</li>
 * <li>a row length the chosen block does not divide falls back: Q4_K to Q5_0, Q6_K to Q8_0; a
 *     32-block type that still does not fit becomes F16.</li>
 * </ul>
 * The 70B rule (attn_v of an 80-layer GQA llama to Q5_K) needs Q5_K, which lora4j does not write:
 * such a model is refused for q4_K_M.
 */
public enum GgufFileType {
    F32("f32", 0, GgmlType.F32),
    F16("f16", 1, GgmlType.F16),
    BF16("bf16", 32, GgmlType.BF16),
    Q8_0("q8_0", 7, GgmlType.Q8_0),
    Q4_0("q4_0", 2, GgmlType.Q4_0),
    Q4_K_M("q4_K_M", 15, GgmlType.Q4_K);

    /** The CLI name. */
    public final String key;
    /** llama_ftype (llama.h), general.file_type. */
    public final int ftype;
    /** The type of a 2-D weight no rule changes. */
    public final GgmlType defaultType;

    GgufFileType(String key, int ftype, GgmlType defaultType) {
        this.key = key;
        this.ftype = ftype;
        this.defaultType = defaultType;
    }

    /** Parses a CLI name (case-insensitive); null when unknown. */
    public static GgufFileType parse(String s) {
        for (GgufFileType t : values()) if (t.key.equalsIgnoreCase(s.trim())) return t;
        return null;
    }

    public static String names() {
        StringBuilder sb = new StringBuilder();
        for (GgufFileType t : values()) sb.append(sb.length() == 0 ? "" : "|").append(t.key);
        return sb.toString();
    }

    /** llama-quant.cpp's use_more_bits: the first and last eighth of the layers and every third between. */
    static boolean useMoreBits(int layer, int layers) {
        return layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
    }

    /**
     * Chooses the tensor types of one file, tensor by tensor in file order (llama.cpp counts attn_v
     * tensors in file order).
     */
    public final class Rule {
        private final int layers;
        private final boolean tied;
        private final boolean is70b;
        private int attnV;

        /**
         * @param layers number of blocks
         * @param tied   the file has no output.weight
         * @param is70b  llama.cpp's LLM_TYPE_70B test: llama with 80 layers and fewer kv heads than heads
         */
        public Rule(int layers, boolean tied, boolean is70b) {
            this.layers = layers;
            this.tied = tied;
            this.is70b = is70b;
        }

        /** The type of tensor {@code name} (GGUF name) with {@code nDims} dimensions and rows of {@code ne0}. */
        public GgmlType typeOf(String name, int nDims, long ne0) {
            return fallback(preferred(name, nDims, ne0), ne0);
        }

        /**
         * The type llama.cpp's mixture rule picks before the shape fallback ({@link GgufFileType#fallback}).
         * Call once per tensor, in file order.
         *
         * @throws IllegalArgumentException where llama.cpp would pick a type lora4j does not write
         */
        public GgmlType preferred(String name, int nDims, long ne0) {
            if (nDims < 2 || !name.endsWith("weight") || name.contains("_norm.weight")) return GgmlType.F32;
            GgmlType t = defaultType;
            if (!t.quantized()) return t;
            boolean output = name.equals(GgufArchitecture.OUTPUT + ".weight") || (tied && name.equals(GgufArchitecture.TOKEN_EMBD + ".weight"));
            if (output) {
                if (ne0 % t.blockSize != 0) t = GgmlType.Q8_0;
                else if (t != GgmlType.Q8_0) t = GgmlType.Q6_K;
            } else if (name.contains("attn_v.weight")) {
                if (GgufFileType.this == Q4_K_M && useMoreBits(attnV, layers)) t = GgmlType.Q6_K;
                if (is70b && (t == GgmlType.Q4_K))
                    throw new IllegalArgumentException("q4_K_M of an 80-layer GQA llama (llama.cpp's 70B rule) needs q5_K for "
                            + name + ", which lora4j does not write: choose q8_0 or q4_0");
                attnV++;
            } else if (name.contains("attn_qkv.weight") && GgufFileType.this == Q4_K_M) {
                throw new IllegalArgumentException("q4_K_M puts the fused " + name + " in q5_K (llama-quantize's rule), which lora4j does not write: "
                        + "choose q8_0 or q4_0");
            } else if (name.contains("ffn_down")) {
                int layer = layerOf(name);
                if (GgufFileType.this == Q4_K_M && useMoreBits(layer, layers)) t = GgmlType.Q6_K;
            }
            return t;
        }

        private int layerOf(String name) {
            int a = name.indexOf('.'), b = name.indexOf('.', a + 1);
            return Integer.parseInt(name.substring(a + 1, b));
        }
    }

    /** llama.cpp's tensor_type_fallback for rows of {@code ne0} elements. */
    static GgmlType fallback(GgmlType t, long ne0) {
        if (ne0 % t.blockSize == 0) return t;
        GgmlType r;
        switch (t) {
            case Q4_K: r = GgmlType.Q5_0; break;
            case Q6_K: r = GgmlType.Q8_0; break;
            default: r = t;
        }
        return ne0 % r.blockSize == 0 ? r : GgmlType.F16;
    }

    /** A rule for one file of {@code layers} blocks (see {@link Rule#Rule}). */
    public Rule rule(int layers, boolean tied, boolean is70b) {
        return new Rule(layers, tied, is70b);
    }

    @Override
    public String toString() {
        return key;
    }
}
