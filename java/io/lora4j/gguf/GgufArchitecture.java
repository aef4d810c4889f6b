package io.lora4j.gguf;

import io.lora4j.model.Architecture;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.Projection;
import java.util.Collections;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * How one model family maps onto llama.cpp's GGUF conventions (gguf-py constants.py,
 * convert_hf_to_gguf.py and llama.cpp's src/models/&lt;arch&gt;.cpp): the architecture name, the tensor
 * names, the architecture metadata, and how values are stored. Families are rows of {@link #TABLE},
 * keyed by HF {@code model_type}: a new family is a new row (plus its metadata in {@link #metadata}
 * and what it cannot express in {@link #unsupported}).
 *
 * @param modelTypes     the HF model_type values this row serves
 * @param name           general.architecture, the prefix of the architecture keys
 * @param permuteQk      q_proj/k_proj rows are permuted per head: GGUF row 2r+c of a head = HF row c·d/2 + r
 *                       (only the {@code llama} graph ropes interleaved pairs; qwen2, qwen3 and gemma3 rope
 *                       NEOX-style, HF's rotate-half order)
 * @param projections    GGUF tensor name (inside {@code blk.N.}) of each projection
 * @param inputNorm      the pre-attention RMSNorm
 * @param postNorm       where {@link io.lora4j.model.LayerWeights#postAttentionLayernorm} goes: the pre-MLP
 *                       RMSNorm ({@code ffn_norm}), or with Gemma's four norms the attention output's
 *                       ({@code post_attention_norm})
 * @param extras         the family's further per-layer tensors: HF suffix ({@link Architecture#layerTensors})
 *                       to GGUF name inside {@code blk.N.}, with its .weight/.bias
 * @param normPlusOne    RMSNorm weights are stored as 1 + w (Gemma: lora4j keeps HF's w, llama.cpp multiplies
 *                       by the stored value; convert_hf_to_gguf's Gemma3Model.norm_shift)
 */
public record GgufArchitecture(List<String> modelTypes, String name, boolean permuteQk, Map<Projection, String> projections,
        String inputNorm, String postNorm, Map<String, String> extras, boolean normPlusOne) {

    public static final String TOKEN_EMBD = "token_embd";
    public static final String OUTPUT_NORM = "output_norm";
    public static final String OUTPUT = "output";
    public static final String ROPE_FREQS = "rope_freqs";

    private static final Map<Projection, String> LLAMA_NAMES = names("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down");

    /** Llama (and Mistral, which convert_hf_to_gguf also writes as llama; a sliding window is not kept). */
    public static final GgufArchitecture LLAMA = new GgufArchitecture(List.of("llama", "mistral"), "llama", true, LLAMA_NAMES, "attn_norm",
            "ffn_norm", Map.of(), false);

    /** Qwen2: q/k/v biases; q·k·v heads must span hidden_size (llama.cpp's qwen2 shapes). */
    public static final GgufArchitecture QWEN2 = new GgufArchitecture(List.of("qwen2"), "qwen2", false, LLAMA_NAMES, "attn_norm", "ffn_norm",
            ordered(Architecture.biasSuffix(Projection.Q), "attn_q.bias", Architecture.biasSuffix(Projection.K), "attn_k.bias",
                    Architecture.biasSuffix(Projection.V), "attn_v.bias"), false);

    /** Qwen3: per-head q/k RMSNorms before RoPE, no biases. */
    public static final GgufArchitecture QWEN3 = new GgufArchitecture(List.of("qwen3"), "qwen3", false, LLAMA_NAMES, "attn_norm", "ffn_norm",
            ordered(Architecture.Q_NORM, "attn_q_norm.weight", Architecture.K_NORM, "attn_k_norm.weight"), false);

    /**
     * Gemma 3 text: (1 + w) norms, four norms per layer, q/k norms, GeGLU and the √hidden embedding scale
     * (the last two implied by the architecture), sliding layers with their own RoPE base.
     */
    public static final GgufArchitecture GEMMA3 = new GgufArchitecture(List.of("gemma3_text"), "gemma3", false, LLAMA_NAMES, "attn_norm",
            "post_attention_norm", ordered(Architecture.Q_NORM, "attn_q_norm.weight", Architecture.K_NORM, "attn_k_norm.weight",
                    Architecture.PRE_FFN_NORM, "ffn_norm.weight", Architecture.POST_FFN_NORM, "post_ffw_norm.weight"), true);

    /**
     * Gemma 2: Gemma 3's layer without q/k norms, attention and final logit soft-capping, every other
     * layer sliding (llama.cpp's gemma2 fixes the pattern at 2 and always soft-caps).
     */
    public static final GgufArchitecture GEMMA2 = new GgufArchitecture(List.of("gemma2"), "gemma2", false, LLAMA_NAMES, "attn_norm",
            "post_attention_norm", ordered(Architecture.PRE_FFN_NORM, "ffn_norm.weight", Architecture.POST_FFN_NORM, "post_ffw_norm.weight"), true);

    /**
     * Phi-3: the fused modules as llama.cpp's phi3 takes them, {@code attn_qkv} [Q | K | V] rows and
     * {@code ffn_up} [gate | up] rows (its SwiGLU gates with the first half); NEOX RoPE.
     */
    public static final GgufArchitecture PHI3 = new GgufArchitecture(List.of("phi3"), "phi3", false,
            names("attn_qkv", "attn_qkv", "attn_qkv", "attn_output", "ffn_up", "ffn_up", "ffn_down"), "attn_norm", "ffn_norm", Map.of(), false);

    /** Every family lora4j exports. */
    public static final List<GgufArchitecture> TABLE = List.of(LLAMA, QWEN2, QWEN3, GEMMA3, GEMMA2, PHI3);

    /** llama.cpp's LLM_TYPE_27B for gemma3 (62 blocks): the one Gemma 3 whose attention scale it takes from hidden/heads. */
    static final int GEMMA3_27B_LAYERS = 62;
    /** llama.cpp's LLM_TYPE_27B for gemma2 (46 blocks), likewise. */
    static final int GEMMA2_27B_LAYERS = 46;

    private static Map<String, String> ordered(String... kv) {
        Map<String, String> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) m.put(kv[i], kv[i + 1]);
        return Collections.unmodifiableMap(m);
    }

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

    /** The GGUF name of the family's extra tensor with HF suffix {@code hfSuffix} in layer {@code layer}, e.g. {@code blk.0.attn_q.bias}. */
    public String extraName(int layer, String hfSuffix) {
        return "blk." + layer + "." + extras.get(hfSuffix);
    }

    /**
     * Why a model of config {@code c} cannot be written for this architecture so that llama.cpp computes
     * what lora4j does, or null when it can.
     */
    public String unsupported(LlamaConfig c) {
        Architecture a = c.architecture();
        for (Architecture.LayerTensor t : a.layerTensors(c))
            if (!extras.containsKey(t.suffix())) return "its " + t.suffix() + " has no tensor in llama.cpp's " + name + " architecture";
        if (a.normOffset() != normPlusOne) return "its norms " + (a.normOffset() ? "are" : "are not") + " stored as w - 1, llama.cpp's " + name + " expects otherwise";
        LlamaConfig.RopeScaling s = c.ropeScaling();
        if (s != null && !"linear".equals(s.ropeType()) && this != LLAMA)
            return "rope_scaling '" + s.ropeType() + "' exists in llama.cpp's llama architecture only";
        if ((this == QWEN2 || this == PHI3) && c.qDim() != c.hiddenSize())
            return "llama.cpp's " + name + " needs num_attention_heads x head_dim = hidden_size, got " + c.numAttentionHeads() + " x " + c.headDim()
                    + " != " + c.hiddenSize();
        if (this == GEMMA3 && a.slidingWindow() > 0 && a.localRopeTheta() == 0 && s != null)
            return "its sliding layers use the scaled RoPE of the others; llama.cpp's gemma3 does not scale theirs";
        if (this == GEMMA2) {
            if (!(a.attnSoftcap() > 0) || !(a.finalSoftcap() > 0))
                return "llama.cpp's gemma2 always soft-caps attention and final logits, the model has attn_logit_softcapping "
                        + a.attnSoftcap() + " and final_logit_softcapping " + a.finalSoftcap();
            if (a.slidingWindow() <= 0 || a.slidingPattern() != 2)
                return "llama.cpp's gemma2 slides every other layer, the model has sliding_window " + a.slidingWindow() + " and pattern " + a.slidingPattern();
            if (!c.tieWordEmbeddings()) return "llama.cpp's gemma2 has no output.weight (the head is the embedding)";
        } else if (a.attnSoftcap() > 0 || a.finalSoftcap() > 0) {
            return "its logit soft-capping has no key in llama.cpp's " + name + " architecture";
        }
        if (this == LLAMA && (a.embeddingScale() || a.sandwichNorms() || a.qkNorm() || a.qkvBias() || a.activation() != Architecture.Activation.SILU))
            return "its layer is not a Llama layer";
        return null;
    }

    /**
     * What llama.cpp will compute differently from lora4j for a model of config {@code c} that this
     * row still writes (as convert_hf_to_gguf does), for a warning; null when nothing.
     */
    public String caveat(LlamaConfig c) {
        int window = c.architecture().slidingWindow();
        if (this == LLAMA && window > 0)
            return "llama.cpp's llama architecture has no sliding window (convert_hf_to_gguf writes Mistral the same way): beyond "
                    + window + " tokens its attention reaches further back than lora4j's";
        if (this == PHI3 && window > 0)
            return "llama.cpp's phi3 turns its sliding window off: beyond " + window + " tokens its attention reaches further back than lora4j's";
        return null;
    }

    /**
     * How the values of GGUF tensor {@code ggufName} are stored relative to lora4j's:
     * {@code stored = (value + offset) · scale} in fp32.
     * <ul>
     * <li>Gemma's RMSNorm weights: offset 1 (the norm multiplies by 1 + w);</li>
     * <li>Gemma 3's {@code attn_q_norm}: also scaled by √(d/query_pre_attn_scalar), d what llama.cpp's gemma3
     *     divides by (head_dim; hidden/heads for its 27B): llama.cpp scales q by 1/√d, HF by
     *     1/√query_pre_attn_scalar, and q is linear in the norm's weight (RoPE is a rotation). 1 for the
     *     released models, where the two agree.</li>
     * <li>Gemma 2's {@code attn_q.weight} (it has no q norm): scaled by the same √(d/query_pre_attn_scalar),
     *     and its adapter's q rows of B likewise ({@link #queryScale}).</li>
     * </ul>
     */
    public Stored stored(String ggufName, LlamaConfig c) {
        if (this == GEMMA2 && ggufName.endsWith(".attn_q.weight")) return new Stored(0f, queryScale(c));
        boolean norm = ggufName.endsWith("norm.weight");
        if (!normPlusOne || !norm) return Stored.IDENTITY;
        float scale = this == GEMMA3 && ggufName.endsWith(".attn_q_norm.weight") ? queryScale(c) : 1f;
        return new Stored(1f, scale);
    }

    /**
     * √(d/query_pre_attn_scalar) for Gemma 2 and 3, d what llama.cpp divides q by (head_dim; hidden/heads for
     * their 27B), folded into what q is linear in; 1 for the other families.
     */
    public float queryScale(LlamaConfig c) {
        double q = c.architecture().queryPreAttnScalar();
        if ((this != GEMMA2 && this != GEMMA3) || !(q > 0)) return 1f;
        int layers27b = this == GEMMA2 ? GEMMA2_27B_LAYERS : GEMMA3_27B_LAYERS;
        double d = c.numHiddenLayers() == layers27b ? c.hiddenSize() / c.numAttentionHeads() : c.headDim();
        return (float) Math.sqrt(d / q);
    }

    /** stored = (value + offset) · scale, in fp32 ({@link #stored}). */
    public record Stored(float offset, float scale) {
        public static final Stored IDENTITY = new Stored(0f, 1f);

        public boolean identity() {
            return offset == 0f && scale == 1f;
        }

        /** lora4j's values to the file's, in place. */
        public void apply(float[] x) {
            for (int i = 0; i < x.length; i++) x[i] = (x[i] + offset) * scale;
        }

        /** The file's values back to lora4j's, in place. */
        public void invert(float[] x) {
            for (int i = 0; i < x.length; i++) x[i] = x[i] / scale - offset;
        }
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
     * convert_hf_to_gguf writes it for this family; for Gemma 3 also what llama.cpp would otherwise
     * default (the sliding layers' pattern and RoPE base).
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
        if (c.headDim() * c.numAttentionHeads() != c.hiddenSize() || this == GEMMA3 || this == GEMMA2) {
            w.put(a + "attention.key_length", GgufValue.u32(c.headDim()));
            w.put(a + "attention.value_length", GgufValue.u32(c.headDim()));
        }
        w.put(a + "vocab_size", GgufValue.u32(c.vocabSize()));
        w.put(a + "rope.dimension_count", GgufValue.u32(c.headDim()));
        LlamaConfig.RopeScaling s = c.ropeScaling();
        if (s != null && "linear".equals(s.ropeType())) {
            // llama.cpp applies it to the full-attention layers only (its freq_scale_swa stays 1), as HF Gemma 3 does
            w.put(a + "rope.scaling.type", GgufValue.string("linear"));
            w.put(a + "rope.scaling.factor", GgufValue.f32(s.factor()));
        }
        Architecture arch = c.architecture();
        if (this == GEMMA3 && arch.slidingWindow() > 0) {
            // layer i slides when (i + 1) % pattern != 0, llama.cpp's set_swa_pattern (0: every layer)
            w.put(a + "attention.sliding_window", GgufValue.u32(arch.slidingWindow()));
            w.put(a + "attention.sliding_window_pattern", GgufValue.u32(arch.slidingPattern()));
            w.put(a + "rope.freq_base_swa", GgufValue.f32(arch.localRopeTheta() > 0 ? arch.localRopeTheta() : c.ropeTheta()));
        }
        if (this == GEMMA2) {
            // the pattern is llama.cpp's fixed 2 (unsupported refuses others), as convert_hf_to_gguf's Gemma2Model writes it
            w.put(a + "attention.sliding_window", GgufValue.u32(arch.slidingWindow()));
            w.put(a + "attn_logit_softcapping", GgufValue.f32(arch.attnSoftcap()));
            w.put(a + "final_logit_softcapping", GgufValue.f32(arch.finalSoftcap()));
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
