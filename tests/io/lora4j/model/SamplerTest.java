package io.lora4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.Random;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@link Sampler} against a plain statement of its contract: softmax(logits / T), the nucleus =
 * the fewest most-probable tokens (ties to the lower id) whose mass reaches top_p, one uniform
 * draw per token from the generator seeded with the seed. The oracle sorts every token; the
 * sampler sorts only those that can be in the nucleus.
 */
class SamplerTest {
    /** The contract, sorting the whole vocabulary (boxed, as simple as it gets). */
    static int oracle(float[] logits, double t, double topP, SplittableRandom random) {
        int n = logits.length;
        double max = Double.NEGATIVE_INFINITY;
        for (float l : logits) max = Math.max(max, l);
        double[] p = new double[n];
        double z = 0;
        for (int i = 0; i < n; i++) z += p[i] = Math.exp((logits[i] - max) / t);
        double u = random.nextDouble();
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) order[i] = i;
        if (topP < 1) Arrays.sort(order, (a, b) -> p[a] != p[b] ? Double.compare(p[b], p[a]) : Integer.compare(a, b));
        double mass = 0;
        int keep = 0;
        while (keep < n && mass < (topP < 1 ? topP * z : z)) mass += p[order[keep++]];
        double target = u * mass, acc = 0;
        for (int k = 0; k < keep; k++) {
            acc += p[order[k]];
            if (target < acc) return order[k];
        }
        return order[keep - 1];
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

    @Test
    void rejectsBadSettings() {
        assertThrows(IllegalArgumentException.class, () -> new Sampler(-1, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new Sampler(1, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new Sampler(Float.NaN, 1, 0));
    }
}
