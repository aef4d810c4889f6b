package io.lora4j.model;

import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Next-token choice from logits: greedy at temperature 0, otherwise softmax(logits / T) restricted
 * to the smallest set of tokens whose probability reaches top_p (nucleus sampling), drawn with a
 * seeded generator so that the same seed gives the same text. Not thread-safe (it reuses its
 * scratch between calls).
 */
public final class Sampler {
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
     * Picks the next token id from {@code logits}' remaining elements (not consumed). Nothing is
     * allocated per call once the scratch fits the vocabulary.
     *
     * <p>Token for token the same as the straightforward statement (every probability, the
     * candidates sorted by probability then id, kept until their mass reaches top_p): the
     * probabilities and their sum are the same doubles in the same order, and the nucleus is the
     * same prefix of the same order, found by sorting only the tokens of the few most probable
     * binary orders of magnitude that hold top_p of the mass instead of every token that could be
     * in the nucleus. Where that prefix cannot be proved from the sorted part (a token at the edge
     * whose rounded key ties one left out) it sorts all candidates, as before.
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
        // likely as it hold more than (1 - top_p) together, llama2.c's argument). Order: by
        // probability descending, then by id, packed into one primitive key (probabilities are
        // positive, so their float bits order as they do).
        double cutoff = n > 1 ? (1 - topP) / (n - 1) * z : 0;
        double target = topP * z;
        double floor = magnitudeHolding(n, cutoff, target);
        if (floor > 0) {
            int m = candidates(n, floor, z);
            int id = pick(m, target, u, Float.floatToRawIntBits((float) (floor / z)));
            if (id >= 0) return id;
        }
        int m = candidates(n, cutoff, z);
        if (m == 0 || candidateMass < target) m = candidates(n, -1, z); // rounding at the edge: take all
        return pick(m, target, u, -1);
    }

    /** Exponents above this one have no 2^-e bucket: probabilities relative to the max are in (0, 1]. */
    private static final int BUCKETS = 1100;
    private final double[] bucketMass = new double[BUCKETS];

    /**
     * The largest power of two t ≥ cutoff such that the tokens of p ≥ t hold at least
     * {@code target} (with a margin for summing in another order), or 0 if the candidates ≥ cutoff
     * do not: a histogram of the candidates' mass by binary exponent, read from the top.
     */
    private double magnitudeHolding(int n, double cutoff, double target) {
        double[] h = bucketMass;
        Arrays.fill(h, 0);
        for (int i = 0; i < n; i++) {
            double q = p[i];
            if (q >= cutoff && q > 0) h[-Math.getExponent(q)] += q; // exponent in [-1074, 0]
        }
        double acc = 0, need = target * (1 + 1e-9);
        for (int b = 0; b < BUCKETS; b++) {
            acc += h[b];
            if (acc >= need) return Math.max(Math.scalb(1.0, -b), cutoff);
        }
        return 0;
    }

    /**
     * Sorts the m keys, keeps the most probable ones until their mass reaches target and draws
     * among them with u. With {@code edgeKey} ≥ 0 the keys are only the tokens whose key is at
     * least edgeKey; a token left out has a key ≤ edgeKey, so the kept prefix is the whole
     * order's prefix only if it ends strictly above edgeKey and reaches target: otherwise -1.
     */
    private int pick(int m, double target, double u, int edgeKey) {
        Arrays.sort(keys, 0, m);
        double mass = 0;
        int keep = 0;
        while (keep < m && mass < target) mass += p[id(keys[m - 1 - keep++])];
        if (edgeKey >= 0 && (mass < target || (int) (keys[m - keep] >>> 32) <= edgeKey)) return -1;
        double point = u * mass, acc = 0;
        for (int j = 0; j < keep; j++) {
            int id = id(keys[m - 1 - j]);
            acc += p[id];
            if (point < acc) return id;
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
