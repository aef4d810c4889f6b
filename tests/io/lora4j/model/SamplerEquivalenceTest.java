package io.lora4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.ops.SamplerKernel;
import java.nio.FloatBuffer;
import java.util.Random;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * {@link Sampler} over random vocabularies, logit shapes (spread, ties, one dominant token, a long
 * flat tail, -inf), temperatures and top_p: token for token the contract ({@link SamplerTest#contract})
 * applied to its kernel's probabilities, and nearly always the token {@link LegacySampler} (the
 * double-precision sampler before the fp32 exp, kept verbatim) picks for the same seed.
 */
class SamplerEquivalenceTest {
    private static final float[] TEMPERATURES = {0.01f, 0.1f, 0.5f, 0.8f, 1f, 1.3f, 2f, 10f};
    private static final float[] TOP_PS = {0.001f, 0.05f, 0.3f, 0.5f, 0.8f, 0.9f, 0.95f, 0.99f, 0.999f, 1f};
    private static final int[] VOCABULARIES = {1, 2, 3, 17, 1000, 32_000, 151_936};

    /** A random logit vector of one of several shapes. */
    static float[] logits(Random r, int n, int shape) {
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

    private static int vocabulary(Random r) {
        int n = VOCABULARIES[r.nextInt(VOCABULARIES.length)];
        return n == 151_936 && r.nextInt(4) != 0 ? 32_000 : n; // keep the run short
    }

    @Test
    void everyDrawIsTheContractOnTheKernelsProbabilities() {
        Random r = new Random(20);
        int calls = 0;
        for (int c = 0; c < 300; c++) {
            int n = vocabulary(r);
            float t = TEMPERATURES[r.nextInt(TEMPERATURES.length)];
            float topP = TOP_PS[r.nextInt(TOP_PS.length)];
            int shape = r.nextInt(5);
            long seed = r.nextLong();
            Sampler sampler = new Sampler(t, topP, seed);
            SplittableRandom ref = new SplittableRandom(seed);
            for (int step = 0; step < 4; step++, calls++) {
                float[] l = logits(r, n, shape);
                assertEquals(SamplerTest.oracle(l, t, topP, ref), sampler.sample(FloatBuffer.wrap(l)),
                        "case " + c + " step " + step + ": n " + n + ", T " + t + ", top_p " + topP + ", shape " + shape);
            }
        }
        assertTrue(calls == 1200);
    }

    @Test
    void theContractAtEveryTopPOnOneVocabulary() {
        // The nucleus edge swept finely over one realistic vector: each top_p moves it by a token or so.
        Random r = new Random(7);
        float[] l = logits(r, 32_000, 0);
        float[] p = new float[l.length];
        double z = new SamplerKernel().probabilities(FloatBuffer.wrap(l), 0.9f, p);
        for (int k = 1; k <= 400; k++) {
            float topP = k / 400f;
            Sampler sampler = new Sampler(0.9f, topP, k);
            SplittableRandom ref = new SplittableRandom(k);
            for (int step = 0; step < 2; step++)
                assertEquals(SamplerTest.contract(p, l.length, z, topP, ref.nextDouble()), sampler.sample(l), "top_p " + topP);
        }
    }

    /**
     * Seeds from before the fp32 exp: a token differs only where the draw lands within the
     * probabilities' rounding (~1e-6 relative) of a boundary, so at most a few per thousand draws
     * here (T = 0.01 magnifies the rounding of y by 100).
     */
    @Test
    void nearlyAlwaysTheTokenTheDoubleSamplerPicked() {
        Random r = new Random(21);
        int calls = 0, differ = 0;
        for (int c = 0; c < 600; c++) {
            int n = vocabulary(r);
            float t = TEMPERATURES[r.nextInt(TEMPERATURES.length)];
            float topP = TOP_PS[r.nextInt(TOP_PS.length)];
            int shape = r.nextInt(5);
            long seed = r.nextLong();
            Sampler now = new Sampler(t, topP, seed);
            LegacySampler before = new LegacySampler(t, topP, seed);
            for (int step = 0; step < 12; step++, calls++) {
                float[] l = logits(r, n, shape);
                if (before.sample(l) != now.sample(l)) differ++;
            }
        }
        System.out.printf("fp32-exp sampler vs the double one: %d of %d draws differ%n", differ, calls);
        assertTrue(differ <= calls / 200, differ + " of " + calls + " draws differ from the double-precision sampler");
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
