package io.lora4j.plan;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.data.Batch;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.Assets;
import io.lora4j.model.LayerWeights;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.model.Projection;
import io.lora4j.model.ProjectionWeight;
import io.lora4j.model.TestModels;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.MemoryTracker;
import io.lora4j.train.CheckpointMode;
import io.lora4j.train.LoraTrainingModel;
import io.lora4j.train.LrSchedule;
import io.lora4j.train.TrainConfig;
import io.lora4j.train.Trainer;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The acceptance test of the planner: its predictions against {@link MemoryTracker}'s measured peaks
 * after real optimizer steps (forward + backward of 2 micro-batches, clipping, AdamW) on the CPU,
 * for synthetic models (two batch sizes x two sequence lengths) and the real stories15M (two
 * batch/sequence corners), dense and NF4 base, in every checkpointing mode. The planner replays the
 * training code's allocations, so the agreement is exact; the tolerance is the acceptance criterion.
 */
class MemoryPlannerValidationTest {
    private static final Backend CPU = Backends.cpu();
    /** The acceptance criterion: within 10 % of the measurement. */
    private static final double REL_TOL = 0.10;
    /** The activation-side categories (and the training-state total) compared per case. */
    private static final MemoryCategory[] COMPARED = {MemoryCategory.ACTIVATIONS, MemoryCategory.CHECKPOINTS, MemoryCategory.OFFLOADED,
        MemoryCategory.LOGITS, MemoryCategory.WORKSPACE, MemoryCategory.LORA, MemoryCategory.GRADS, MemoryCategory.OPTIMIZER};
    private static final Object[][] MODES = {{CheckpointMode.NONE, 0}, {CheckpointMode.TRUE, 0}, {CheckpointMode.UNSLOTH, 0},
        {CheckpointMode.CHUNKED, 0}, {CheckpointMode.CHUNKED, 3}};

    private double worst;
    private long worstBytes;
    private int cases;

    /** 5 layers (uneven chunked groups), GQA 4/2 heads of 16, untied vocab 500: logits and MLP both matter. */
    private static LlamaConfig synthetic() {
        return new LlamaConfig("llama", 64, 160, 5, 4, 2, 16, 1e-5, 10000.0, null, 500, 512, false, 1, List.of(2), "float32");
    }

    @Test
    void syntheticDenseAndNf4PredictionsMatchTheTracker() {
        LlamaConfig c = synthetic();
        long before = MemoryTracker.GLOBAL.live(Device.CPU, MemoryCategory.WEIGHTS);
        try (LlamaWeights w = TestModels.random(c, 1)) {
            long measuredWeights = MemoryTracker.GLOBAL.live(Device.CPU, MemoryCategory.WEIGHTS) - before;
            PlanSettings dense = settings(c, false);
            assertEquals(MemoryPlanner.baseWeightBytes(c, dense), measuredWeights, "dense fp32 base bytes");
            for (int batch : new int[] {1, 3})
                for (int seq : new int[] {40, 130})
                    for (Object[] m : MODES)
                        check(w, dense.withBatch(batch).withSeqLen(seq).withCheckpointing((CheckpointMode) m[0], (Integer) m[1]),
                                LoraConfig.defaults().withRank(8), "synthetic fp32");
            // dropout masks and a subset of targets
            LoraConfig some = LoraConfig.defaults().withRank(4).withDropout(0.1).withTargets(EnumSet.of(Projection.Q, Projection.V, Projection.DOWN));
            check(w, settings(c, false).withRank(4).withDropout(0.1).withTargets(some.targetModules()).withBatch(2).withSeqLen(70), some, "synthetic subset+dropout");
            check(w, settings(c, false).withRank(4).withDropout(0.1).withTargets(some.targetModules()).withBatch(2).withSeqLen(70)
                    .withCheckpointing(CheckpointMode.CHUNKED, 2), some, "synthetic subset+dropout chunked");

            long beforeQ = MemoryTracker.GLOBAL.live(Device.CPU, MemoryCategory.WEIGHTS);
            LlamaWeights q = quantize(w);
            try {
                long nf4 = MemoryTracker.GLOBAL.live(Device.CPU, MemoryCategory.WEIGHTS) - beforeQ; // the NF4 projections
                PlanSettings qs = settings(c, true);
                long projections = MemoryPlanner.baseWeightBytes(c, qs) - MemoryPlanner.baseWeightBytes(c, qs.withLoadIn4bit(false))
                        + projectionBytes(c);
                assertEquals(projections, nf4, "NF4 projection bytes (packed + absmax + double-quant codes + nested absmax)");
                for (int batch : new int[] {1, 3})
                    for (int seq : new int[] {40, 130})
                        for (Object[] m : MODES)
                            check(q, qs.withBatch(batch).withSeqLen(seq).withCheckpointing((CheckpointMode) m[0], (Integer) m[1]),
                                    LoraConfig.defaults().withRank(8), "synthetic nf4");
            } finally {
                for (LayerWeights l : q.layers()) for (ProjectionWeight pw : l.projections().values()) pw.close();
            }
        }
        System.out.printf("planner vs tracker: %d cases, worst relative error %.2e, worst absolute %d B%n", cases, worst, worstBytes);
    }

    /**
     * {@code dtype: bfloat16} on the CPU: the embedding, lm_head and dense projections held as BF16
     * copies (2 B/param, what CUDA holds by default), dense and with NF4 projections.
     */
    @Test
    void bf16StorageIsPlannedToo() {
        LlamaConfig c = synthetic();
        try (LlamaWeights w = TestModels.random(c, 2)) {
            for (Object[] m : MODES)
                check(w, settings(c, false).withWeightDtype(DType.BF16).withBatch(2).withSeqLen(70)
                        .withCheckpointing((CheckpointMode) m[0], (Integer) m[1]), LoraConfig.defaults().withRank(8), "synthetic bf16");
            LlamaWeights q = quantize(w);
            try {
                check(q, settings(c, true).withWeightDtype(DType.BF16).withBatch(2).withSeqLen(70), LoraConfig.defaults().withRank(8),
                        "synthetic nf4 + bf16 embeddings");
            } finally {
                for (LayerWeights l : q.layers()) for (ProjectionWeight pw : l.projections().values()) pw.close();
            }
        }
        System.out.printf("planner vs tracker (bf16 storage): %d cases, worst relative error %.2e, worst absolute %d B%n", cases, worst, worstBytes);
    }

    /**
     * {@code bf16: true} on the CPU (mixed precision, the CUDA default): the layer inputs and outputs
     * (checkpoints, offloaded copies) and h1, h2, s kept in bf16 with their fp32 working copies, in
     * every checkpointing mode, dense and NF4, with dropout masks, and Gemma 2's sandwich norms and
     * scaled embedding; exact to the byte, as the fp32 replay.
     */
    @Test
    void mixedPrecisionIsPlannedToTheByte() {
        LlamaConfig c = synthetic();
        try (LlamaWeights w = TestModels.random(c, 4)) {
            for (int[] bs : new int[][] {{1, 40}, {3, 70}})
                for (Object[] m : MODES)
                    check(w, settings(c, false).withBf16(true).withBatch(bs[0]).withSeqLen(bs[1])
                            .withCheckpointing((CheckpointMode) m[0], (Integer) m[1]), LoraConfig.defaults().withRank(8), "synthetic mixed precision");
            LoraConfig some = LoraConfig.defaults().withRank(4).withDropout(0.1).withTargets(EnumSet.of(Projection.Q, Projection.V, Projection.DOWN));
            check(w, settings(c, false).withBf16(true).withRank(4).withDropout(0.1).withTargets(some.targetModules()).withBatch(2).withSeqLen(70)
                    .withCheckpointing(CheckpointMode.UNSLOTH, 0), some, "synthetic mixed precision subset+dropout");
            LlamaWeights q = quantize(w);
            try {
                for (Object[] m : MODES)
                    check(q, settings(c, true).withBf16(true).withBatch(2).withSeqLen(70).withCheckpointing((CheckpointMode) m[0], (Integer) m[1]),
                            LoraConfig.defaults().withRank(8), "synthetic nf4 mixed precision");
            } finally {
                for (LayerWeights l : q.layers()) for (ProjectionWeight pw : l.projections().values()) pw.close();
            }
        }
        LlamaConfig base = new LlamaConfig("gemma2", 64, 160, 3, 4, 2, 16, 1e-6, 1e6, null, 500, 512, false, 1, List.of(2), "float32");
        LlamaConfig g = new LlamaConfig("gemma2", 64, 160, 3, 4, 2, 16, 1e-6, 1e6, null, 500, 512, true, 2, List.of(1), "float32",
                base.architecture().withSlidingWindow(512, 2).withAttention(24, 10000.0).withSoftcaps(1.0, 2.0));
        try (LlamaWeights w = TestModels.random(g, 5)) {
            for (Object[] m : MODES)
                check(w, settings(g, false).withBf16(true).withBatch(2).withSeqLen(50).withCheckpointing((CheckpointMode) m[0], (Integer) m[1]),
                        LoraConfig.defaults().withRank(8), "gemma2 mixed precision");
        }
        System.out.printf("planner vs tracker (bf16 activations): %d cases, worst relative error %.2e, worst absolute %d B%n", cases, worst, worstBytes);
        assertEquals(0, worstBytes, "the replay of the mixed-precision step is exact");
    }

    /**
     * A vocabulary wider than {@link MemoryPlanner#LOGITS_VOCAB_CHUNK}: the head works in
     * vocabulary slices (two here, the last one short), so the logits buffer is 32768 columns wide,
     * not V; more than CE_CHUNK_TOKENS tokens also take two token chunks.
     */
    @Test
    void wideVocabularyIsPlannedAsVocabularySlices() {
        LlamaConfig c = new LlamaConfig("llama", 32, 64, 2, 2, 1, 16, 1e-5, 10000.0, null, 40000, 512, false, 1, List.of(2), "float32");
        try (LlamaWeights w = TestModels.random(c, 7)) {
            for (int[] bs : new int[][] {{1, 48}, {2, 150}})
                for (Object[] m : MODES)
                    check(w, settings(c, false).withBatch(bs[0]).withSeqLen(bs[1]).withCheckpointing((CheckpointMode) m[0], (Integer) m[1]),
                            LoraConfig.defaults().withRank(8), "vocab 40000");
            MemoryEstimate e = MemoryPlanner.estimate(c, settings(c, false).withBatch(2).withSeqLen(150));
            assertEquals((long) io.lora4j.train.LoraTrainingModel.CE_CHUNK_TOKENS * MemoryPlanner.LOGITS_VOCAB_CHUNK * 4, e.peak(MemoryCategory.LOGITS), "one [CE_CHUNK_TOKENS, 32768] fp32 logits slice");
        }
        System.out.printf("planner vs tracker (vocab 40000): %d cases, worst relative error %.2e, worst absolute %d B%n", cases, worst, worstBytes);
    }

    /**
     * Qwen2's q/k/v biases (and their broadcast vector), Qwen3's per-head q/k norms (kept for the
     * backward), Gemma 3's four norms ((1 + w) copies, normed outputs), scaled embedding, rescaled q
     * (query_pre_attn_scalar 24 != head_dim 16) and second RoPE table.
     */
    @Test
    void otherFamiliesArePlannedToo() {
        for (String family : new String[] {"qwen2", "qwen3", "gemma3_text", "gemma2"}) {
            LlamaConfig base = new LlamaConfig(family, 64, 160, 3, 4, 2, 16, 1e-6, 1e6, null, 500, 512, false, 1, List.of(2), "float32");
            LlamaConfig c = family.startsWith("gemma")
                    ? new LlamaConfig(family, 64, 160, 3, 4, 2, 16, 1e-6, 1e6, null, 500, 512, true, 2, List.of(1), "float32",
                            family.equals("gemma2")
                                    // alternate sliding layers; the final cap doubles the head's logits buffer
                                    ? base.architecture().withSlidingWindow(512, 2).withAttention(24, 10000.0).withSoftcaps(1.0, 2.0)
                                    : base.architecture().withSlidingWindow(512, 3).withAttention(24, 10000.0))
                    : base;
            long before = MemoryTracker.GLOBAL.live(Device.CPU, MemoryCategory.WEIGHTS);
            try (LlamaWeights w = TestModels.random(c, 3)) {
                assertEquals(MemoryPlanner.baseWeightBytes(c, settings(c, false)), MemoryTracker.GLOBAL.live(Device.CPU, MemoryCategory.WEIGHTS) - before,
                        family + " dense fp32 base bytes");
                for (Object[] m : MODES)
                    check(w, settings(c, false).withBatch(2).withSeqLen(50).withCheckpointing((CheckpointMode) m[0], (Integer) m[1]),
                            LoraConfig.defaults().withRank(8), family);
            }
        }
        System.out.printf("planner vs tracker (qwen2, qwen3, gemma3_text, gemma2): %d cases, worst relative error %.2e, worst absolute %d B%n", cases, worst, worstBytes);
    }

    @Test
    void stories15MPredictionsMatchTheTracker() throws Exception {
        java.nio.file.Path bin = Assets.require("stories15M.bin");
        for (boolean nf4 : new boolean[] {false, true}) {
            try (LlamaWeights w = ModelLoader.load(bin, nf4 ? ModelLoader.Options.in4bit() : ModelLoader.Options.defaults())) {
                LlamaConfig c = w.config();
                // the real model costs ~0.1 s per micro-batch: every mode at the two extreme (batch, seq) corners
                for (int[] bs : new int[][] {{1, 64}, {2, 160}})
                    for (Object[] m : MODES)
                        check(w, settings(c, nf4).withBatch(bs[0]).withSeqLen(bs[1]).withCheckpointing((CheckpointMode) m[0], (Integer) m[1]),
                                LoraConfig.defaults().withRank(8), "stories15M " + (nf4 ? "nf4" : "fp32"));
            }
        }
        System.out.printf("planner vs tracker (stories15M): %d cases, worst relative error %.2e, worst absolute %d B%n", cases, worst, worstBytes);
    }

    /** Bytes of the seven projections in fp32, per model. */
    private static long projectionBytes(LlamaConfig c) {
        long n = 0;
        for (Projection p : Projection.values()) n += p.outFeatures(c) * p.inFeatures(c);
        return n * 4 * c.numHiddenLayers();
    }

    private static PlanSettings settings(LlamaConfig c, boolean nf4) {
        return PlanSettings.defaults().withDevice(Device.CPU).withLoadIn4bit(nf4).withRank(8);
    }

    private void check(LlamaWeights w, PlanSettings s, LoraConfig lc, String what) {
        LlamaConfig c = w.config();
        String label = what + " " + s.checkpointing() + (s.checkpointing() == CheckpointMode.CHUNKED ? "/" + s.checkpointEvery() : "")
                + " b" + s.batch() + " s" + s.seqLen();
        MemoryEstimate e = MemoryPlanner.estimate(c, s);
        MemoryTracker tr = MemoryTracker.GLOBAL;
        tr.resetPeaks();
        Map<MemoryCategory, Long> live0 = new EnumMap<>(MemoryCategory.class);
        for (MemoryCategory m : MemoryCategory.values()) live0.put(m, tr.live(Device.CPU, m));
        long total0 = tr.liveTotal(Device.CPU);
        try (LoraAdapter a = LoraAdapter.create(CPU, c, lc);
             LoraTrainingModel model = new LoraTrainingModel(CPU, w, a, s.weightDtype(), s.bf16());
             Trainer t = new Trainer(model, TrainConfig.defaults().withBatch(s.batch(), 2)
                     .withSchedule(1e-3, 0, LrSchedule.CONSTANT, 0.01, 1.0, 10), 10)) {
            // bf16 storage on the CPU: the model's own BF16 copies of the embedding, lm_head and dense projections
            long copies = tr.live(Device.CPU, MemoryCategory.WEIGHTS) - live0.get(MemoryCategory.WEIGHTS) - MemoryPlanner.normCopyBytes(c);
            long plannedCopies = s.storage() == DType.BF16
                    ? MemoryPlanner.baseWeightBytes(c, s.withWeightDtype(DType.F32)) - MemoryPlanner.baseWeightBytes(c, s) : 0;
            assertEquals(plannedCopies, copies, label + ": bf16 copies of the base (2 B per dense parameter)");
            model.setCheckpointing(s.checkpointing(), s.checkpointEvery());
            List<Batch> window = RandomWindows.of(2, s.batch(), s.seqLen(), c.vocabSize(), new Random(s.seqLen() * 31L + s.batch()));
            assertTrue(Double.isFinite(t.step(window).loss()));
            for (MemoryCategory m : COMPARED) {
                long measured = tr.peak(Device.CPU, m) - live0.get(m);
                compare(label + " " + m, e.peak(m), measured);
            }
            long measuredTotal = tr.peakTotal(Device.CPU) - total0;
            // the model's own weight copies ((1 + w) norms of Gemma) are made after total0: counted in the measurement
            compare(label + " total (without the base weights)", e.peakTotalWithoutWeights() + MemoryPlanner.normCopyBytes(c) + copies,
                    measuredTotal);
        }
    }

    private void compare(String what, long predicted, long measured) {
        double err = measured == 0 ? (predicted == 0 ? 0 : 1) : Math.abs(predicted - measured) / (double) measured;
        worst = Math.max(worst, err);
        worstBytes = Math.max(worstBytes, Math.abs(predicted - measured));
        cases++;
        assertTrue(err <= REL_TOL, what + ": predicted " + predicted + " B, measured " + measured + " B (" + String.format("%.1f", 100 * err) + " %)");
    }

    /** The seven projections of every layer in NF4 (blocksize 64, double quant), as ModelLoader's load_in_4bit. */
    private static LlamaWeights quantize(LlamaWeights w) {
        List<LayerWeights> layers = new ArrayList<>();
        for (LayerWeights l : w.layers()) {
            Map<Projection, ProjectionWeight> m = new EnumMap<>(Projection.class);
            for (Projection p : Projection.values())
                m.put(p, new ProjectionWeight.Quantized(Nf4.quantize(CPU, ((ProjectionWeight.Dense) l.projection(p)).tensor(), 64, true)));
            layers.add(new LayerWeights(l.inputLayernorm(), m, l.postAttentionLayernorm()));
        }
        return new LlamaWeights(w.config(), w.embedding(), layers, w.norm(), w.tied() ? null : w.lmHead(), w.format(), null, null);
    }
}
