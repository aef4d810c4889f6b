package io.lora4j.plan;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.model.LlamaConfig;
import io.lora4j.model.Projection;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.train.CheckpointMode;
import java.nio.file.Path;
import java.util.EnumSet;
import org.junit.jupiter.api.Test;

/** The planner's closed forms and its behaviour on the published Llama shapes (examples/configs). */
class MemoryPlannerTest {
    private static final Path L8B = Path.of("examples/configs/Llama-3.1-8B.json"), L70B = Path.of("examples/configs/Llama-3.3-70B.json");

    @Test
    void nf4BytesFollowBitsandbytesLayout() {
        // 4096 x 4096: 8 Mi nibbles = 8 MiB, 262144 blocks of 64: fp32 absmax 1 MiB, 8-bit codes 256 KiB, 1024 nested fp32 absmax
        long n = 4096L * 4096;
        assertEquals(n / 2 + 262144 * 4 + 262144 + 1024 * 4, MemoryPlanner.nf4Bytes(n, 64, true));
        assertEquals(n / 2 + 262144 * 4, MemoryPlanner.nf4Bytes(n, 64, false));
        assertEquals(3 / 2 + 1 + 1 * 4 + 1 + 1 * 4, MemoryPlanner.nf4Bytes(3, 64, true)); // odd n rounds the nibbles up: (3+1)/2 = 2
        // on CUDA a double-quantized weight keeps no fp32 absmax: bitsandbytes' own storage
        assertEquals(n / 2 + 262144 + 1024 * 4, MemoryPlanner.nf4Bytes(n, 64, true, false));
        assertEquals(n / 2 + 262144 * 4, MemoryPlanner.nf4Bytes(n, 64, false, false), "without double quantization the fp32 absmax is the only copy");
    }

    @Test
    void storedActivationsMatchTheClosedFormPerLayer() throws Exception {
        LlamaConfig c = LlamaConfig.read(L8B);
        PlanSettings s = PlanSettings.defaults().withDevice(Device.CPU).withBatch(1).withSeqLen(512).withCheckpointing(CheckpointMode.NONE, 0);
        long t = s.tokens(), d = c.hiddenSize(), q = c.qDim(), kv = c.kvDim(), inter = c.intermediateSize(), h = c.numAttentionHeads();
        long perLayer = t * (4 * d + 2 * q + 2 * kv + 3 * inter + h + 2) + t * s.r() * 7;
        long none = MemoryPlanner.estimate(c, s).peak(MemoryCategory.ACTIVATIONS);
        // NONE peaks in the first layer backward: x0, L layers, dRes, and the MLP-side gradients (2I + d, larger than the attention side)
        long expected = 4 * (t * d + c.numHiddenLayers() * perLayer + t * d + t * (2 * inter + d));
        assertEquals(expected, none);
        // TRUE: the layer outputs are stored (CHECKPOINTS) until their layer's backward
        long ckpt = MemoryPlanner.estimate(c, s.withCheckpointing(CheckpointMode.TRUE, 0)).peak(MemoryCategory.CHECKPOINTS);
        assertEquals(4 * t * d * c.numHiddenLayers(), ckpt, "L - 1 stored layer inputs + the model output (x0 is an activation)");
    }

    @Test
    void defaultsCheckpointLikeTrainAndPlan() {
        assertEquals(CheckpointMode.UNSLOTH, PlanSettings.defaults().checkpointing(), "train and plan default to unsloth");
    }

    @Test
    void checkpointingOrdersThePeaksAsDesigned() throws Exception {
        for (Path p : new Path[] {L8B, L70B}) {
            LlamaConfig c = LlamaConfig.read(p);
            PlanSettings s = PlanSettings.defaults().withLoadIn4bit(true).withBatch(1);
            long none = MemoryPlanner.estimate(c, s.withCheckpointing(CheckpointMode.NONE, 0)).peakTotal();
            long tru = MemoryPlanner.estimate(c, s.withCheckpointing(CheckpointMode.TRUE, 0)).peakTotal();
            long uns = MemoryPlanner.estimate(c, s.withCheckpointing(CheckpointMode.UNSLOTH, 0)).peakTotal();
            long chunked = MemoryPlanner.estimate(c, s.withCheckpointing(CheckpointMode.CHUNKED, 0)).peakTotal();
            assertTrue(uns < tru && tru < chunked && chunked < none, p + ": unsloth " + uns + " < true " + tru + " < chunked " + chunked + " < none " + none);
            MemoryEstimate e = MemoryPlanner.estimate(c, s.withCheckpointing(CheckpointMode.UNSLOTH, 0));
            // bf16 layer inputs (mixed precision, CUDA's default): 2 B per element; fp32 activations: 4 B
            assertEquals(2L * 2048 * c.hiddenSize() * (c.numHiddenLayers() - 1), e.peak(MemoryCategory.OFFLOADED), "all but the last input on the host");
            assertEquals(4L * 2048 * c.hiddenSize() * (c.numHiddenLayers() - 1),
                    MemoryPlanner.estimate(c, s.withCheckpointing(CheckpointMode.UNSLOTH, 0).withBf16(false)).peak(MemoryCategory.OFFLOADED));
            assertTrue(e.hostPeak() >= e.peak(MemoryCategory.OFFLOADED));
        }
    }

    @Test
    void lowestPeakGroupSizeIsFarBelowSqrtL() throws Exception {
        // a layer's activations are ~15-17x its input: chunks of round(sqrt(L)) keep more than per-layer checkpoints
        LlamaConfig c70 = LlamaConfig.read(L70B), c8 = LlamaConfig.read(L8B);
        PlanSettings s = PlanSettings.defaults().withLoadIn4bit(true).withBatch(1);
        assertEquals(2, MemoryPlanner.bestCheckpointEvery(c70, s));
        assertEquals(1, MemoryPlanner.bestCheckpointEvery(c8, s));
        long k2 = MemoryPlanner.estimate(c70, s.withCheckpointing(CheckpointMode.CHUNKED, 2)).peakTotal();
        long sqrt = MemoryPlanner.estimate(c70, s.withCheckpointing(CheckpointMode.CHUNKED, 0)).peakTotal();
        long tru = MemoryPlanner.estimate(c70, s.withCheckpointing(CheckpointMode.TRUE, 0)).peakTotal();
        assertTrue(k2 < tru && tru < sqrt, "k=2 " + k2 + " < true " + tru + " < k=9 " + sqrt);
    }

    @Test
    void budgetSearchesAgreeWithTheEstimate() throws Exception {
        LlamaConfig c = LlamaConfig.read(L8B);
        PlanSettings s = PlanSettings.defaults().withLoadIn4bit(true).withCheckpointing(CheckpointMode.UNSLOTH, 0);
        long budget = 24L << 30;
        int b = MemoryPlanner.maxBatch(c, s, budget, 64);
        assertTrue(b >= 1 && b < 64, "batch " + b);
        assertTrue(MemoryPlanner.estimate(c, s.withBatch(b)).peakTotal() <= budget);
        assertTrue(MemoryPlanner.estimate(c, s.withBatch(b + 1)).peakTotal() > budget);
        int n = MemoryPlanner.maxSeqLen(c, s.withBatch(1), budget, c.maxPositionEmbeddings());
        assertTrue(n > 2048, "seq " + n);
        assertTrue(MemoryPlanner.estimate(c, s.withBatch(1).withSeqLen(n)).peakTotal() <= budget);
        if (n < c.maxPositionEmbeddings()) assertTrue(MemoryPlanner.estimate(c, s.withBatch(1).withSeqLen(n + 1)).peakTotal() > budget);
        assertEquals(0, MemoryPlanner.maxBatch(c, s.withLoadIn4bit(false).withWeightDtype(io.lora4j.tensor.DType.F32), budget, 64),
                "the fp32 8B base alone is 30 GiB");
    }

    @Test
    void llama70bQloraFigureOfTheReadme() throws Exception {
        LlamaConfig c = LlamaConfig.read(L70B);
        PlanSettings s = PlanSettings.defaults().withLoadIn4bit(true).withBatch(1).withSeqLen(2048).withCheckpointing(CheckpointMode.UNSLOTH, 0);
        MemoryEstimate e = MemoryPlanner.estimate(c, s);
        System.out.printf("70B QLoRA r16 seq 2048 b1 unsloth: peak %.2f GiB (%.2f GB), weights %.2f GiB, training state %.2f GiB%n",
                e.peakTotal() / (double) (1L << 30), e.peakTotal() / 1e9, e.peak(MemoryCategory.WEIGHTS) / (double) (1L << 30),
                e.peakTotalWithoutWeights() / (double) (1L << 30));
        assertEquals(207_093_760L, MemoryPlanner.loraParameterCount(c, 16, EnumSet.allOf(Projection.class)));
        // README.md "Memory planning" quotes these figures: keep them in step
        assertEquals(41.12, e.peakTotal() / (double) (1L << 30), 0.005, "peak GiB (mixed precision, CUDA's default)");
        assertEquals(41.63, MemoryPlanner.estimate(c, s.withBf16(false)).peakTotal() / (double) (1L << 30), 0.005, "peak GiB with fp32 activations");
        assertEquals(36.81, e.peak(MemoryCategory.WEIGHTS) / (double) (1L << 30), 0.005, "base GiB");
        assertEquals(45.99e9, MemoryPlanner.estimate(c, s.withCheckpointing(CheckpointMode.CHUNKED, 2)).peakTotal(), 0.005e9);
        assertEquals(46.77e9, MemoryPlanner.estimate(c, s.withCheckpointing(CheckpointMode.TRUE, 0)).peakTotal(), 0.005e9);
        assertEquals(48.4e9, MemoryPlanner.estimate(c, s.withCheckpointing(CheckpointMode.CHUNKED, 2).withBf16(false)).peakTotal(), 0.05e9);
        assertEquals(49.9e9, MemoryPlanner.estimate(c, s.withCheckpointing(CheckpointMode.TRUE, 0).withBf16(false)).peakTotal(), 0.05e9);
    }

    @Test
    void rejectsBadSettingsInOneMessage() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new PlanSettings(0, EnumSet.noneOf(Projection.class), 1, 0,
                CheckpointMode.TRUE, 3, false, 60, true, 1.5, Device.CPU));
        for (String want : new String[] {"r must be >= 1", "target module", "sequence length", "batch", "checkpoint_every applies only", "blocksize", "lora_dropout"})
            assertTrue(e.getMessage().contains(want), want + " in " + e.getMessage());
    }
}
