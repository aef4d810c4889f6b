package io.lora4j.model;

import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * The sampler as it was before issue 20's follow-up (commit 39b7fa9), kept verbatim as the oracle
 * that the faster {@link Sampler} must match token for token, and as the "before" side of
 * bench/io/lora4j/bench/SamplerBench. Next-token choice from logits: greedy at temperature 0, otherwise softmax(logits / T) restricted
 * to the smallest set of tokens whose probability reaches top_p (nucleus sampling), drawn with a
 * seeded generator so that the same seed gives the same text. Not thread-safe (it reuses its
 * scratch between calls).
 */
public final class LegacySampler {
    private final float temperature;
    private final float topP;
    private final SplittableRandom random;
    private double[] p;  // unnormalised probabilities [vocab], reused
    private long[] keys; // nucleus sort keys, reused
    private float[] l;   // the logits, copied once per call

    /**
     * @param temperature 0 for greedy, else > 0
     * @param topP        in (0, 1]; 1 disables the nucleus cut
     * @param seed        seeds the generator
     */
    public LegacySampler(float temperature, float topP, long seed) {
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
     * Picks the next token id from {@code logits}' remaining elements (not consumed). Nothing is
     * allocated per call once the scratch fits the vocabulary.
     */
    public int sample(FloatBuffer logits) {
        if (temperature == 0) return argmax(logits);
        int base = logits.position(), n = logits.remaining();
        if (p == null || p.length < n) {
            p = new double[n];
            keys = new long[n];
            l = new float[n];
        }
        logits.get(base, l, 0, n); // one bulk copy: the loops below then run over a plain array
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) max = Math.max(max, l[i]);
        double z = 0;
        for (int i = 0; i < n; i++) {
            p[i] = Math.exp((l[i] - max) / temperature);
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
        // Nucleus: the most probable tokens whose mass reaches top_p, renormalised. A token with
        // p < (1 - top_p)/(n - 1) of the mass cannot be in the nucleus (all tokens at least as
        // likely as it hold more than (1 - top_p) together, llama2.c's argument), so only the rest
        // is sorted: by probability descending, then by id, packed into one primitive key
        // (probabilities are positive, so their float bits order as they do).
        double cutoff = n > 1 ? (1 - topP) / (n - 1) * z : 0;
        int m = candidates(n, cutoff, z);
        if (m == 0 || candidateMass < topP * z) m = candidates(n, -1, z); // rounding at the edge: take all
        Arrays.sort(keys, 0, m);
        double mass = 0;
        int keep = 0;
        while (keep < m && mass < topP * z) mass += p[id(keys[m - 1 - keep++])];
        double target = u * mass, acc = 0;
        for (int j = 0; j < keep; j++) {
            int id = id(keys[m - 1 - j]);
            acc += p[id];
            if (target < acc) return id;
        }
        return id(keys[m - keep]);
    }

    private double candidateMass;

    /** Fills keys with the tokens of p ≥ cutoff and their mass into candidateMass; returns how many. */
    private int candidates(int n, double cutoff, double z) {
        int m = 0;
        double mass = 0;
        for (int i = 0; i < n; i++)
            if (p[i] >= cutoff) {
                keys[m++] = ((long) Float.floatToRawIntBits((float) (p[i] / z)) << 32) | (Integer.MAX_VALUE - i);
                mass += p[i];
            }
        candidateMass = mass;
        return m;
    }

    private static int id(long key) {
        return Integer.MAX_VALUE - (int) (key & 0xffffffffL);
    }
}
