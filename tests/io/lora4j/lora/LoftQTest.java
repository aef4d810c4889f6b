package io.lora4j.lora;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.model.Assets;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.model.TestModels;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import java.util.Random;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** LoftQ: the truncated SVD, and the error reduction on a synthetic and the real model. */
class LoftQTest {
    private static final Backend CPU = Backends.cpu();

    @Test
    void lowRankRecoversARankThreeMatrix() {
        int m = 40, n = 30, k = 3;
        Random r = new Random(2);
        double[] mat = new double[m * n];
        for (int t = 0; t < k; t++) {
            double[] u = new double[m], v = new double[n];
            for (int i = 0; i < m; i++) u[i] = r.nextGaussian();
            for (int j = 0; j < n; j++) v[j] = r.nextGaussian() * (t + 1);
            for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) mat[i * n + j] += u[i] * v[j];
        }
        double[][] f = LoftQ.lowRank(mat, m, n, k, new SplittableRandom(1));
        double err = 0, norm = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double p = 0;
                for (int t = 0; t < k; t++) p += f[0][i * k + t] * f[1][t * n + j];
                err = Math.max(err, Math.abs(p - mat[i * n + j]));
                norm = Math.max(norm, Math.abs(mat[i * n + j]));
            }
        assertTrue(err < 1e-9 * norm, "rank-3 reconstruction error " + err);
    }

    @Test
    void adapterReducesTheQuantizationErrorOfASyntheticModel() {
        LoraConfig lc = LoraConfig.defaults().withRank(8).withInit(LoraConfig.Init.LOFTQ);
        try (LlamaWeights w = TestModels.random(TestModels.smallConfig(2, false), 4)) {
            for (int iter : new int[] {1, 3}) {
                LoraConfig c = new LoraConfig(8, 16, 0, LoraConfig.Bias.NONE, lc.targetModules(), false, LoraConfig.Init.LOFTQ, iter, 3407);
                LoftQ.Result r = LoftQ.initialize(CPU, w, c, 64, true);
                try (LoraAdapter a = r.adapter()) {
                    System.out.printf("LoftQ synthetic, %d iteration(s): relative error %.4f -> %.4f%n", iter, r.errorBefore(), r.errorAfter());
                    assertTrue(r.errorAfter() < 0.97 * r.errorBefore(), iter + " iterations: " + r.errorBefore() + " -> " + r.errorAfter());
                    float[] v = a.toFloats();
                    boolean bNonZero = false;
                    for (LoraAdapter.Slot s : a.slots()) for (long i = s.offsetB(); i < s.offsetB() + s.out() * 8; i++) bNonZero |= v[(int) i] != 0;
                    assertTrue(bNonZero, "LoftQ starts with a nonzero B");
                } finally {
                    for (var l : r.weights().layers()) for (var p : l.projections().values()) p.close();
                }
            }
        }
    }

    @Test
    void stories15MLoftQImprovement() throws Exception {
        var path = Assets.require("stories15M.bin");
        try (LlamaWeights w = ModelLoader.load(path)) {
            LoraConfig c = LoraConfig.defaults().withInit(LoraConfig.Init.LOFTQ); // r 16, alpha 16, all 7 targets
            long t0 = System.nanoTime();
            LoftQ.Result r = LoftQ.initialize(CPU, w, c, 64, true);
            try (LoraAdapter a = r.adapter()) {
                System.out.printf("LoftQ stories15M r=16 all-linear, 1 iteration: relative Frobenius error %.5f -> %.5f (%.1f%% lower, %.1f s)%n",
                        r.errorBefore(), r.errorAfter(), 100 * (1 - r.errorAfter() / r.errorBefore()), (System.nanoTime() - t0) / 1e9);
                assertTrue(r.errorAfter() < r.errorBefore(), r.errorBefore() + " -> " + r.errorAfter());
                assertEquals(6 * 7 * 2, a.slots().size() * 2);
            } finally {
                for (var l : r.weights().layers()) for (var p : l.projections().values()) p.close();
            }
        }
    }
}
