package io.lora4j.model;

/**
 * RoPE inverse frequencies of a Llama config, as HF transformers computes them
 * ({@code modeling_rope_utils}): {@code inv_freq[i] = 1 / theta^(2i/d)}, then the config's
 * {@code rope_scaling}: "linear" divides by factor; "llama3" (Llama 3.1+) divides the
 * low-frequency band by factor, keeps the high-frequency band, and interpolates between:
 * <pre>
 *   wavelen = 2π / inv_freq
 *   wavelen > original_max / low_freq_factor   -> inv_freq / factor
 *   wavelen < original_max / high_freq_factor  -> inv_freq
 *   otherwise  smooth = (original_max / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
 *              -> (1 - smooth) · inv_freq / factor + smooth · inv_freq
 * </pre>
 * Computed in double, rounded once to fp32.
 */
public final class RopeFrequencies {
    private RopeFrequencies() {}

    /** inv_freq [headDim / 2] in radians per position. */
    public static float[] invFreq(LlamaConfig c) {
        return invFreq(c.headDim(), c.ropeTheta(), c.ropeScaling());
    }

    /**
     * inv_freq [headDim / 2] of the sliding-window layers: base rope_local_base_freq, no scaling
     * (Gemma 3's rotary_emb_local); the global one when the family has no local base.
     */
    public static float[] localInvFreq(LlamaConfig c) {
        double local = c.architecture().localRopeTheta();
        return local > 0 ? invFreq(c.headDim(), local, null) : invFreq(c);
    }

    private static float[] invFreq(int d, double theta, LlamaConfig.RopeScaling rs) {
        float[] out = new float[d / 2];
        for (int i = 0; i < d / 2; i++) {
            double f = 1.0 / Math.pow(theta, (2.0 * i) / d);
            if (rs != null && "linear".equals(rs.ropeType())) {
                f /= rs.factor();
            } else if (rs != null && "llama3".equals(rs.ropeType())) {
                double wavelen = 2 * Math.PI / f;
                double lowWavelen = rs.originalMaxPositionEmbeddings() / rs.lowFreqFactor();
                double highWavelen = rs.originalMaxPositionEmbeddings() / rs.highFreqFactor();
                if (wavelen > lowWavelen) {
                    f /= rs.factor();
                } else if (wavelen >= highWavelen) {
                    double smooth = (rs.originalMaxPositionEmbeddings() / wavelen - rs.lowFreqFactor())
                            / (rs.highFreqFactor() - rs.lowFreqFactor());
                    f = (1 - smooth) * f / rs.factor() + smooth * f;
                }
            }
            out[i] = (float) f;
        }
        return out;
    }
}
