package io.lora4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.FloatBuffer;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The faster {@link Sampler} against {@link LegacySampler}, the sampler before it kept verbatim:
 * the same seed must give the same tokens, call after call, over random vocabularies, logit
 * shapes (spread, ties, one dominant token, a long flat tail, -inf), temperatures and top_p.
 */
class SamplerEquivalenceTest {
    private static final float[] TEMPERATURES = {0.01f, 0.1f, 0.5f, 0.8f, 1f, 1.3f, 2f, 10f};
    private static final float[] TOP_PS = {0.001f, 0.05f, 0.3f, 0.5f, 0.8f, 0.9f, 0.95f, 0.99f, 0.999f, 1f};

    /** A random logit vector of one of several shapes. */
    private static float[] logits(Random r, int n, int shape) {
        float[] l = new float[n];
        double spread = new double[] {0.3, 1, 3, 8}[r.nextInt(4)];
        for (int i = 0; i < n; i++) {
            double g = r.nextGaussian() * spread;
            l[i] = switch (shape) {
                case 0 -> (float) g;
                case 1 -> Math.round(g * 2) / 2f;                        // many exact ties
                case 2 -> (float) (g - 20 * Math.log1p(i));              // Zipf-like, sorted by id
                case 3 -> r.nextInt(50) == 0 ? (float) (g + 15) : -30f;  // a few peaks on a flat floor
                default -> r.nextInt(100) == 0 ? Float.NEGATIVE_INFINITY : (float) g;
            };
        }
        if (shape == 0 && r.nextBoolean()) l[r.nextInt(n)] += 25; // one dominant token
        return l;
    }

    @Test
    void theSameSeedGivesTheSameTokensAsTheSamplerBefore() {
        Random r = new Random(20);
        int[] vocabularies = {1, 2, 3, 17, 1000, 32_000, 151_936};
        int calls = 0;
        for (int c = 0; c < 600; c++) {
            int n = vocabularies[r.nextInt(vocabularies.length)];
            if (n == 151_936 && r.nextInt(4) != 0) n = 32_000; // keep the run short
            float t = TEMPERATURES[r.nextInt(TEMPERATURES.length)];
            float topP = TOP_PS[r.nextInt(TOP_PS.length)];
            int shape = r.nextInt(5);
            long seed = r.nextLong();
            Sampler fast = new Sampler(t, topP, seed);
            LegacySampler before = new LegacySampler(t, topP, seed);
            for (int step = 0; step < 12; step++, calls++) {
                float[] l = logits(r, n, shape);
                FloatBuffer b = FloatBuffer.wrap(l);
                assertEquals(before.sample(b), fast.sample(b),
                        "case " + c + " step " + step + ": n " + n + ", T " + t + ", top_p " + topP + ", shape " + shape);
            }
        }
        assertTrue(calls > 7000);
    }

    @Test
    void theSameAtEveryTopPOnOneVocabulary() {
        // The nucleus edge swept finely over one realistic vector: each top_p moves it by a token or so.
        Random r = new Random(7);
        float[] l = logits(r, 32_000, 0);
        for (int k = 1; k <= 1000; k++) {
            float topP = k / 1000f;
            Sampler fast = new Sampler(0.9f, topP, k);
            LegacySampler before = new LegacySampler(0.9f, topP, k);
            for (int step = 0; step < 5; step++) assertEquals(before.sample(l), fast.sample(l), "top_p " + topP);
        }
    }

    @Test
    void greedyIsUnchanged() {
        Random r = new Random(3);
        for (int c = 0; c < 200; c++) {
            float[] l = logits(r, 1000, r.nextInt(4));
            assertEquals(new LegacySampler(0, 0.9f, c).sample(l), new Sampler(0, 0.9f, c).sample(l));
        }
    }
}
