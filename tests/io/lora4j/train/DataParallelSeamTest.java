package io.lora4j.train;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The data-parallel seam of {@link Trainer}: a run of two ranks that see the same window must take
 * the very step one process takes. With an exchange that stands for two identical ranks (every
 * sum doubles), the CE gradient is scaled by 1/(2N) instead of 1/N, a power of two, and summing
 * the two halves gives back the single-process gradient bit for bit; so do the loss, the norm and
 * the AdamW update. A trainer that skipped any of the three sums, or summed after the norm, would
 * not.
 */
class DataParallelSeamTest {
    private static final Backend CPU = Backends.cpu();
    private static final int STEPS = 3;

    /** Two ranks holding the same data: each sum is twice the local value. Records the call order. */
    private static final class TwoIdenticalRanks implements DataParallel.Exchange {
        final List<String> calls = new ArrayList<>();

        @Override
        public long sumTargets(long local) {
            calls.add("targets");
            return 2 * local;
        }

        @Override
        public double sumLoss(double local) {
            calls.add("loss");
            return 2 * local;
        }

        @Override
        public void sumGradients(Backend backend, Tensor gradients) {
            calls.add("gradients");
            float[] g = gradients.toFloats();
            for (int i = 0; i < g.length; i++) g[i] *= 2;
            gradients.floatPointer().put(g);
        }
    }

    private record Run(float[] params, List<Trainer.StepResult> steps) {}

    private static Run train(LlamaWeights w, LoraConfig lc, List<List<Batch>> windows, DataParallel.Exchange ex) {
        TrainConfig tc = TrainConfig.defaults().withSchedule(1e-2, 1, LrSchedule.LINEAR, 0.01, 1.0, STEPS);
        try (LoraAdapter a = TrainFixtures.randomAdapter(CPU, w.config(), lc, 5, 0.2);
             LoraTrainingModel m = new LoraTrainingModel(CPU, w, a);
             Trainer t = new Trainer(m, tc, STEPS, ex)) {
            List<Trainer.StepResult> steps = new ArrayList<>();
            for (int s = 0; s < STEPS; s++) steps.add(t.step(windows.get(s)));
            return new Run(a.toFloats(), steps);
        }
    }

    @Test
    void twoIdenticalRanksTakeTheSingleProcessStepBitForBit() {
        LoraConfig lc = TrainFixtures.lora(4, 8);
        List<Example> rows = TrainFixtures.rows(12, 40, 17);
        List<List<Batch>> windows = TrainFixtures.windows(rows, 2, 2);
        try (LlamaWeights w = TrainFixtures.tinyModel(23)) {
            Run alone = train(w, lc, windows, DataParallel.single().exchange());
            TwoIdenticalRanks two = new TwoIdenticalRanks();
            Run pair = train(w, lc, windows, two);
            for (int s = 0; s < STEPS; s++) {
                Trainer.StepResult a = alone.steps().get(s), p = pair.steps().get(s);
                assertEquals(a.loss(), p.loss(), 0.0, "loss of step " + (s + 1));
                assertEquals(a.gradNorm(), p.gradNorm(), 0.0, "gradient norm of step " + (s + 1));
                assertEquals(2 * a.targets(), p.targets(), "N counts both ranks' targets");
            }
            assertArrayEquals(alone.params(), pair.params(), "parameters after " + STEPS + " steps");
            List<String> perStep = List.of("targets", "gradients", "loss");
            assertEquals(STEPS * perStep.size(), two.calls.size());
            for (int s = 0; s < STEPS; s++) assertEquals(perStep, two.calls.subList(3 * s, 3 * s + 3), "the sums of step " + (s + 1));
        }
    }

    @Test
    void aRankOutsideTheWorldIsRefused() {
        DataParallel one = DataParallel.single();
        assertTrue(one.writesOutputs());
        assertThrows(IllegalArgumentException.class, () -> new DataParallel(2, 2, one.shard(), one.exchange()));
        assertFalse(new DataParallel(1, 2, one.shard(), one.exchange()).writesOutputs());
    }
}
