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

    /** One case of tests/resources/lora/loftq_golden.txt (scripts/reference/loftq_reference.py). */
    private record Golden(String name, int out, int in, int r, int iters, float[] w, float[] dequant, float[] a, float[] b) {}

    private static float[] hexFloats(String hex) {
        java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(java.util.HexFormat.of().parseHex(hex)).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        float[] f = new float[hex.length() / 8];
        for (int i = 0; i < f.length; i++) f[i] = bb.getFloat();
        return f;
    }

    private static java.util.List<Golden> golden() throws java.io.IOException {
        java.util.List<Golden> cases = new java.util.ArrayList<>();
        String[] head = null;
        java.util.Map<String, float[]> v = new java.util.HashMap<>();
        java.util.List<String> lines = new java.util.ArrayList<>(java.nio.file.Files.readAllLines(java.nio.file.Path.of("tests/resources/lora/loftq_golden.txt")));
        lines.add("case end 0 0 0 0");
        for (String line : lines) {
            if (line.startsWith("#") || line.isBlank()) continue;
            String[] t = line.split(" ");
            if (t[0].equals("case")) {
                if (head != null)
                    cases.add(new Golden(head[1], Integer.parseInt(head[2]), Integer.parseInt(head[3]), Integer.parseInt(head[4]),
                            Integer.parseInt(head[5]), v.get("w"), v.get("dequant"), v.get("a"), v.get("b")));
                head = t;
                v.clear();
            } else {
                v.put(t[0], hexFloats(t[1]));
            }
        }
        return cases;
    }

    /**
     * init_lora_weights: loftq gives PEFT's A and B (loftq_init: A = √Σ Vᵀ, B = U√Σ of the NF4
     * residual, bitsandbytes NF4 without double quantization) and PEFT's dequantized base, on the
     * same weights, to within fp32 rounding: PEFT's own fp32 SVD is up to 9e-7 from the exact
     * factors the reference stores.
     */
    @Test
    void matchesPeftLoftqInit() throws Exception {
        java.util.List<Golden> cases = golden();
        assertEquals(4, cases.size());
        for (Golden g : cases) {
            LoftQ.Factors f = LoftQ.factor(CPU, g.w(), g.out(), g.in(), g.r(), g.iters(), 64, false, new SplittableRandom(1));
            try {
                assertArrayEquals(g.dequant(), f.dequantized(), g.name() + ": dequantized NF4 base");
                double worst = 0;
                for (int i = 0; i < g.a().length; i++) worst = Math.max(worst, Math.abs(g.a()[i] - f.r()[i]));
                for (int i = 0; i < g.b().length; i++) worst = Math.max(worst, Math.abs(g.b()[i] - f.l()[i]));
                System.out.printf("LoftQ vs PEFT reference %s: max |diff| of A, B %.2e%n", g.name(), worst);
                assertTrue(worst < 1e-6, g.name() + ": A/B differ from PEFT's by " + worst);
            } finally {
                f.q().close();
            }
        }
    }

    /** The split: PEFT's by default (s·B·A = s·L·R), or compensated (s·B·A = L·R) on request. */
    @Test
    void splitPeftOrScaleCompensated() {
        LoraConfig c = new LoraConfig(4, 8, 0, LoraConfig.Bias.NONE, java.util.EnumSet.allOf(io.lora4j.model.Projection.class), false,
                LoraConfig.Init.LOFTQ, 1, 3407); // s = 2
        try (LlamaWeights w = TestModels.random(TestModels.smallConfig(1, false), 4)) {
            LoftQ.Result peft = LoftQ.initialize(CPU, w, c, 64, true);
            LoftQ.Result comp = LoftQ.initialize(CPU, w, c, 64, true, LoftQ.Split.SCALE_COMPENSATED);
            try (LoraAdapter a = peft.adapter(); LoraAdapter b = comp.adapter()) {
                float[] x = a.toFloats(), y = b.toFloats();
                for (int i = 0; i < x.length; i++) assertEquals(x[i] / Math.sqrt(2), y[i], 1e-6 * Math.max(1, Math.abs(x[i])), "element " + i);
                assertTrue(comp.errorAfter() < 0.97 * comp.errorBefore(), "compensated: an exact start");
                // PEFT's split at s = 2: ||res - 2LR||^2 = ||res||^2 - 4<res,LR> + 4||LR||^2 = ||res||^2 (LR is res's SVD truncation)
                assertEquals(peft.errorBefore(), peft.errorAfter(), 1e-6 * peft.errorBefore(), "PEFT's start at alpha = 2r gains nothing");
            } finally {
                for (var l : peft.weights().layers()) for (var p : l.projections().values()) p.close();
                for (var l : comp.weights().layers()) for (var p : l.projections().values()) p.close();
            }
        }
    }

    /** plan's model of the LoftQ start-up spike is the tracked peak of a real initialisation, to the byte. */
    @Test
    void startupSpikeIsWhatThePlannerSays() {
        io.lora4j.model.LlamaConfig cfg = TestModels.smallConfig(2, false);
        LoraConfig c = LoraConfig.defaults().withRank(8).withInit(LoraConfig.Init.LOFTQ);
        try (LlamaWeights w = TestModels.random(cfg, 4)) {
            io.lora4j.tensor.MemoryTracker t = io.lora4j.tensor.MemoryTracker.GLOBAL;
            io.lora4j.plan.PlanSettings s = io.lora4j.plan.PlanSettings.defaults().withRank(8).withDevice(io.lora4j.tensor.Device.CPU);
            long other = t.liveTotal(io.lora4j.tensor.Device.CPU) - io.lora4j.plan.MemoryPlanner.baseWeightBytes(cfg, s);
            t.resetPeaks();
            LoftQ.Result r = LoftQ.initialize(CPU, w, c, 64, true);
            try (LoraAdapter a = r.adapter()) {
                long peak = t.peakTotal(io.lora4j.tensor.Device.CPU) - other;
                assertEquals(io.lora4j.plan.MemoryPlanner.loftqStartupBytes(cfg, s), peak);
                LoftQ.releaseDenseProjections(w);
                long steady = t.liveTotal(io.lora4j.tensor.Device.CPU) - other;
                assertEquals(io.lora4j.plan.MemoryPlanner.baseWeightBytes(cfg, s.withLoadIn4bit(true))
                        + io.lora4j.plan.MemoryPlanner.loraParameterCount(cfg, 8, c.targetModules()) * 4, steady, "after the release: NF4 + adapter");
            } finally {
                for (var l : r.weights().layers()) for (var p : l.projections().values()) p.close();
            }
        }
    }

    @Test
    void adapterReducesTheQuantizationErrorOfASyntheticModel() {
        LoraConfig lc = LoraConfig.defaults().withRank(8).withInit(LoraConfig.Init.LOFTQ);
        try (LlamaWeights w = TestModels.random(TestModels.smallConfig(2, false), 4)) {
            for (int iter : new int[] {1, 3}) {
                LoraConfig c = new LoraConfig(8, 8, 0, LoraConfig.Bias.NONE, lc.targetModules(), false, LoraConfig.Init.LOFTQ, iter, 3407);
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
