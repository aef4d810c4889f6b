package io.lora4j.gguf;

import io.lora4j.model.LlamaConfig;
import io.lora4j.model.Projection;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * How one model family maps onto llama.cpp's GGUF conventions (gguf-py constants.py and
 * convert_hf_to_gguf.py): the architecture name, the tensor names, the architecture metadata, and
 * whether q/k rows must go from HF's rotate-half order back to the interleaved order llama.cpp's
 * {@code llama} graph expects. Families are rows of {@link #TABLE}, keyed by HF {@code model_type}:
 * a new family is a new row (plus its metadata in {@link #metadata}).
 *
 * @param modelTypes     the HF model_type values this row serves
 * @param name           general.architecture, the prefix of the architecture keys
 * @param permuteQk      q_proj/k_proj rows are permuted per head: GGUF row 2r+c of a head = HF row c·d/2 + r
 * @param projections    GGUF tensor name (inside {@code blk.N.}) of each projection
 * @param inputNorm      the pre-attention RMSNorm
 * @param postNorm       the pre-MLP RMSNorm
 */
public record GgufArchitecture(List<String> modelTypes, String name, boolean permuteQk, Map<Projection, String> projections,
        String inputNorm, String postNorm) {

    public static final String TOKEN_EMBD = "token_embd";
    public static final String OUTPUT_NORM = "output_norm";
    public static final String OUTPUT = "output";
    public static final String ROPE_FREQS = "rope_freqs";

    /** Llama (and Mistral without a sliding window, which convert_hf_to_gguf also writes as llama). */
    public static final GgufArchitecture LLAMA = new GgufArchitecture(List.of("llama", "mistral"), "llama", true, names(
            "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"), "attn_norm", "ffn_norm");

    /** Every family lora4j exports. */
    public static final List<GgufArchitecture> TABLE = List.of(LLAMA);

    private static Map<Projection, String> names(String q, String k, String v, String o, String gate, String up, String down) {
        EnumMap<Projection, String> m = new EnumMap<>(Projection.class);
        m.put(Projection.Q, q);
        m.put(Projection.K, k);
        m.put(Projection.V, v);
        m.put(Projection.O, o);
        m.put(Projection.GATE, gate);
        m.put(Projection.UP, up);
        m.put(Projection.DOWN, down);
        return m;
    }

    /** The row for HF model_type {@code modelType}, if lora4j exports it. */
    public static Optional<GgufArchitecture> of(String modelType) {
        for (GgufArchitecture a : TABLE) if (a.modelTypes.contains(modelType)) return Optional.of(a);
        return Optional.empty();
    }

    /** The GGUF name of a projection weight, e.g. {@code blk.3.attn_q.weight}. */
    public String weightName(int layer, Projection p) {
        return "blk." + layer + "." + projections.get(p) + ".weight";
    }

    public String inputNormName(int layer) {
        return "blk." + layer + "." + inputNorm + ".weight";
    }

    public String postNormName(int layer) {
        return "blk." + layer + "." + postNorm + ".weight";
    }

    /** Whether the rows of projection p must be permuted, and by how many heads (0: no permutation). */
    public int permuteHeads(Projection p, LlamaConfig c) {
        if (!permuteQk) return 0;
        if (p == Projection.Q) return c.numAttentionHeads();
        if (p == Projection.K) return c.numKeyValueHeads();
        return 0;
    }

    /**
     * The source row (HF order) of GGUF row {@code row} of a projection whose rows are {@code heads}
     * blocks of {@code headDim}: within a head, GGUF row 2r+c holds HF row c·headDim/2 + r (the
     * inverse of DESIGN §4's HF permutation; convert_hf_to_gguf's {@code LlamaModel.permute}).
     */
    public static long sourceRow(long row, int headDim) {
        long h = row / headDim, i = row % headDim;
        return h * headDim + (i % 2) * (headDim / 2) + i / 2;
    }

    /**
     * The architecture metadata ({@code <arch>.context_length}, ...) of {@code c}, as
     * convert_hf_to_gguf writes it for this family.
     */
    public void metadata(LlamaConfig c, GgufWriter w) {
        String a = name + ".";
        w.put(a + "context_length", GgufValue.u32(c.maxPositionEmbeddings()));
        w.put(a + "embedding_length", GgufValue.u32(c.hiddenSize()));
        w.put(a + "block_count", GgufValue.u32(c.numHiddenLayers()));
        w.put(a + "feed_forward_length", GgufValue.u32(c.intermediateSize()));
        w.put(a + "attention.head_count", GgufValue.u32(c.numAttentionHeads()));
        w.put(a + "attention.head_count_kv", GgufValue.u32(c.numKeyValueHeads()));
        w.put(a + "rope.freq_base", GgufValue.f32(c.ropeTheta()));
        w.put(a + "attention.layer_norm_rms_epsilon", GgufValue.f32(c.rmsNormEps()));
        if (c.headDim() * c.numAttentionHeads() != c.hiddenSize()) {
            w.put(a + "attention.key_length", GgufValue.u32(c.headDim()));
            w.put(a + "attention.value_length", GgufValue.u32(c.headDim()));
        }
        w.put(a + "vocab_size", GgufValue.u32(c.vocabSize()));
        w.put(a + "rope.dimension_count", GgufValue.u32(c.headDim()));
        LlamaConfig.RopeScaling s = c.ropeScaling();
        if (s != null && "linear".equals(s.ropeType())) {
            w.put(a + "rope.scaling.type", GgufValue.string("linear"));
            w.put(a + "rope.scaling.factor", GgufValue.f32(s.factor()));
        }
    }

    /**
     * The {@code rope_freqs.weight} tensor [head_dim/2] for Llama 3 RoPE scaling, or null: llama.cpp
     * divides each base frequency by its factor (convert_hf_to_gguf's LlamaModel.generate_extra_tensors:
     * 1 for wavelengths below original_ctx/high_freq_factor, {@code factor} above
     * original_ctx/low_freq_factor, a smooth blend between).
     */
    public static float[] ropeFreqFactors(LlamaConfig c) {
        LlamaConfig.RopeScaling s = c.ropeScaling();
        if (s == null || !"llama3".equals(s.ropeType())) return null;
        int dim = c.headDim();
        float[] out = new float[dim / 2];
        double lowWavelen = s.originalMaxPositionEmbeddings() / s.lowFreqFactor();
        double highWavelen = s.originalMaxPositionEmbeddings() / s.highFreqFactor();
        for (int i = 0; i < dim / 2; i++) {
            // torch: 1 / base ** (arange(0, dim, 2, float32) / dim), in float32
            float exponent = (float) (2 * i) / dim;
            float freq = (float) (1.0 / (float) Math.pow((float) c.ropeTheta(), exponent));
            double wavelen = 2 * Math.PI / freq;
            if (wavelen < highWavelen) out[i] = 1f;
            else if (wavelen > lowWavelen) out[i] = (float) s.factor();
            else {
                double smooth = (s.originalMaxPositionEmbeddings() / wavelen - s.lowFreqFactor()) / (s.highFreqFactor() - s.lowFreqFactor());
                out[i] = (float) (1 / ((1 - smooth) / s.factor() + smooth));
            }
        }
        return out;
    }
}
