package io.lora4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.ops.SamplerKernel;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.Random;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@link Sampler} against a plain statement of its contract, on the probabilities its kernel
 * computes: the nucleus = the fewest most-probable tokens (ties to the lower id) whose mass reaches
 * top_p, one uniform draw per token from the generator seeded with the seed. The oracle sorts every
 * token; the kernel sorts only those that can be in the nucleus. Those probabilities are then held
 * to double-precision softmax(logits / T) within a stated bound.
 */
class SamplerTest {
    /**
     * The draw, sorting the whole vocabulary, from unnormalised
     * probabilities p and their sum z: top_p = 1 walks the ids to the first running mass above
     * u·z (else the last token of nonzero p); otherwise the kept prefix of the sorted order is
     * walked to u times its own mass.
     */
    static int contract(float[] p, int n, double z, double topP, double u) {
        if (topP >= 1) {
            double acc = 0;
            int last = 0;
            for (int i = 0; i < n; i++) {
                if (p[i] == 0) continue;
                acc += p[i];
                last = i;
                if (u * z < acc) return i;
            }
            return last;
        }
        // Every token sorted by one primitive key: p's bits (positive floats order as their bits)
        // above the inverted id, so that descending order is p descending, then id ascending.
        long[] keys = new long[n];
        for (int i = 0; i < n; i++) keys[i] = ((long) Float.floatToRawIntBits(p[i]) << 32) | (Integer.MAX_VALUE - i);
        Arrays.sort(keys);
        int[] order = new int[n];
        for (int k = 0; k < n; k++) order[k] = Integer.MAX_VALUE - (int) (keys[n - 1 - k] & 0xffffffffL);
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

    /** The contract on the kernel's own probabilities for these logits. */
    static int oracle(float[] logits, float t, float topP, SplittableRandom random) {
        float[] p = new float[logits.length];
        double z = new SamplerKernel().probabilities(FloatBuffer.wrap(logits), t, p);
        return contract(p, logits.length, z, topP, random.nextDouble());
    }

    @ParameterizedTest
    @CsvSource({"1.0, 1.0", "0.8, 0.9", "1.2, 0.5", "0.5, 0.95", "2.0, 0.01"})
    void samplesAsTheContractSays(double t, double topP) {
        Random r = new Random(42);
        float[] logits = new float[8000];
        Sampler s = new Sampler((float) t, (float) topP, 3407);
        SplittableRandom ref = new SplittableRandom(3407);
        for (int step = 0; step < 100; step++) {
            for (int i = 0; i < logits.length; i++) logits[i] = (float) (r.nextGaussian() * 3);
            int got = s.sample(FloatBuffer.wrap(logits));
            assertEquals(oracle(logits, (float) t, (float) topP, ref), got, "step " + step + " at T " + t + ", top_p " + topP);
        }
    }

    /**
     * Per token, |p - p_ref| <= p_ref·(|y|·4 + 8)·2^-24 + 1e-37 with p_ref = exp(y) and y = (l -
     * max)/T in double: y carries three fp32 roundings (l - max, 1/T, the product: 3·2^-24
     * relative, so exp(y) moves by |y|·3·2^-24 of itself), the exp polynomial and its range
     * reduction a few ulp (measured worst 2-3 ulp), and below e^-86 (4e-38) p is 0. The sum z is
     * held to 1e-12 of the double one. Large vocabularies, spreads and temperatures.
     */
    @Test
    void probabilitiesAreWithinTheirBoundOfDoubleSoftmax() {
        Random r = new Random(5);
        SamplerKernel k = new SamplerKernel();
        double worstUlps = 0;
        for (int c = 0; c < 60; c++) {
            int n = new int[] {1, 15, 16, 17, 1000, 32_000, 151_936}[c % 7];
            float t = new float[] {0.01f, 0.3f, 0.8f, 1f, 2f, 10f}[c % 6];
            double spread = new double[] {0.5, 3, 10, 40}[c % 4];
            float[] l = new float[n];
            for (int i = 0; i < n; i++) l[i] = (float) (r.nextGaussian() * spread);
            if (n > 4) l[3] = Float.NEGATIVE_INFINITY;
            float[] p = new float[n];
            double z = k.probabilities(FloatBuffer.wrap(l), t, p);
            float maxF = Float.NEGATIVE_INFINITY;
            for (float v : l) maxF = Math.max(maxF, v);
            double zRef = 0;
            for (int i = 0; i < n; i++) {
                double y = ((double) l[i] - maxF) / t, ref = Math.exp(y);
                zRef += ref;
                if (Double.isInfinite(y)) {
                    assertEquals(0f, p[i], "a -inf logit has probability 0");
                    continue;
                }
                double bound = ref * (Math.abs(y) * 4 + 8) * 0x1p-24 + 1e-37;
                assertTrue(Math.abs(p[i] - ref) <= bound, "case " + c + " token " + i + ": p " + p[i] + ", exp(" + y + ") = " + ref);
                // The exp alone: y as the kernel rounds it (Java float arithmetic is IEEE, as the kernel's).
                float yf = (l[i] - maxF) * (1f / t);
                if (yf <= -86f) assertEquals(0f, p[i], "flushed below e^-86");
                else worstUlps = Math.max(worstUlps, Math.abs(p[i] - Math.exp(yf)) / Math.ulp((float) Math.exp(yf)));
            }
            double zSum = 0;
            for (int i = 0; i < n; i++) zSum += p[i];
            assertEquals(zSum, z, 1e-12 * zSum, "z is the sum of p (case " + c + ")");
            assertEquals(zRef, z, zRef * 1e-5, "z against double softmax (case " + c + ")");
        }
        assertTrue(worstUlps <= 2, "the fp32 exp is within 2 ulp of exp(y) for its own y: " + worstUlps);
    }

    @Test
    void greedyIsTheFirstLargestLogitAndFloatBuffersAreReadInPlace() {
        float[] l = {0.5f, 3f, -1f, 3f};
        assertEquals(1, Sampler.argmax(l));
        FloatBuffer b = FloatBuffer.wrap(new float[] {9f, 0.5f, 3f, -1f, 3f}).position(1);
        assertEquals(1, new Sampler(0, 1, 1).sample(b), "indices relative to the buffer's position");
        assertEquals(1, b.position(), "the buffer is not consumed");
    }

    @Test
    void aUniformDistributionWithATinyTopPKeepsOneToken() {
        float[] l = new float[1000]; // every token at p = 1/n, below the candidate cut-off
        int got = new Sampler(1f, 0.001f, 5).sample(l);
        assertEquals(oracle(l, 1, 0.001f, new SplittableRandom(5)), got);
    }

    /**
     * Flat distributions, where most of the vocabulary is in the nucleus and the kernel finds the
     * nucleus and the draw by bucketing p instead of sorting it: narrow and wide spreads, many exact
     * ties (one bucket holding thousands of equal p), and a top token above a floor of ~2^-17 so
     * large that the sums are not known exact and the kernel sorts instead. Every draw is the
     * contract's.
     */
    @ParameterizedTest
    @CsvSource({"0.05, 0.9, 0", "0.3, 0.95, 0", "1.0, 0.5, 0", "0.3, 0.9, 1", "0.3, 0.999, 1", "0, 0.9, 2"})
    void flatDistributionsSampleAsTheContractSays(double spread, double topP, int shape) {
        Random r = new Random(77);
        float[] logits = new float[32_000];
        Sampler s = new Sampler(0.8f, (float) topP, 11);
        SplittableRandom ref = new SplittableRandom(11);
        for (int step = 0; step < 40; step++) {
            for (int i = 0; i < logits.length; i++) {
                double g = r.nextGaussian() * spread;
                logits[i] = switch (shape) {
                    case 0 -> (float) g;
                    case 1 -> Math.round(g * 4) / 4f; // a handful of distinct values
                    default -> i == step ? 0f : -10f;  // p = 1, then 31999 tokens at e^-12.5
                };
            }
            int got = s.sample(FloatBuffer.wrap(logits));
            assertEquals(oracle(logits, 0.8f, (float) topP, ref), got, "step " + step + ", spread " + spread + ", shape " + shape);
        }
    }

    @Test
    void rejectsBadSettings() {
        assertThrows(IllegalArgumentException.class, () -> new Sampler(-1, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new Sampler(1, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new Sampler(Float.NaN, 1, 0));
    }
}
