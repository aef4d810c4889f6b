package io.lora4j.emu;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.data.Batch;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.ops.Backend;
import io.lora4j.plan.MemoryEstimate;
import io.lora4j.plan.MemoryPlanner;
import io.lora4j.plan.PlanSettings;
import io.lora4j.plan.RandomWindows;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.MemoryTracker;
import io.lora4j.train.CheckpointMode;
import io.lora4j.train.LoraTrainingModel;
import io.lora4j.train.LrSchedule;
import io.lora4j.train.TrainConfig;
import io.lora4j.train.Trainer;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The planner against the tracker on the (emulated) CUDA device: the base as the device holds it
 * (bf16 embedding, lm_head and dense projections; NF4 with only the 8-bit absmax) and one optimizer
 * step of 2 micro-batches in each checkpointing mode, with mixed precision (bf16 kept activations, the
 * CUDA default) and without, category by category and in total, to the byte (the CPU counterpart is
 * tests/io/lora4j/plan/MemoryPlannerValidationTest).
 */
class CudaMemoryPlannerTest {
    private static final Path SYNTHETIC = Path.of("tests/resources/model/synthetic-gqa-untied");
    private static final MemoryCategory[] DEVICE = {MemoryCategory.ACTIVATIONS, MemoryCategory.CHECKPOINTS, MemoryCategory.LOGITS,
        MemoryCategory.WORKSPACE, MemoryCategory.LORA, MemoryCategory.GRADS, MemoryCategory.OPTIMIZER};

    private final Backend cuda = Twins.cuda();

    @Test
    void deviceMemoryIsWhatThePlannerSays() throws Exception {
        for (boolean nf4 : new boolean[] {false, true}) {
            MemoryTracker tr = MemoryTracker.GLOBAL;
            long weights0 = tr.live(Device.CUDA, MemoryCategory.WEIGHTS), total0 = tr.liveTotal(Device.CUDA);
            ModelLoader.Options o = (nf4 ? ModelLoader.Options.in4bit() : ModelLoader.Options.defaults()).withBackend(cuda);
            try (LlamaWeights w = ModelLoader.load(SYNTHETIC, o)) {
                LlamaConfig c = w.config();
                for (CheckpointMode mode : new CheckpointMode[] {CheckpointMode.NONE, CheckpointMode.TRUE, CheckpointMode.UNSLOTH})
                for (Boolean bf16 : new Boolean[] {null, false}) {
                    PlanSettings s = PlanSettings.defaults().withLoadIn4bit(nf4).withRank(8).withBatch(2).withSeqLen(24)
                            .withCheckpointing(mode, 0).withBf16(bf16);
                    MemoryEstimate e = MemoryPlanner.estimate(c, s);
                    String label = (nf4 ? "nf4 " : "dense ") + mode + (bf16 == null ? " bf16 auto" : " fp32 activations");
                    tr.resetPeaks();
                    long[] live0 = new long[MemoryCategory.values().length];
                    for (MemoryCategory m : MemoryCategory.values()) live0[m.ordinal()] = tr.live(Device.CUDA, m);
                    long off0 = tr.live(Device.CPU, MemoryCategory.OFFLOADED);
                    try (LoraAdapter a = LoraAdapter.create(cuda, c, LoraConfig.defaults().withRank(8));
                         LoraTrainingModel model = new LoraTrainingModel(cuda, w, a, null, bf16);
                         Trainer t = new Trainer(model, TrainConfig.defaults().withBatch(s.batch(), 2)
                                 .withSchedule(1e-3, 0, LrSchedule.CONSTANT, 0.01, 1.0, 10), 10)) {
                        assertEquals(e.peak(MemoryCategory.WEIGHTS), tr.live(Device.CUDA, MemoryCategory.WEIGHTS) - weights0,
                                label + ": the base on the device (bf16 embedding/lm_head/projections or NF4 + 8-bit absmax, fp32 norms, RoPE)");
                        model.setCheckpointing(mode, 0);
                        List<Batch> window = RandomWindows.of(2, s.batch(), s.seqLen(), c.vocabSize(), new Random(5));
                        assertEquals(bf16 == null, model.bf16(), label + ": bf16 auto is mixed precision on CUDA");
                        assertTrue(Double.isFinite(t.step(window).loss()));
                        cuda.synchronize();
                        for (MemoryCategory m : DEVICE)
                            assertEquals(e.peak(m), tr.peak(Device.CUDA, m) - live0[m.ordinal()], label + ": device peak of " + m);
                        assertEquals(e.peak(MemoryCategory.OFFLOADED), tr.peak(Device.CPU, MemoryCategory.OFFLOADED) - off0,
                                label + ": offloaded layer inputs (host)");
                        assertEquals(e.peakTotal(), tr.peakTotal(Device.CUDA) - total0, label + ": device peak total");
                    }
                }
            }
        }
    }
}
