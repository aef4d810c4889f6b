package io.lora4j.model;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Next-token choice from logits: greedy at temperature 0, otherwise softmax(logits / T) restricted
 * to the smallest set of tokens whose probability reaches top_p (nucleus sampling), drawn with a
 * seeded generator so that the same seed gives the same text.
 */
public final class Sampler {
    private final float temperature;
    private final float topP;
    private final SplittableRandom random;

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
        int best = 0;
        for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    /** Picks the next token id. */
    public int sample(float[] logits) {
        if (temperature == 0) return argmax(logits);
        int n = logits.length;
        double max = Double.NEGATIVE_INFINITY;
        for (float l : logits) max = Math.max(max, l);
        double[] p = new double[n];
        double z = 0;
        for (int i = 0; i < n; i++) {
            p[i] = Math.exp((logits[i] - max) / temperature);
            z += p[i];
        }
        double u = random.nextDouble();
        if (topP >= 1) {
            double acc = 0;
            for (int i = 0; i < n; i++) {
                acc += p[i] / z;
                if (u < acc) return i;
            }
            return argmax(logits);
        }
        // Nucleus: sort by probability, keep the head whose mass reaches top_p, renormalise.
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) order[i] = i;
        Arrays.sort(order, (a, b) -> Double.compare(p[b], p[a]));
        double mass = 0;
        int keep = 0;
        while (keep < n && mass < topP * z) mass += p[order[keep++]];
        double target = u * mass, acc = 0;
        for (int k = 0; k < keep; k++) {
            acc += p[order[k]];
            if (target < acc) return order[k];
        }
        return order[keep - 1];
    }
}
