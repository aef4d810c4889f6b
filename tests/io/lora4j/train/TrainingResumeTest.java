package io.lora4j.train;

import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.io.FormatException;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.model.LlamaConfig;
import io.lora4j.ops.Backends;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Full checkpoints, exact resume, skipped non-finite steps and the output-directory lock, on
 * {@link TinyRun}'s model (CPU backend, milliseconds per step).
 */
class TrainingResumeTest {
    @TempDir Path dir;

    private static final class Log {
        final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        final PrintStream stream = new PrintStream(bytes, true, StandardCharsets.UTF_8);

        String text() {
            return bytes.toString(StandardCharsets.UTF_8);
        }
    }

    private RunConfig config(String extra) throws Exception {
        Path yaml = TinyRun.write(dir.resolve("assets"), TinyRun.SETTINGS + "device: cpu\n" + extra);
        return RunConfig.load(yaml, Map.of());
    }

    /** Stops once {@code step} steps are done (polled after every step). */
    private static TrainingRun.Options stopAfter(long step, AtomicLong seen) {
        TrainingListener l = new TrainingListener() {
            @Override public void onStep(long s, long total, double loss, double lr, double g, double tps) { seen.set(s); }
        };
        return TrainingRun.Options.defaults().withListener(l).withStopRequested(() -> seen.get() >= step);
    }

    private static byte[] adapterBytes(Path out) throws Exception {
        return Files.readAllBytes(out.resolve(LoraAdapter.WEIGHTS_FILE));
    }

    /** step -> the metrics row without its timing figure. */
    private static List<String> rows(Path out) throws Exception {
        List<String> rows = new ArrayList<>();
        for (String line : Files.readAllLines(out.resolve(TrainingRun.METRICS))) {
            JsonObject o = JsonParser.parseString(line).getAsJsonObject();
            o.remove("tokens_per_second");
            if (!o.has("step")) continue; // the final summary (runtime, peak memory)
            rows.add(o.toString());
        }
        return rows;
    }

    @Test
    void aRunStoppedAndResumedEndsWithTheSameAdapterBytesAsAnUninterruptedOne() throws Exception {
        RunConfig cfg = config("save_total_limit: 2\n");
        Path ref = dir.resolve("ref");
        Log log = new Log();
        TrainingRun.Summary full = TrainingRun.run(cfg, ref, false, log.stream);
        assertEquals(TrainingRun.Status.COMPLETED, full.status());
        assertEquals(8, full.steps());
        assertEquals(ref.toAbsolutePath().resolve("checkpoint-8"), full.checkpoint(), "a final checkpoint is written");
        assertTrue(Files.isDirectory(ref.resolve("checkpoint-6")) && !Files.exists(ref.resolve("checkpoint-4")), "save_total_limit 2 keeps 6 and 8");
        assertFalse(Files.exists(ref.resolve(RunLock.FILE)), "the lock file is removed at the end");
        byte[] want = adapterBytes(ref);
        assertArrayEquals(want, Files.readAllBytes(ref.resolve("checkpoint-8").resolve(LoraAdapter.WEIGHTS_FILE)));

        // stops at an epoch boundary (3 steps per epoch), inside an epoch, and right after a save_steps checkpoint
        for (long k : new long[] {3, 5, 6}) {
            Path out = dir.resolve("stop" + k);
            AtomicLong seen = new AtomicLong();
            Log l1 = new Log();
            TrainingRun.Summary s = TrainingRun.run(cfg, out, l1.stream, stopAfter(k, seen));
            assertEquals(TrainingRun.Status.INTERRUPTED, s.status(), l1.text());
            assertEquals(k, s.steps());
            assertEquals(out.toAbsolutePath().resolve("checkpoint-" + k), s.checkpoint());
            assertFalse(Files.exists(out.resolve(LoraAdapter.WEIGHTS_FILE)), "no final adapter for an interrupted run");
            TrainingCheckpoint.verify(s.checkpoint());

            Log l2 = new Log();
            TrainingRun.Summary r = TrainingRun.run(cfg, null, l2.stream, TrainingRun.Options.defaults().withResume(out));
            assertEquals(TrainingRun.Status.COMPLETED, r.status(), l2.text());
            assertTrue(l2.text().contains("resuming from " + s.checkpoint() + ": step " + k + " of 8"), l2.text());
            assertArrayEquals(want, adapterBytes(out), "adapter after stopping at step " + k + " and resuming");
            assertEquals(full.losses(), r.losses(), "the loss history of the whole run");
            assertEquals(full.finalEval(), r.finalEval(), 0.0);
            assertEquals(rows(ref), rows(out), "metrics.jsonl keeps the rows up to the checkpoint and appends the rest once");
        }
    }

    @Test
    void aCheckpointThatFailsVerificationIsSkippedAndNamed() throws Exception {
        RunConfig cfg = config("");
        Path ref = dir.resolve("ref");
        TrainingRun.run(cfg, ref, false, new Log().stream);
        Path out = dir.resolve("out");
        TrainingRun.Summary s = TrainingRun.run(cfg, out, new Log().stream, stopAfter(5, new AtomicLong()));
        assertEquals(5, s.steps());
        // damage the newest checkpoint's optimizer state (one byte, size unchanged)
        Path opt = out.resolve("checkpoint-5").resolve(TrainingCheckpoint.OPTIMIZER);
        byte[] b = Files.readAllBytes(opt);
        b[b.length - 3] ^= 0x10;
        Files.write(opt, b);
        // and leave a torn temporary checkpoint, as a process killed inside a write does
        Files.createDirectories(out.resolve(".checkpoint-6.tmp-123"));
        Files.writeString(out.resolve(".checkpoint-6.tmp-123").resolve("adapter_config.json"), "{");

        FormatException direct = assertThrows(FormatException.class,
                () -> TrainingRun.run(cfg, null, new Log().stream, TrainingRun.Options.defaults().withResume(out.resolve("checkpoint-5"))));
        assertTrue(direct.getMessage().contains("SHA-256 differs"), direct.getMessage());

        Log log = new Log();
        TrainingRun.Summary r = TrainingRun.run(cfg, out, log.stream, TrainingRun.Options.defaults().withResume(out));
        assertTrue(log.text().contains("warning: skipped checkpoint-5 (") && log.text().contains("optimizer.safetensors: SHA-256 differs"), log.text());
        assertTrue(log.text().contains("checkpoint-4: step 4 of 8"), log.text());
        assertEquals(TrainingRun.Status.COMPLETED, r.status());
        assertArrayEquals(adapterBytes(ref), adapterBytes(out));
        assertFalse(Files.exists(out.resolve(".checkpoint-6.tmp-123")), "leftover temporary checkpoints are removed");
    }

    @Test
    void resumingWithSettingsThatTrainDifferentlyIsRefusedNamingThem() throws Exception {
        RunConfig cfg = config("");
        Path out = dir.resolve("out");
        TrainingRun.run(cfg, out, new Log().stream, stopAfter(2, new AtomicLong()));
        RunConfig other = RunConfig.load(dir.resolve("assets").resolve("run.yaml"), Map.of("learning_rate", "2e-2", "logging_steps", "2"));
        FormatException e = assertThrows(FormatException.class,
                () -> TrainingRun.run(other, null, new Log().stream, TrainingRun.Options.defaults().withResume(out)));
        assertTrue(e.getMessage().contains("learning_rate 0.01 -> 0.02") && !e.getMessage().contains("logging_steps"), e.getMessage());
        assertFalse(Files.exists(out.resolve(RunLock.FILE)), "the lock is released on failure");
        // an explicit bf16 (mixed precision) other than the checkpoint's is refused, naming the key
        RunConfig mixed = RunConfig.load(dir.resolve("assets").resolve("run.yaml"), Map.of("bf16", "true"));
        e = assertThrows(FormatException.class, () -> TrainingRun.run(mixed, null, new Log().stream, TrainingRun.Options.defaults().withResume(out)));
        assertTrue(e.getMessage().contains("bf16 (absent) -> true"), e.getMessage());
        // logging_steps only changes what is logged: accepted
        RunConfig logOnly = RunConfig.load(dir.resolve("assets").resolve("run.yaml"), Map.of("logging_steps", "2"));
        assertEquals(TrainingRun.Status.COMPLETED, TrainingRun.run(logOnly, null, new Log().stream, TrainingRun.Options.defaults().withResume(out)).status());
    }

    @Test
    void nonFiniteStepsAreSkippedAndTooManyStopTheRunWithTheLastGoodState() throws Exception {
        config("");
        RunConfig huge = RunConfig.load(dir.resolve("assets").resolve("run.yaml"), Map.of("learning_rate", "1e6", "max_steps", "40",
                "save_steps", "0", "lr_scheduler_type", "constant"));
        Path out = dir.resolve("nan");
        Log log = new Log();
        TrainingRun.Summary s = TrainingRun.run(huge, out, log.stream, TrainingRun.Options.defaults().withMaxBadSteps(3));
        System.out.println(log.text());
        assertEquals(TrainingRun.Status.DIVERGED, s.status(), log.text());
        assertTrue(s.message().startsWith("stopped: 3 consecutive steps") && s.message().contains("likely cause: learning_rate 1000000.0 is too high")
                && s.message().contains("training rows "), s.message());
        assertFalse(s.message().contains("\n"), "one line");
        long bad = s.losses().stream().filter(x -> x.isNaN()).count();
        assertEquals(3, bad, s.losses().toString());
        long lastGood = s.steps() - 3;
        assertEquals(out.toAbsolutePath().resolve("checkpoint-" + lastGood), s.checkpoint());
        assertFalse(Files.exists(out.resolve(LoraAdapter.WEIGHTS_FILE)), "no final adapter for a diverged run");
        LlamaConfig mc = io.lora4j.model.ModelLoader.load(huge.model(), io.lora4j.model.ModelLoader.Options.defaults()).config();
        try (LoraAdapter a = LoraAdapter.load(s.checkpoint(), Backends.cpu(), mc)) {
            for (float x : a.toFloats()) assertTrue(Float.isFinite(x), "the checkpoint holds the last good, finite state");
        }
        int skippedRows = 0;
        for (String line : Files.readAllLines(out.resolve(TrainingRun.METRICS))) {
            JsonObject o = JsonParser.parseString(line).getAsJsonObject();
            if (o.has("skipped")) {
                skippedRows++;
                assertTrue(o.getAsJsonArray("row_ids").size() > 0 && o.getAsJsonArray("source_lines").size() > 0, o.toString());
            }
        }
        assertEquals(3, skippedRows);
        assertTrue(log.text().contains("warning: step " + (lastGood + 1) + "/40 skipped"), log.text());
    }

    @Test
    void aListenerSeesTheRunAndCanTakeOverTheStepLines() throws Exception {
        RunConfig cfg = config("");
        List<String> events = new ArrayList<>();
        TrainingListener l = new TrainingListener() {
            @Override public void onStart(long start, long total) { events.add("start " + start + "/" + total); }
            @Override public void onStep(long s, long total, double loss, double lr, double g, double tps) { events.add("step " + s); }
            @Override public void onEval(long s, double e) { events.add("eval " + s); }
            @Override public void onEnd(long steps, Path out) { events.add("end " + steps); }
            @Override public boolean drawsProgress() { return true; }
        };
        Log log = new Log();
        TrainingRun.run(cfg, dir.resolve("out"), false, log.stream, l);
        assertEquals(List.of("start 0/8", "eval 0", "step 1", "step 2", "step 3", "step 4", "eval 4", "step 5", "step 6", "step 7", "step 8",
                "eval 8", "end 8"), events);
        assertFalse(log.text().contains("step 1/8"), log.text());
        assertEquals(10, Files.readAllLines(dir.resolve("out").resolve(TrainingRun.METRICS)).size(), "metrics are still written");
    }

    @Test
    void anOutputDirectoryInUseIsRefused() throws Exception {
        RunConfig cfg = config("");
        Path out = dir.resolve("busy");
        Files.createDirectories(out);
        try (RunLock lock = RunLock.acquire(out)) {
            FormatException e = assertThrows(FormatException.class, () -> TrainingRun.run(cfg, out, true, new Log().stream));
            assertTrue(e.getMessage().contains("another training run of this process"), e.getMessage());
        }
        assertFalse(Files.exists(out.resolve(RunLock.FILE)));
        // a lock file left behind by a killed process does not block
        Files.writeString(out.resolve(RunLock.FILE), "pid 999999, started 2026-01-01T00:00:00Z, token x\n");
        assertEquals(TrainingRun.Status.COMPLETED, TrainingRun.run(cfg, out, false, new Log().stream).status());
    }

    @Test
    void earlyStoppingAndLoggingAccumulatorsSurviveAResume() throws Exception {
        // evals at 2, 4, 6, 8; an improvement must exceed 10 nats, so the eval at step 4 ends the run, but only
        // if the best eval of step 2 came back with the checkpoint; logging every 3 steps accumulates across it
        RunConfig cfg = config("early_stopping_patience: 1\nearly_stopping_threshold: 10\neval_steps: 2\nlogging_steps: 3\n");
        Path ref = dir.resolve("ref");
        TrainingRun.Summary full = TrainingRun.run(cfg, ref, false, new Log().stream);
        assertEquals(TrainingRun.Status.EARLY_STOPPED, full.status());
        assertEquals(4, full.steps());
        Path out = dir.resolve("out");
        assertEquals(TrainingRun.Status.INTERRUPTED, TrainingRun.run(cfg, out, new Log().stream, stopAfter(3, new AtomicLong())).status());
        TrainingRun.Summary r = TrainingRun.run(cfg, null, new Log().stream, TrainingRun.Options.defaults().withResume(out));
        assertEquals(TrainingRun.Status.EARLY_STOPPED, r.status());
        assertEquals(4, r.steps());
        assertArrayEquals(adapterBytes(ref), adapterBytes(out));
        assertEquals(rows(ref), rows(out));
        assertTrue(Files.isDirectory(out.resolve("checkpoint-4")), "the early-stopped state is checkpointed");
        // resuming a finished run only writes its outputs again
        Files.delete(out.resolve(LoraAdapter.WEIGHTS_FILE));
        TrainingRun.Summary again = TrainingRun.run(cfg, null, new Log().stream, TrainingRun.Options.defaults().withResume(out));
        assertEquals(4, again.steps());
        assertArrayEquals(adapterBytes(ref), adapterBytes(out));
        assertEquals(rows(ref), rows(out));
    }

    @Test
    void batchesNameTheTrainingRowsTheyHold() throws Exception {
        for (String extra : new String[] {"", "packing: true\n", "group_by_length: true\n"}) {
            RunConfig cfg = config(extra);
            io.lora4j.tokenizer.Tokenizer tok = io.lora4j.tokenizer.Tokenizers.load(cfg.model().resolveSibling("tokenizer.bin"));
            io.lora4j.data.DataPipeline p = io.lora4j.data.DataPipeline.build(cfg.data(), tok, null);
            for (int epoch = 0; epoch < 2; epoch++) {
                List<Integer> seen = new ArrayList<>();
                for (io.lora4j.data.Batch b : p.batches(epoch, 2)) {
                    assertEquals(b.rows(), b.rowIds().length);
                    for (int i = 0; i < b.rows(); i++) {
                        int[] ids = b.rowIds()[i];
                        // the batch row starts with the first row it names (packed rows follow each other)
                        int[] first = p.train().get(ids[0]).inputIds();
                        assertArrayEquals(first, java.util.Arrays.copyOf(b.inputIds()[i], first.length), extra);
                        for (int id : ids) seen.add(id);
                    }
                }
                Collections.sort(seen);
                List<Integer> all = new ArrayList<>();
                for (int i = 0; i < p.train().size(); i++) all.add(i);
                assertEquals(all, seen, "every training row once per epoch (" + extra.strip() + ")");
            }
        }
    }
}
