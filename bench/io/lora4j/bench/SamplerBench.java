package io.lora4j.bench;

import io.lora4j.model.LegacySampler;
import io.lora4j.model.Sampler;
import java.util.Arrays;
import java.util.Random;

/**
 * sample() per token, the current {@link Sampler} against the one before issue 20's follow-up
 * ({@link LegacySampler}, kept in tests), alternating in the same process on one thread: per
 * vocabulary and setting, rounds of calls on each side, the median and spread of per-call times.
 * Logits: Gaussian (sd 2.5, a language model's bulk) with a few tokens lifted by 6-12 (the
 * plausible continuations), a fresh vector per call from a pool. Run:
 * java -cp target/test-classes:target/classes io.lora4j.bench.SamplerBench
 */
public final class SamplerBench {
    private static final int POOL = 32, CALLS = 200, ROUNDS = 15;

    public static void main(String[] args) {
        System.out.println("vocab  T    top_p  before_ms(median [min,max])  after_ms(median [min,max])  ratio");
        for (int n : new int[] {32_000, 151_936}) {
            float[][] pool = pool(n);
            for (float[] s : new float[][] {{0.8f, 0.9f}, {1f, 0.95f}, {1f, 1f}, {0f, 1f}}) run(pool, s[0], s[1]);
        }
    }

    private static float[][] pool(int n) {
        Random r = new Random(n);
        float[][] pool = new float[POOL][n];
        for (float[] l : pool) {
            for (int i = 0; i < n; i++) l[i] = (float) (r.nextGaussian() * 2.5);
            for (int k = 0; k < 20; k++) l[r.nextInt(n)] += 6 + r.nextFloat() * 6;
        }
        return pool;
    }

    private static void run(float[][] pool, float t, float topP) {
        LegacySampler before = new LegacySampler(t, topP, 1);
        Sampler after = new Sampler(t, topP, 1);
        double[] b = new double[ROUNDS], a = new double[ROUNDS];
        int sink = 0;
        for (int warm = 0; warm < 3; warm++) { // JIT both paths before timing
            for (int i = 0; i < CALLS; i++) sink += before.sample(pool[i % POOL]) + after.sample(pool[i % POOL]);
        }
        for (int round = 0; round < ROUNDS; round++) {
            long t0 = System.nanoTime();
            for (int i = 0; i < CALLS; i++) sink += before.sample(pool[i % POOL]);
            long t1 = System.nanoTime();
            for (int i = 0; i < CALLS; i++) sink += after.sample(pool[i % POOL]);
            long t2 = System.nanoTime();
            b[round] = (t1 - t0) / 1e6 / CALLS;
            a[round] = (t2 - t1) / 1e6 / CALLS;
        }
        System.out.printf("%-6d %-4.1f %-6.2f %s  %s  %.2f   (%d)%n", pool[0].length, t, topP, stats(b), stats(a),
                median(a) / median(b), sink & 1);
    }

    private static double median(double[] x) {
        double[] s = x.clone();
        Arrays.sort(s);
        return s[s.length / 2];
    }

    private static String stats(double[] x) {
        double[] s = x.clone();
        Arrays.sort(s);
        return String.format("%.4f [%.4f, %.4f]", s[s.length / 2], s[0], s[s.length - 1]);
    }
}
