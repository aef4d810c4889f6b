package io.lora4j.train;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.model.LlamaConfig;
import io.lora4j.plan.MemoryPlanner;
import io.lora4j.plan.PlanSettings;
import io.lora4j.quant.Nf4;
import io.lora4j.tensor.Device;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * checkpoint_every 0 with chunked checkpointing: a run takes the group size with the lowest peak
 * the memory planner predicts (searched here by brute force over every k), not round(√L), and an
 * explicit value or another mode is left as it is.
 */
class CheckpointEveryDefaultTest {
    private static final Path LLAMA_8B = Path.of("examples/configs/Llama-3.1-8B.json");

    private static RunConfig config(String checkpointing, Integer every, boolean in4bit) {
        Map<String, Object> v = new HashMap<>();
        v.put("model", "m.bin");
        v.put("dataset", "d.jsonl");
        v.put("use_gradient_checkpointing", checkpointing);
        v.put("per_device_train_batch_size", 2);
        v.put("max_seq_length", 2048);
        v.put("load_in_4bit", in4bit);
        if (every != null) v.put("checkpoint_every", every);
        return RunConfig.from(v);
    }

    /** The smallest k in [1, L] with the lowest predicted peak, by trying each. */
    private static int lowestPeakK(LlamaConfig c, RunConfig cfg, int seq, Device device) {
        int best = -1;
        long bestPeak = Long.MAX_VALUE;
        for (int k = 1; k <= c.numHiddenLayers(); k++) {
            long p = peak(c, cfg, seq, device, k);
            if (p < bestPeak) {
                bestPeak = p;
                best = k;
            }
        }
        return best;
    }

    private static long peak(LlamaConfig c, RunConfig cfg, int seq, Device device, int k) {
        PlanSettings s = new PlanSettings(cfg.lora().r(), cfg.lora().targetModules(), seq, cfg.train().perDeviceTrainBatchSize(),
                CheckpointMode.CHUNKED, k, cfg.loadIn4bit(), Nf4.DEFAULT_BLOCKSIZE, true, cfg.lora().loraDropout(), device);
        return MemoryPlanner.estimate(c, s).peakTotal();
    }

    @Test
    void chunkedWithoutAGroupSizeTakesTheLowestPeakOneAndItBeatsRoundSqrtL() throws Exception {
        LlamaConfig c = LlamaConfig.read(LLAMA_8B);
        int sqrt = CheckpointMode.defaultEvery(c.numHiddenLayers());
        for (boolean q : new boolean[] {false, true}) {
            for (Device d : new Device[] {Device.CUDA, Device.CPU}) {
                RunConfig cfg = config("chunked", null, q);
                int k = RunSetup.checkpointEvery(cfg, c, 2048, d);
                assertEquals(lowestPeakK(c, cfg, 2048, d), k, "4-bit " + q + ", " + d);
                assertNotEquals(sqrt, k, "the lowest peak of Llama-3.1-8B is not at round(sqrt(32)) = " + sqrt);
                assertTrue(peak(c, cfg, 2048, d, k) < peak(c, cfg, 2048, d, sqrt), "k " + k + " has a lower peak than " + sqrt);
                // rows shorter than max_seq_length: the planner sees the longest row
                assertEquals(lowestPeakK(c, cfg, 300, d), RunSetup.checkpointEvery(cfg, c, 300, d));
            }
        }
    }

    @Test
    void anExplicitGroupSizeOrAnotherModeIsKept() throws Exception {
        LlamaConfig c = LlamaConfig.read(LLAMA_8B);
        assertEquals(4, RunSetup.checkpointEvery(config("chunked", 4, false), c, 2048, Device.CUDA));
        for (String mode : new String[] {"true", "unsloth", "false"})
            assertEquals(0, RunSetup.checkpointEvery(config(mode, null, false), c, 2048, Device.CUDA), mode);
    }

    @Test
    void aChunkedRunSaysWhichGroupSizeItTook(@TempDir Path dir) throws Exception {
        Path yaml = TinyRun.write(dir, TinyRun.SETTINGS.replace("max_steps: 8", "max_steps: 2") + "use_gradient_checkpointing: chunked\n");
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        TrainingRun.Summary s;
        try (PrintStream log = new PrintStream(bytes, true, StandardCharsets.UTF_8)) {
            s = TrainingRun.run(RunConfig.load(yaml, Map.of()), dir.resolve("out"), false, log);
        }
        String text = bytes.toString(StandardCharsets.UTF_8);
        assertEquals(TrainingRun.Status.COMPLETED, s.status(), text);
        Matcher m = Pattern.compile("checkpointing: chunked, checkpoint_every (\\d+) ").matcher(text);
        assertTrue(m.find(), text);
        int k = Integer.parseInt(m.group(1));
        assertTrue(k >= 1 && k <= 2, "a group size of the 2-layer model, got " + k);
    }
}
