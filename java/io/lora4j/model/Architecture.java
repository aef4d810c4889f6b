package io.lora4j.model;

import java.util.ArrayList;
import java.util.List;

/**
 * What a family's decoder layer does beyond Llama's, read from config.json (HF
 * {@code modeling_<type>.py} is the reference for each point):
 *
 * @param family        the model_type
 * @param qkvBias       q_proj, k_proj and v_proj carry biases [out] (Qwen2; o_proj has none)
 * @param qkNorm        per-head RMSNorm {@code q_norm}/{@code k_norm} [head_dim] over each head of q
 *                      and k after the projection, before RoPE (Qwen3)
 * @param slidingWindow a query attends to the keys at most {@code slidingWindow - 1} positions
 *                      back (itself included: {@code q - k < window}); 0 = full causal (Mistral v0.1)
 */
public record Architecture(ModelFamily family, boolean qkvBias, boolean qkNorm, int slidingWindow) {

    public Architecture {
        if (family == null) throw new IllegalArgumentException("architecture without a family");
        if (slidingWindow < 0) throw new IllegalArgumentException("sliding_window must be >= 0, got " + slidingWindow);
    }

    /** Plain Llama layers under {@code family}'s name. */
    public static Architecture plain(ModelFamily family) {
        return new Architecture(family, false, false, 0);
    }

    /** The family's defaults: Qwen2's q/k/v biases, Qwen3's q/k norms; no sliding window. */
    public static Architecture defaults(ModelFamily family) {
        return new Architecture(family, family == ModelFamily.QWEN2, family == ModelFamily.QWEN3, 0);
    }

    /** A copy with another sliding window (0 = none). */
    public Architecture withSlidingWindow(int window) {
        return new Architecture(family, qkvBias, qkNorm, window);
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
        return out;
    }
}
