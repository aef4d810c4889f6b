package io.lora4j.model;

import io.lora4j.ops.SamplerKernel;
import java.nio.FloatBuffer;
import java.util.SplittableRandom;

/**
 * Next-token choice from logits: greedy at temperature 0, otherwise softmax(logits / T) restricted
 * to the smallest set of tokens whose probability reaches top_p (nucleus sampling), drawn with a
 * seeded generator (one uniform double per token) so that the same seed gives the same text. Not
 * thread-safe (it reuses its scratch between calls).
 *
 * <p>The probabilities come from {@link SamplerKernel}: a fixed fp32 exp, vectorised, that gives
 * the same bits on every CPU path (scalar, AVX2, AVX-512), summed in double in a fixed order. A
 * seed from a lora4j version before this one (which used double-precision {@code Math.exp}) can
 * pick a different token where the draw falls within rounding of a boundary; greedy is unchanged.
 */
public final class Sampler {
    private final float temperature;
    private final float topP;
    private final SplittableRandom random;
    private SamplerKernel kernel; // created on the first sampled (non-greedy) call

    /**
     * @param temperature 0 for greedy, else > 0
     * @param topP        in (0, 1]; 1 disables the nucleus cut
     * @param seed        seeds the generator
     */
    public Sampler(float temperature, float topP, long seed) {
        if (!(temperature >= 0) || Float.isInfinite(temperature))
            throw new IllegalArgumentException("temperature must be >= 0, got " + temperature);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top_p must be in (0, 1], got " + topP);
        this.temperature = temperature;
        this.topP = topP;
        this.random = new SplittableRandom(seed);
    }

    /** The index of the largest logit (the first one on ties). */
    public static int argmax(float[] logits) {
        return argmax(FloatBuffer.wrap(logits));
    }

    /** The index of the largest logit in {@code logits}' remaining elements (the first one on ties). */
    public static int argmax(FloatBuffer logits) {
        int base = logits.position(), n = logits.remaining(), best = 0;
        float bestValue = logits.get(base);
        for (int i = 1; i < n; i++) {
            float l = logits.get(base + i);
            if (l > bestValue) {
                bestValue = l;
                best = i;
            }
        }
        return best;
    }

    /** Picks the next token id. */
    public int sample(float[] logits) {
        return sample(FloatBuffer.wrap(logits));
    }

    /**
     * Picks the next token id from {@code logits}' remaining elements (not consumed): the first
     * token, in the order below, whose running probability mass exceeds u times the mass of the
     * tokens kept, u the generator's next double. Kept: every token in id order (top_p = 1), or
     * the nucleus, the fewest tokens by probability descending then id ascending whose mass
     * reaches top_p. Nothing is allocated per call once the scratch fits the vocabulary (a heap
     * buffer is copied to native scratch once per call; a direct one is read in place).
     */
    public int sample(FloatBuffer logits) {
        if (temperature == 0) return argmax(logits);
        if (kernel == null) kernel = new SamplerKernel();
        return kernel.sample(logits, temperature, topP, random.nextDouble());
    }
}
