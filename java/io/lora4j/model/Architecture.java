package io.lora4j.model;

import java.util.ArrayList;
import java.util.List;

/**
 * What a family's decoder layer does beyond Llama's, read from config.json (HF
 * {@code modeling_<type>.py} is the reference for each point):
 *
 * @param family             the model_type
 * @param qkvBias            q_proj, k_proj and v_proj carry biases [out] (Qwen2; o_proj has none)
 * @param qkNorm             per-head RMSNorm {@code q_norm}/{@code k_norm} [head_dim] over each head of q
 *                           and k after the projection, before RoPE (Qwen3, Gemma 3)
 * @param slidingWindow      a query attends to the keys at most {@code slidingWindow - 1} positions
 *                           back (itself included: {@code q - k < window}); 0 = full causal (Mistral v0.1)
 * @param slidingPattern     which layers slide: 0 = every layer (Mistral); p = all but every p-th
 *                           (layer i slides when (i + 1) % p != 0: Gemma 2 p = 2, Gemma 3 p = 6)
 * @param normOffset         RMSNorm weights are stored as w - 1: the norm multiplies by (1 + w), in fp32 (Gemma)
 * @param activation         the MLP's gate activation
 * @param sandwichNorms      four norms per layer: the attention and MLP outputs are normed too
 *                           ({@code post_attention_layernorm}, {@code post_feedforward_layernorm}), and
 *                           {@code pre_feedforward_layernorm} is the MLP's input norm (Gemma)
 * @param embeddingScale     the embedding output is multiplied by √hidden_size, rounded to fp32 (Gemma)
 * @param queryPreAttnScalar the attention scale is this^-0.5 instead of head_dim^-0.5; 0 = head_dim (Gemma)
 * @param localRopeTheta     RoPE base of the sliding layers, without rope_scaling; 0 = as the others (Gemma 3)
 * @param attnSoftcap        attn_logit_softcapping c: every attention score s becomes c·tanh(s / c) before the
 *                           softmax; 0 = off (Gemma 2)
 * @param finalSoftcap       final_logit_softcapping c: the lm_head logits z become c·tanh(z / c); 0 = off (Gemma 2)
 * @param unsupported        null, or why lora4j can only plan this model, not load it (Phi-3's partial
 *                           RoPE): the shapes are known, the layer is not implemented
 */
public record Architecture(ModelFamily family, boolean qkvBias, boolean qkNorm, int slidingWindow, int slidingPattern,
        boolean normOffset, Activation activation, boolean sandwichNorms, boolean embeddingScale, double queryPreAttnScalar,
        double localRopeTheta, double attnSoftcap, double finalSoftcap, String unsupported) {

    /** The MLP's gate activation: down(act(gate(x)) · up(x)). */
    public enum Activation {
        /** x·sigmoid(x) (SwiGLU; Llama, Mistral, Qwen). */
        SILU,
        /** PyTorch's gelu(approximate="tanh"), HF's gelu_pytorch_tanh (GeGLU; Gemma). */
        GELU_TANH
    }

    public Architecture {
        if (family == null) throw new IllegalArgumentException("architecture without a family");
        if (activation == null) throw new IllegalArgumentException("architecture without an activation");
        if (slidingWindow < 0) throw new IllegalArgumentException("sliding_window must be >= 0, got " + slidingWindow);
        if (slidingPattern < 0) throw new IllegalArgumentException("sliding_window_pattern must be >= 0, got " + slidingPattern);
        if (!(queryPreAttnScalar >= 0) || Double.isInfinite(queryPreAttnScalar))
            throw new IllegalArgumentException("query_pre_attn_scalar must be > 0, got " + queryPreAttnScalar);
        if (!(localRopeTheta >= 0) || Double.isInfinite(localRopeTheta))
            throw new IllegalArgumentException("rope_local_base_freq must be > 0, got " + localRopeTheta);
        if (!(attnSoftcap >= 0) || Double.isInfinite(attnSoftcap))
            throw new IllegalArgumentException("attn_logit_softcapping must be > 0 or null, got " + attnSoftcap);
        if (!(finalSoftcap >= 0) || Double.isInfinite(finalSoftcap))
            throw new IllegalArgumentException("final_logit_softcapping must be > 0 or null, got " + finalSoftcap);
    }

    /** A Llama-style layer with Qwen's additions. */
    public Architecture(ModelFamily family, boolean qkvBias, boolean qkNorm, int slidingWindow) {
        this(family, qkvBias, qkNorm, slidingWindow, 0, false, Activation.SILU, false, false, 0, 0, 0, 0, null);
    }

    /** Plain Llama layers under {@code family}'s name. */
    public static Architecture plain(ModelFamily family) {
        return new Architecture(family, false, false, 0);
    }

    /**
     * The family's defaults: Qwen2's q/k/v biases, Qwen3's q/k norms, Gemma 3's (1 + w) norms,
     * GeGLU, four norms, scaled embedding and q/k norms; no sliding window.
     */
    public static Architecture defaults(ModelFamily family) {
        if (family == ModelFamily.GEMMA3_TEXT || family == ModelFamily.GEMMA2)
            return new Architecture(family, false, family == ModelFamily.GEMMA3_TEXT, 0, 0, true, Activation.GELU_TANH, true, true, 0, 0,
                    0, 0, null);
        return new Architecture(family, family == ModelFamily.QWEN2, family == ModelFamily.QWEN3, 0);
    }

    /** A copy with another sliding window (0 = none) on the layers of {@code pattern}. */
    public Architecture withSlidingWindow(int window, int pattern) {
        return new Architecture(family, qkvBias, qkNorm, window, pattern, normOffset, activation, sandwichNorms, embeddingScale,
                queryPreAttnScalar, localRopeTheta, attnSoftcap, finalSoftcap, unsupported);
    }

    /** A copy with the attention scale's query_pre_attn_scalar and the sliding layers' RoPE base. */
    public Architecture withAttention(double queryPreAttnScalar, double localRopeTheta) {
        return new Architecture(family, qkvBias, qkNorm, slidingWindow, slidingPattern, normOffset, activation, sandwichNorms,
                embeddingScale, queryPreAttnScalar, localRopeTheta, attnSoftcap, finalSoftcap, unsupported);
    }

    /** A copy with the attention scores' and the final logits' soft caps (0 = off). */
    public Architecture withSoftcaps(double attnSoftcap, double finalSoftcap) {
        return new Architecture(family, qkvBias, qkNorm, slidingWindow, slidingPattern, normOffset, activation, sandwichNorms,
                embeddingScale, queryPreAttnScalar, localRopeTheta, attnSoftcap, finalSoftcap, unsupported);
    }

    /** A copy that can be planned but not loaded, for {@code reason} (null: loadable). */
    public Architecture withUnsupported(String reason) {
        return new Architecture(family, qkvBias, qkNorm, slidingWindow, slidingPattern, normOffset, activation, sandwichNorms,
                embeddingScale, queryPreAttnScalar, localRopeTheta, attnSoftcap, finalSoftcap, reason);
    }

    /**
     * @throws IllegalArgumentException naming the family and the reason when the model can only be planned
     */
    public void requireSupported() {
        if (unsupported != null)
            throw new IllegalArgumentException("model_type '" + family.modelType + "' can be planned but not loaded: " + unsupported);
    }

    /**
     * True when q/k/v and gate/up are fused modules (Phi-3's {@code qkv_proj} and
     * {@code gate_up_proj}): the checkpoint holds one weight per module, PEFT adapts each with one
     * A/B pair over the fused output rows.
     */
    public boolean fusedProjections() {
        return family == ModelFamily.PHI3;
    }

    /** The HF weight name of projection {@code p} in layer {@code layer} under this architecture. */
    public String weightName(Projection p, int layer) {
        return (fusedProjections() ? p.fusedModulePath(layer) : p.modulePath(layer)) + ".weight";
    }

    /** True when layer {@code layer} attends within the sliding window. */
    public boolean sliding(int layer) {
        return slidingWindow > 0 && (slidingPattern == 0 || (layer + 1) % slidingPattern != 0);
    }

    /** The sliding window of layer {@code layer}, 0 for full causal attention. */
    public int window(int layer) {
        return sliding(layer) ? slidingWindow : 0;
    }

    /**
     * A per-layer tensor beyond the two norms and seven projections.
     *
     * @param suffix the HF name after {@code model.layers.{i}.}, e.g. {@code self_attn.q_proj.bias}
     * @param shape  its shape
     */
    public record LayerTensor(String suffix, long[] shape) {
        /** The full HF name in layer {@code layer}. */
        public String name(int layer) {
            return "model.layers." + layer + "." + suffix;
        }
    }

    public static final String Q_NORM = "self_attn.q_norm.weight";
    public static final String K_NORM = "self_attn.k_norm.weight";
    public static final String PRE_FFN_NORM = "pre_feedforward_layernorm.weight";
    public static final String POST_FFN_NORM = "post_feedforward_layernorm.weight";

    /** The HF suffix of projection {@code p}'s bias, e.g. {@code self_attn.q_proj.bias}. */
    public static String biasSuffix(Projection p) {
        return p.block + "." + p.moduleName + ".bias";
    }

    /** The extra per-layer tensors of a model of config {@code c}, in file order. */
    public List<LayerTensor> layerTensors(LlamaConfig c) {
        List<LayerTensor> out = new ArrayList<>();
        if (qkvBias) for (Projection p : new Projection[] {Projection.Q, Projection.K, Projection.V})
            out.add(new LayerTensor(biasSuffix(p), new long[] {p.outFeatures(c)}));
        if (qkNorm) {
            out.add(new LayerTensor(Q_NORM, new long[] {c.headDim()}));
            out.add(new LayerTensor(K_NORM, new long[] {c.headDim()}));
        }
        if (sandwichNorms) {
            out.add(new LayerTensor(PRE_FFN_NORM, new long[] {c.hiddenSize()}));
            out.add(new LayerTensor(POST_FFN_NORM, new long[] {c.hiddenSize()}));
        }
        return out;
    }
}
