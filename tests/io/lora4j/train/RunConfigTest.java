package io.lora4j.train;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.Projection;
import io.lora4j.model.ProjectionWeight;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.io.FormatException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** YAML config parsing and validation, the simple dataset, and QLoRA's frozen base. */
class RunConfigTest {
    private static final Backend CPU = Backends.cpu();

    @Test
    void parsesYamlWithOverridesAndTheGuideDefaults(@TempDir Path dir) throws Exception {
        Path y = dir.resolve("run.yaml");
        Files.writeString(y, "model: m.bin\ndataset: d.jsonl\nr: 8\nlora_alpha: 16\nlearning_rate: 2e-4\n"
                + "target_modules: [q_proj, v_proj]\nuse_gradient_checkpointing: unsloth\nlr_scheduler_type: cosine\n");
        RunConfig c = RunConfig.load(y, Map.of("max_steps", "30", "use_rslora", "true", "warmup-ratio", "0.1"));
        assertEquals(8, c.lora().r());
        assertEquals(16 / Math.sqrt(8), c.lora().scaling(), 1e-12);
        assertEquals(EnumSet.of(Projection.Q, Projection.V), c.lora().targetModules());
        assertEquals(2e-4, c.train().learningRate());
        assertEquals(30, c.train().maxSteps());
        assertEquals(0.1, c.train().warmupRatio());
        assertEquals(CheckpointMode.UNSLOTH, c.train().checkpointing());
        assertEquals(LrSchedule.COSINE, c.train().lrScheduler());
        assertEquals(2, c.train().perDeviceTrainBatchSize());
        assertEquals(8, c.train().gradientAccumulationSteps());
        assertEquals(0.01, c.train().weightDecay());
        assertEquals(3407, c.train().seed());
        assertEquals(LoraConfig.Bias.NONE, c.lora().bias());
    }

    /** The guide's defaults from model + dataset alone; train_on_responses_only and eval_split take auto, or a value. */
    @Test
    void autoDefaults() throws Exception {
        RunConfig c = RunConfig.load(null, Map.of("model", "m.bin", "dataset", "d.jsonl"));
        assertEquals(0.05, c.train().warmupRatio());
        assertEquals(3, c.train().earlyStoppingPatience());
        assertEquals(null, c.data().trainOnResponsesOnly());
        assertTrue(c.data().evalSplitAuto());
        assertEquals(10, c.train().evalEvery(100));
        assertEquals(1, c.train().evalEvery(5));
        RunConfig d = RunConfig.load(null, Map.of("model", "m.bin", "dataset", "d.jsonl", "train_on_responses_only", "auto", "eval_split", "auto"));
        assertEquals(c, d);
        RunConfig e = RunConfig.load(null, Map.of("model", "m.bin", "dataset", "d.jsonl", "train_on_responses_only", "false", "eval_split", "0.2"));
        assertEquals(false, e.data().trainOnResponsesOnly());
        assertEquals(0.2, e.evalSplit());
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class,
                () -> RunConfig.load(null, Map.of("model", "m.bin", "dataset", "d.jsonl", "train_on_responses_only", "maybe", "eval_split", "lots")));
        assertTrue(bad.getMessage().contains("train_on_responses_only must be true, false or auto, got 'maybe'")
                && bad.getMessage().contains("eval_split must be a number or auto, got 'lots'"), bad.getMessage());
    }

    @Test
    void chunkedCheckpointingTakesCheckpointEvery(@TempDir Path dir) throws Exception {
        Path y = dir.resolve("run.yaml");
        Files.writeString(y, "model: m.bin\ndataset: d.jsonl\nuse_gradient_checkpointing: chunked\ncheckpoint_every: 3\n");
        RunConfig c = RunConfig.load(y, Map.of());
        assertEquals(CheckpointMode.CHUNKED, c.train().checkpointing());
        assertEquals(3, c.train().checkpointEvery());
        assertEquals(0, RunConfig.load(y, Map.of("checkpoint_every", "0")).train().checkpointEvery(), "0 = round(sqrt(L))");
        assertEquals(0, TrainConfig.defaults().checkpointEvery());
        assertEquals(3, c.train().withBatch(1, 16).checkpointEvery());
        assertEquals(0, c.train().withCheckpointing(CheckpointMode.TRUE).checkpointEvery());
        IllegalArgumentException neg = assertThrows(IllegalArgumentException.class, () -> RunConfig.load(y, Map.of("checkpoint_every", "-2")));
        assertTrue(neg.getMessage().contains("checkpoint_every must be >= 1"), neg.getMessage());
        IllegalArgumentException mode = assertThrows(IllegalArgumentException.class,
                () -> RunConfig.load(y, Map.of("use_gradient_checkpointing", "true")));
        assertTrue(mode.getMessage().contains("checkpoint_every applies only to use_gradient_checkpointing: chunked, not true"), mode.getMessage());
        IllegalArgumentException typ = assertThrows(IllegalArgumentException.class, () -> RunConfig.load(y, Map.of("checkpoint_every", "two")));
        assertTrue(typ.getMessage().contains("checkpoint_every must be an integer"), typ.getMessage());
        assertEquals(2, CheckpointMode.defaultEvery(6)); // round(2.449)
        assertEquals(6, CheckpointMode.defaultEvery(32)); // round(5.657)
        assertEquals(9, CheckpointMode.defaultEvery(80)); // round(8.944)
        assertEquals(1, CheckpointMode.defaultEvery(1));
    }

    @Test
    void listsEveryProblemWithSuggestions(@TempDir Path dir) throws Exception {
        Path y = dir.resolve("run.yaml");
        Files.writeString(y, "model: m.bin\ndataset: d.jsonl\nlearning_rat: 1e-4\nr: sixteen\nlora_dropout: 1.5\n"
                + "target_modules: [q_proj, c_attn]\nper_device_train_batch_size: 0\nuse_gradient_checkpointing: maybe\npacking: sometimes\n");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> RunConfig.load(y, Map.of("seed", "x")));
        String m = e.getMessage();
        for (String want : new String[] {"unknown key 'learning_rat' (did you mean 'learning_rate'?)", "r must be an integer", "'c_attn'",
                "use_gradient_checkpointing must be false, true, unsloth or chunked", "packing", "seed must be an integer"})
            assertTrue(m.contains(want), "missing '" + want + "' in: " + m);
        assertFalse(m.contains("\n"));
    }

    @Test
    void simpleDatasetReadsTextAndTokenizedRows(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("d.jsonl");
        Files.writeString(f, "{\"input_ids\": [1, 5, 6, 7], \"labels\": [-100, -100, 6, 7]}\n\n{\"input_ids\": [1, 8, 9]}\n"
                + "{\"input_ids\": [1, 8], \"labels\": [-100, -100]}\n");
        SimpleDataset.Loaded d = SimpleDataset.read(f, null, 40, 3);
        assertEquals(2, d.rows().size());
        assertEquals(1, d.skipped());
        assertEquals(1, d.truncated());
        assertArrayEquals(new int[] {-100, -100, 6}, d.rows().get(0).labels());
        List<List<Batch>> w1 = SimpleDataset.epochWindows(d.rows(), 1, 1, 3407, 0), w2 = SimpleDataset.epochWindows(d.rows(), 1, 1, 3407, 0);
        assertEquals(2, w1.size());
        assertArrayEquals(w1.get(0).get(0).inputIds()[0], w2.get(0).get(0).inputIds()[0], "seeded order");
        Files.writeString(f, "{\"input_ids\": [1, 99]}\n");
        FormatException e = assertThrows(FormatException.class, () -> SimpleDataset.read(f, null, 40, 16));
        assertTrue(e.getMessage().contains("line 1") && e.getMessage().contains("99"), e.getMessage());
    }

    private static String hash(LlamaWeights w) throws Exception {
        MessageDigest md = MessageDigest.getInstance("SHA-256");
        for (var l : w.layers())
            for (ProjectionWeight p : l.projections().values()) {
                Nf4Weight q = ((ProjectionWeight.Quantized) p).weight();
                md.update(q.packed().toBytes());
                md.update(q.absmax().toBytes());
            }
        return java.util.HexFormat.of().formatHex(md.digest());
    }

    @Test
    void qloraTrainingLeavesTheNf4BaseBytesUnchanged() throws Exception {
        try (LlamaWeights dense = TrainFixtures.tinyModel(41)) {
            LlamaWeights q = TrainFixtures.quantized(CPU, dense);
            try (LoraAdapter a = LoraAdapter.create(CPU, q.config(), TrainFixtures.lora(4, 8));
                 LoraTrainingModel m = new LoraTrainingModel(CPU, q, a);
                 Trainer t = new Trainer(m, TrainConfig.defaults().withSchedule(1e-2, 0, LrSchedule.CONSTANT, 0.01, 1.0, 3), 3)) {
                String before = hash(q);
                float[] p0 = a.toFloats();
                List<Example> rows = TrainFixtures.rows(8, 40, 5);
                double first = 0, last = 0;
                for (int s = 0; s < 3; s++) {
                    Trainer.StepResult r = t.step(TrainFixtures.windows(rows, 4, 2).get(0));
                    if (s == 0) first = r.loss();
                    last = r.loss();
                }
                assertEquals(before, hash(q), "the NF4 base must stay frozen");
                assertFalse(java.util.Arrays.equals(p0, a.toFloats()), "the adapter must train");
                assertTrue(last < first, "loss " + first + " -> " + last);
            } finally {
                for (var l : q.layers()) for (var p : l.projections().values()) p.close();
            }
        }
    }
}
