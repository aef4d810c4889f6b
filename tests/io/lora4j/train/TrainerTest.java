package io.lora4j.train;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Gradient accumulation ("GA fix"), determinism, schedules and optimizer steps. */
class TrainerTest {
    private static final Backend CPU = Backends.cpu();
    /**
     * Same gradient up to fp32 summation order: the GEMMs see different row groupings, so
     * per-element differences stay within {@value #GRAD_RTOL} of the largest gradient.
     */
    private static final double GRAD_RTOL = 1e-5;
    /** After a few AdamW steps: an element moves by ≤ lr per step, rounding differences stay far below lr. */
    private static final double PARAM_ATOL_OF_LR = 1e-3;

    private static TrainConfig config(double lr, long steps) {
        return TrainConfig.defaults().withSchedule(lr, 1, LrSchedule.LINEAR, 0.01, 1.0, steps);
    }

    private static float[] gaGradient(LlamaWeights w, LoraConfig lc, List<Example> rows, int batch, int ga) {
        try (LoraAdapter a = TrainFixtures.randomAdapter(CPU, w.config(), lc, 3, 0.2);
             LoraTrainingModel m = new LoraTrainingModel(CPU, w, a);
             Trainer t = new Trainer(m, config(1e-3, 4), 4)) {
            List<List<Batch>> win = TrainFixtures.windows(rows, batch, ga);
            assertEquals(1, win.size());
            t.accumulate(win.get(0), new long[1]);
            return m.gradients().toFloats();
        }
    }

    private static double maxAbs(float[] a) {
        double m = 0;
        for (float x : a) m = Math.max(m, Math.abs(x));
        return m;
    }

    private static double maxDiff(float[] a, float[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
        return m;
    }

    @Test
    void batchTimesAccumulationLayoutsGiveTheSameGradientAndTheNaiveMeanDoesNot() {
        LoraConfig lc = TrainFixtures.lora(4, 8);
        List<Example> rows = TrainFixtures.rows(16, 40, 99);
        try (LlamaWeights w = TrainFixtures.tinyModel(31)) {
            float[] ref = gaGradient(w, lc, rows, 16, 1);
            double scale = maxAbs(ref);
            assertTrue(scale > 1e-4);
            for (int[] bg : new int[][] {{1, 16}, {2, 8}, {4, 4}}) {
                float[] g = gaGradient(w, lc, rows, bg[0], bg[1]);
                double d = maxDiff(ref, g);
                System.out.printf("GA b%d x g%d vs b16 x g1: max |diff| %.3g (%.3g of max |g|)%n", bg[0], bg[1], d, d / scale);
                assertTrue(d <= GRAD_RTOL * scale, "b" + bg[0] + "xg" + bg[1] + " differs by " + d + " (max |g| " + scale + ")");
            }
            // the naive recipe: mean loss per micro-batch, then 1/G over the window
            try (LoraAdapter a = TrainFixtures.randomAdapter(CPU, w.config(), lc, 3, 0.2);
                 LoraTrainingModel m = new LoraTrainingModel(CPU, w, a)) {
                m.zeroGradients();
                List<Batch> mbs = TrainFixtures.windows(rows, 1, 16).get(0);
                for (Batch b : mbs) m.forwardBackward(b, (float) (1.0 / (16.0 * b.targetTokens())), 0);
                double d = maxDiff(ref, m.gradients().toFloats());
                System.out.printf("naive per-micro-batch mean vs GA fix: max |diff| %.3g (%.3g of max |g|)%n", d, d / scale);
                assertTrue(d > 1e-2 * scale, "the naive mean should differ visibly on rows of unequal length, got " + d);
            }
        }
    }

    private static float[] train(LlamaWeights w, LoraConfig lc, List<Example> rows, int batch, int ga, int steps, double[] losses) {
        try (LoraAdapter a = LoraAdapter.create(CPU, w.config(), lc);
             LoraTrainingModel m = new LoraTrainingModel(CPU, w, a);
             Trainer t = new Trainer(m, config(5e-3, steps), steps)) {
            List<List<Batch>> win = TrainFixtures.windows(rows, batch, ga);
            for (int s = 0; s < steps; s++) {
                Trainer.StepResult r = t.step(win.get(s % win.size()));
                if (losses != null) losses[s] = r.loss();
            }
            return a.toFloats();
        }
    }

    @Test
    void adaptersAfterSeveralStepsAgreeAcrossAccumulationLayouts() {
        LoraConfig lc = TrainFixtures.lora(4, 8);
        List<Example> rows = TrainFixtures.rows(16, 40, 98);
        try (LlamaWeights w = TrainFixtures.tinyModel(32)) {
            double[] l16 = new double[4], l1 = new double[4];
            float[] ref = train(w, lc, rows, 16, 1, 4, l16);
            for (int[] bg : new int[][] {{1, 16}, {2, 8}, {4, 4}}) {
                float[] p = train(w, lc, rows, bg[0], bg[1], 4, l1);
                double d = maxDiff(ref, p);
                System.out.printf("after 4 steps b%d x g%d: max |param diff| %.3g (lr 5e-3)%n", bg[0], bg[1], d);
                assertTrue(d <= PARAM_ATOL_OF_LR * 5e-3, "b" + bg[0] + "xg" + bg[1] + " adapter differs by " + d);
                for (int s = 0; s < 4; s++) assertEquals(l16[s], l1[s], 1e-5 * l16[s], "loss of step " + (s + 1));
            }
            assertTrue(l16[3] < l16[0], "loss should fall on repeated data: " + l16[0] + " -> " + l16[3]);
        }
    }

    @Test
    void sameConfigAndSeedGiveBitIdenticalAdapterFiles(@TempDir Path dir) throws Exception {
        LoraConfig lc = TrainFixtures.lora(4, 8).withDropout(0.1);
        List<Example> rows = TrainFixtures.rows(8, 40, 97);
        try (LlamaWeights w = TrainFixtures.tinyModel(33)) {
            List<byte[]> files = new ArrayList<>();
            for (int run = 0; run < 2; run++) {
                try (LoraAdapter a = LoraAdapter.create(CPU, w.config(), lc);
                     LoraTrainingModel m = new LoraTrainingModel(CPU, w, a);
                     Trainer t = new Trainer(m, config(5e-3, 3), 3)) {
                    for (List<Batch> win : TrainFixtures.windows(rows, 2, 2)) t.step(win);
                    Path out = dir.resolve("run" + run);
                    a.save(out, "tiny", false);
                    files.add(Files.readAllBytes(out.resolve(LoraAdapter.WEIGHTS_FILE)));
                }
            }
            assertArrayEquals(files.get(0), files.get(1));
        }
    }

    @Test
    void clippingAndScheduleFollowTorchAndHf() {
        // HF linear with warmup 2 over 10 steps: 0, .5, 1, 7/8, ...
        assertEquals(0.0, LrSchedule.LINEAR.factor(0, 2, 10), 0);
        assertEquals(0.5, LrSchedule.LINEAR.factor(1, 2, 10), 0);
        assertEquals(1.0, LrSchedule.LINEAR.factor(2, 2, 10), 0);
        assertEquals(7.0 / 8, LrSchedule.LINEAR.factor(3, 2, 10), 1e-15);
        assertEquals(0.0, LrSchedule.LINEAR.factor(10, 2, 10), 0);
        assertEquals(1.0, LrSchedule.COSINE.factor(2, 2, 10), 1e-15);
        assertEquals(0.5, LrSchedule.COSINE.factor(6, 2, 10), 1e-15);
        assertEquals(1.0, LrSchedule.CONSTANT.factor(0, 5, 10), 0);
        assertEquals(0.2, LrSchedule.CONSTANT_WITH_WARMUP.factor(1, 5, 10), 1e-15);
        assertEquals(3, LrSchedule.warmupSteps(0, 0.1, 21)); // ceil(2.1)
        assertEquals(4, LrSchedule.warmupSteps(4, 0.1, 21));
        TrainConfig c = TrainConfig.defaults();
        assertEquals(7, c.stepsPerEpoch(100)); // ceil(100 / 16)
        assertEquals(7, c.totalSteps(100));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new TrainConfig(-1, 1, -1, 0, 1, -2, 1.5,
                LrSchedule.LINEAR, 0.01, 1, 1, 1, 0, 0, 0, 2048, CheckpointMode.NONE, 0, 0));
        for (String f : new String[] {"learning_rate", "per_device_train_batch_size", "warmup_steps", "warmup_ratio"})
            assertTrue(e.getMessage().contains(f), e.getMessage());
    }

    @Test
    void loraBIsZeroRightAfterInitAndAIsBounded() {
        LoraConfig lc = LoraConfig.defaults().withRank(8);
        try (LlamaWeights w = TrainFixtures.tinyModel(34); LoraAdapter a = LoraAdapter.create(CPU, w.config(), lc)) {
            float[] v = a.toFloats();
            for (LoraAdapter.Slot s : a.slots()) {
                for (long i = s.offsetB(); i < s.offsetB() + s.out() * 8; i++) assertEquals(0f, v[(int) i], s.key(false));
                double bound = 1 / Math.sqrt(s.in()), max = 0;
                for (long i = s.offsetA(); i < s.offsetA() + 8 * s.in(); i++) max = Math.max(max, Math.abs(v[(int) i]));
                assertTrue(max <= bound && max > 0.5 * bound, s.key(true) + " max " + max + " bound " + bound);
            }
        }
    }
}
