package io.lora4j.train;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.Projection;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.Tensor;
import java.util.List;
import org.bytedeco.javacpp.FloatPointer;
import org.junit.jupiter.api.Test;

/** Gradients of the whole trainable model: finite differences, checkpointing, dropout, rsLoRA, NF4. */
class LoraTrainingModelTest {
    private static final Backend CPU = Backends.cpu();

    /**
     * Central differences in fp32 with step {@value #FD_STEP}: the loss is a double sum of fp32
     * per-token losses (rounding ~1e-7 relative), so the difference quotient carries ~1e-5
     * absolute noise; truncation error is O(step²). Tolerance: atol + rtol·|analytic|.
     */
    private static final double FD_STEP = 1e-2, FD_ATOL = 2e-4, FD_RTOL = 2e-2;

    private static Batch batch(long seed) {
        return Batch.of(TrainFixtures.rows(3, 40, seed), 0);
    }

    private static float[] gradients(LoraTrainingModel m, Batch b, long seed) {
        m.zeroGradients();
        m.forwardBackward(b, (float) (1.0 / b.targetTokens()), seed);
        return m.gradients().toFloats();
    }

    @Test
    void finiteDifferencesMatchTheAnalyticGradientOfEveryLoraMatrixKind() {
        LoraConfig lc = TrainFixtures.lora(4, 8);
        try (LlamaWeights w = TrainFixtures.tinyModel(11);
             LoraAdapter ad = TrainFixtures.randomAdapter(CPU, w.config(), lc, 5, 0.3);
             LoraTrainingModel m = new LoraTrainingModel(CPU, w, ad)) {
            Batch b = batch(21);
            long n = b.targetTokens();
            float[] g = gradients(m, b, 0);
            FloatPointer p = ad.parameters().floatPointer();
            int checked = 0;
            double worst = 0;
            // in each slot of layer 0 and 1, the A and B entries with the largest |gradient|
            for (LoraAdapter.Slot s : ad.slots()) {
                for (boolean isA : new boolean[] {true, false}) {
                    long off = isA ? s.offsetA() : s.offsetB(), len = isA ? lc.r() * s.in() : s.out() * lc.r();
                    long best = off;
                    for (long i = off; i < off + len; i++) if (Math.abs(g[(int) i]) > Math.abs(g[(int) best])) best = i;
                    float orig = p.get(best);
                    p.put(best, (float) (orig + FD_STEP));
                    double up = m.lossSum(b) / n;
                    p.put(best, (float) (orig - FD_STEP));
                    double down = m.lossSum(b) / n;
                    p.put(best, orig);
                    double fd = (up - down) / (2 * FD_STEP), an = g[(int) best];
                    double err = Math.abs(fd - an);
                    worst = Math.max(worst, err / (FD_ATOL + FD_RTOL * Math.abs(an)));
                    assertTrue(err <= FD_ATOL + FD_RTOL * Math.abs(an), s.projection().moduleName + " layer " + s.layer() + (isA ? " A" : " B")
                            + "[" + (best - off) + "]: analytic " + an + " vs finite difference " + fd);
                    assertTrue(Math.abs(an) > 1e-4, "gradient too small to check: " + an);
                    checked++;
                }
            }
            assertEquals(2 * 7 * 2, checked);
            System.out.printf("finite differences: %d entries, worst error %.3f of the tolerance%n", checked, worst);
        }
    }

    @Test
    void checkpointingModesGiveBitIdenticalGradients() {
        LoraConfig lc = TrainFixtures.lora(4, 8).withDropout(0.1);
        // 5 layers: chunked groups of 2 leave a short last group (2, 2, 1)
        io.lora4j.model.LlamaConfig five = new io.lora4j.model.LlamaConfig("llama", 32, 48, 5, 4, 2, 8, 1e-5, 10000.0, null, 40, 64, false, 1,
                List.of(2), "float32");
        try (LlamaWeights w = io.lora4j.model.TestModels.random(five, 12);
             LoraAdapter ad = TrainFixtures.randomAdapter(CPU, w.config(), lc, 6, 0.2);
             LoraTrainingModel m = new LoraTrainingModel(CPU, w, ad)) {
            Batch b = batch(22);
            float[] ref = gradients(m, b, 77);
            assertEquals(5, m.checkpointGroup());
            Object[][] modes = {{CheckpointMode.TRUE, 0, 1}, {CheckpointMode.UNSLOTH, 0, 1}, {CheckpointMode.CHUNKED, 0, 2},
                {CheckpointMode.CHUNKED, 1, 1}, {CheckpointMode.CHUNKED, 2, 2}, {CheckpointMode.CHUNKED, 3, 3}, {CheckpointMode.CHUNKED, 5, 5},
                {CheckpointMode.CHUNKED, 9, 5}};
            for (Object[] mc : modes) {
                CheckpointMode mode = (CheckpointMode) mc[0];
                int every = (Integer) mc[1];
                m.setCheckpointing(mode, every);
                assertEquals((int) (Integer) mc[2], m.checkpointGroup(), mode + " every " + every);
                String what = mode + (mode == CheckpointMode.CHUNKED ? " every " + every : "");
                io.lora4j.tensor.MemoryTracker.GLOBAL.resetPeaks();
                long liveBefore = io.lora4j.tensor.MemoryTracker.GLOBAL.liveTotal(io.lora4j.tensor.Device.CPU);
                assertArrayEquals(ref, gradients(m, b, 77), what + " changed the gradients");
                assertEquals(liveBefore, io.lora4j.tensor.MemoryTracker.GLOBAL.liveTotal(io.lora4j.tensor.Device.CPU), what + " leaked memory");
                long offloaded = io.lora4j.tensor.MemoryTracker.GLOBAL.peak(io.lora4j.tensor.Device.CPU, io.lora4j.tensor.MemoryCategory.OFFLOADED);
                long kept = io.lora4j.tensor.MemoryTracker.GLOBAL.peak(io.lora4j.tensor.Device.CPU, io.lora4j.tensor.MemoryCategory.CHECKPOINTS);
                assertTrue(mode == CheckpointMode.UNSLOTH ? offloaded > 0 : kept > 0, what + ": offloaded " + offloaded + ", checkpoints " + kept);
            }
        }
    }

    @Test
    void dropoutActsOnlyWhileTraining() {
        LoraConfig plain = TrainFixtures.lora(4, 8);
        LoraConfig dropped = plain.withDropout(0.5);
        try (LlamaWeights w = TrainFixtures.tinyModel(13);
             LoraAdapter a0 = TrainFixtures.randomAdapter(CPU, w.config(), plain, 7, 0.3);
             LoraAdapter a1 = TrainFixtures.randomAdapter(CPU, w.config(), dropped, 7, 0.3);
             LoraTrainingModel m0 = new LoraTrainingModel(CPU, w, a0);
             LoraTrainingModel m1 = new LoraTrainingModel(CPU, w, a1)) {
            Batch b = batch(23);
            double eval0 = m0.lossSum(b), eval1 = m1.lossSum(b);
            assertEquals(eval0, eval1, 0.0, "evaluation must not apply dropout");
            double train0 = m0.forwardBackward(b, 1f, 1);
            assertEquals(eval0, train0, 1e-9 * Math.abs(eval0), "without dropout, training and evaluation losses agree");
            double s1 = m1.forwardBackward(b, 1f, 1), s2 = m1.forwardBackward(b, 1f, 2), s1again = m1.forwardBackward(b, 1f, 1);
            assertNotEquals(eval1, s1, "dropout 0.5 must change the training loss");
            assertNotEquals(s1, s2, "different seeds draw different masks");
            assertEquals(s1, s1again, 0.0, "the same seed draws the same masks");
        }
    }

    @Test
    void rsLoraScalesByAlphaOverSqrtR() {
        LoraConfig rs = TrainFixtures.lora(4, 4).withRslora(true); // 4/√4 = 2
        LoraConfig plain = TrainFixtures.lora(4, 8);                // 8/4 = 2
        assertEquals(2.0, rs.scaling(), 0.0);
        assertEquals(16 / Math.sqrt(64), LoraConfig.defaults().withRank(64).withRslora(true).scaling(), 0.0);
        assertEquals(0.25, LoraConfig.defaults().withRank(64).scaling(), 0.0);
        try (LlamaWeights w = TrainFixtures.tinyModel(14);
             LoraAdapter a = TrainFixtures.randomAdapter(CPU, w.config(), rs, 8, 0.3);
             LoraAdapter b = TrainFixtures.randomAdapter(CPU, w.config(), plain, 8, 0.3);
             LoraAdapter c = TrainFixtures.randomAdapter(CPU, w.config(), rs.withRslora(false), 8, 0.3);
             LoraTrainingModel ma = new LoraTrainingModel(CPU, w, a);
             LoraTrainingModel mb = new LoraTrainingModel(CPU, w, b);
             LoraTrainingModel mc = new LoraTrainingModel(CPU, w, c)) {
            Batch x = batch(24);
            assertEquals(mb.lossSum(x), ma.lossSum(x), 0.0, "rsLoRA alpha 4, r 4 must equal plain alpha 8, r 4");
            assertNotEquals(ma.lossSum(x), mc.lossSum(x), "without rsLoRA the scale is 1, not 2");
        }
    }

    @Test
    void nf4BaseGradientsEqualThoseOfItsDequantizedDenseTwin() {
        LoraConfig lc = TrainFixtures.lora(4, 8);
        try (LlamaWeights dense = TrainFixtures.tinyModel(15)) {
            LlamaWeights q = TrainFixtures.quantized(CPU, dense);
            LlamaWeights dq = TrainFixtures.dequantized(CPU, q);
            try (LoraAdapter a = TrainFixtures.randomAdapter(CPU, q.config(), lc, 9, 0.3);
                 LoraAdapter b = TrainFixtures.randomAdapter(CPU, q.config(), lc, 9, 0.3);
                 LoraTrainingModel mq = new LoraTrainingModel(CPU, q, a);
                 LoraTrainingModel md = new LoraTrainingModel(CPU, dq, b)) {
                Batch x = batch(25);
                float[] gq = gradients(mq, x, 0), gd = gradients(md, x, 0);
                double max = 0, diff = 0;
                for (int i = 0; i < gq.length; i++) {
                    max = Math.max(max, Math.abs(gd[i]));
                    diff = Math.max(diff, Math.abs(gq[i] - gd[i]));
                }
                // the NF4 kernels dequantize exactly; only summation order differs (fp32)
                assertTrue(diff <= 1e-4 * max, "NF4 vs dequantized gradients differ by " + diff + " (max " + max + ")");
                assertEquals(md.lossSum(x), mq.lossSum(x), 1e-5 * md.lossSum(x));
            } finally {
                // embedding and norms are shared with `dense` (closed by its try); the projections are their own
                for (var l : q.layers()) for (var pw : l.projections().values()) pw.close();
                for (var l : dq.layers()) for (var pw : l.projections().values()) pw.close();
            }
        }
    }

    @Test
    void rejectsTokensOutsideTheVocabulary() {
        LoraConfig lc = TrainFixtures.lora(2, 2);
        try (LlamaWeights w = TrainFixtures.tinyModel(16);
             LoraAdapter a = LoraAdapter.create(CPU, w.config(), lc);
             LoraTrainingModel m = new LoraTrainingModel(CPU, w, a)) {
            Batch bad = Batch.of(List.of(Example.allTokens(new int[] {1, 5, 40})), 0);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> m.lossSum(bad));
            assertTrue(e.getMessage().contains("40"), e.getMessage());
        }
    }

    static float[] copy(Tensor t) {
        return t.toFloats();
    }
}
