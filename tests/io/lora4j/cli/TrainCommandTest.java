package io.lora4j.cli;

import static io.lora4j.cli.CliRun.run;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.cli.CliRun.Result;
import io.lora4j.model.Assets;
import io.lora4j.train.TinyRun;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * lora4j train / verify end to end on the real stories15M, their usage errors, and the crash
 * safety of train in child JVMs (Ctrl-C, SIGKILL, the output-directory lock) on a tiny model.
 */
class TrainCommandTest {

    private static final String[] STORIES = {
        "Once upon a time, there was a little dog named Max. Max loved to run in the park with his red ball.",
        "Lily had a big blue kite. One windy day, she flew it high in the sky and laughed with her mom.",
        "Tom found a shiny rock near the river. He put it in his pocket and showed it to his sister Sue.",
        "The cat sat on the warm mat. It purred and closed its eyes while the sun came in the window.",
        "Ben and Mia built a tall tower of blocks. When it fell down, they laughed and built it again.",
        "A little bird could not fly. Her friend the frog helped her practice every day until she could fly.",
        "Sara baked a cake with her dad. They put red berries on top and shared it with their friends.",
        "The old tree in the garden was very tall. Birds lived in it and sang happy songs every morning."};

    private static Path data(Path dir) throws Exception {
        Path f = dir.resolve("stories.jsonl");
        List<String> lines = new ArrayList<>();
        for (String s : STORIES) lines.add("{\"text\": \"" + s + "\"}");
        Files.write(f, lines);
        return f;
    }

    @Test
    void trainsStories15MWithLoraAndVerifiesTheAdapter(@TempDir Path dir) throws Exception {
        Path model = Assets.require("stories15M.bin");
        Path yaml = dir.resolve("run.yaml");
        Files.writeString(yaml, "model: " + model + "\ndataset: " + data(dir) + "\nr: 16\nlora_alpha: 32\nmax_steps: 8\n"
                + "per_device_train_batch_size: 2\ngradient_accumulation_steps: 2\nlearning_rate: 3e-3\nwarmup_steps: 1\nmax_seq_length: 64\n");
        Path out = dir.resolve("out");
        Result r = run("train", "--config", yaml.toString(), "--out", out.toString(), "--eval_dataset", data(dir).toString(), "--eval_steps", "4");
        System.out.println(r.err());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("step 8/8"), r.err());
        assertTrue(Files.isRegularFile(out.resolve("adapter_config.json")));
        List<String> metrics = Files.readAllLines(out.resolve("metrics.jsonl"));
        // step 0 (the base model's eval loss), steps 1..8, the final summary
        assertEquals(10, metrics.size(), String.join("\n", metrics));
        JsonObject base = JsonParser.parseString(metrics.get(0)).getAsJsonObject();
        assertEquals(0, base.get("step").getAsInt());
        assertTrue(base.has("eval_loss") && !base.has("loss"), base.toString());
        JsonObject first = JsonParser.parseString(metrics.get(1)).getAsJsonObject();
        JsonObject last = JsonParser.parseString(metrics.get(8)).getAsJsonObject();
        for (String k : new String[] {"step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second"}) assertTrue(first.has(k), k);
        assertTrue(last.has("eval_loss"));
        assertTrue(last.get("loss").getAsDouble() < first.get("loss").getAsDouble(), metrics.toString());
        assertTrue(last.get("eval_loss").getAsDouble() < base.get("eval_loss").getAsDouble(), metrics.toString());
        JsonObject fin = JsonParser.parseString(metrics.get(9)).getAsJsonObject();
        assertTrue(fin.getAsJsonObject("peak_memory_bytes").get("lora").getAsLong() > 0);
        assertTrue(fin.getAsJsonObject("peak_memory_bytes").get("optimizer").getAsLong() > 0);
        // on the CPU (no peak_host_memory_bytes apart): the host caching allocator holds every live tensor's block
        // (rounded up to its size class) and free ones besides
        if (!fin.has("peak_host_memory_bytes"))
            assertTrue(fin.get("peak_host_reserved_bytes").getAsLong() >= fin.getAsJsonObject("peak_memory_bytes").get("total").getAsLong(),
                    fin.toString());
        // the guide's advice (learning rate 3e-3 is above 2e-4) and the loss charts
        assertTrue(r.err().contains("lora4j: warning:") && r.err().contains("0.003"), r.err());
        byte[] png = Files.readAllBytes(out.resolve("loss.png"));
        assertTrue(png.length > 1000 && png[1] == 'P' && png[2] == 'N' && png[3] == 'G', "loss.png is a PNG");
        String svg = Files.readString(out.resolve("loss.svg"));
        assertTrue(svg.contains("<svg") && svg.contains("train loss") && svg.contains("eval loss"), "loss.svg has both curves");

        // verify: an untrained adapter (B = 0) vs the trained one
        Path init = dir.resolve("init");
        Result r0 = run("train", "--config", yaml.toString(), "--out", init.toString(), "--max_steps", "1", "--learning_rate", "1e-30");
        assertEquals(0, r0.code(), r0.err());
        Result v = run("verify", out.toString(), "--json");
        assertEquals(0, v.code(), v.err());
        assertFalse(JsonParser.parseString(v.out()).getAsJsonObject().get("untrained").getAsBoolean());
        Result v2 = run("verify", out.toString(), init.toString());
        assertEquals(0, v2.code(), v2.err());
        assertTrue(v2.out().contains("changed: 42 of 42 lora_A, 42 of 42 lora_B"), v2.out());
        assertEquals(1, run("train", "--config", yaml.toString(), "--out", out.toString()).code(), "non-empty --out without --overwrite");
    }

    @Test
    void qloraOnStories15M(@TempDir Path dir) throws Exception {
        Path model = Assets.require("stories15M.bin");
        Path out = dir.resolve("q");
        Result r = run("train", "--model", model.toString(), "--dataset", data(dir).toString(), "--load_in_4bit", "true", "--max_steps", "3",
                "--gradient_accumulation_steps", "1", "--max_seq_length", "48", "--use_gradient_checkpointing", "chunked", "--checkpoint_every", "4",
                "--out", out.toString());
        System.out.println(r.err());
        assertEquals(0, r.code(), r.err());
        assertTrue(Files.isRegularFile(out.resolve("adapter_model.safetensors")));
    }

    @Test
    void badConfigIsAUsageErrorListingEveryProblem(@TempDir Path dir) throws Exception {
        Path yaml = dir.resolve("bad.yaml");
        Files.writeString(yaml, "model: x.bin\nlearning_rte: 1\nr: -1\n");
        Result r = run("train", "--config", yaml.toString(), "--out", dir.resolve("o").toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("did you mean 'learning_rate'") && r.err().contains("r must be > 0") && r.err().contains("dataset is required"), r.err());
    }

    // ---- crash safety, in child JVMs running Main ----

    /** Generous bound for one child run on a loaded 2-core CI machine; a run takes a few seconds. */
    private static final long CHILD_TIMEOUT_S = 120;
    /** The checkpoint-write delay of the children (ms after each file): opens a window to kill the process inside a write. */
    private static final long WRITE_DELAY_MS = 500;

    /** A `lora4j` process (this test classpath's Main in a new JVM), its merged output collected line by line. */
    private static final class Child implements AutoCloseable {
        final Process process;
        final List<String> lines = Collections.synchronizedList(new ArrayList<>());

        Child(long writeDelayMs, String... args) throws IOException {
            List<String> cmd = new ArrayList<>();
            // A parent that ignores SIGINT (a background shell job) passes that on, and the JVM then never
            // installs its handler: give the child the default disposition back.
            if (ENV_RESETS_SIGNALS) cmd.addAll(List.of("env", "--default-signal=INT"));
            cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
            cmd.addAll(List.of("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx512m", "-cp", System.getProperty("java.class.path"),
                    "-Dlora4j.test.checkpointWriteDelayMs=" + writeDelayMs, "io.lora4j.cli.Main"));
            cmd.addAll(List.of(args));
            process = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            Thread t = new Thread(() -> {
                try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                    for (String l; (l = r.readLine()) != null; ) lines.add(l);
                } catch (IOException e) {
                    lines.add("(reading the child's output failed: " + e + ")");
                }
            });
            t.setDaemon(true);
            t.start();
        }

        String output() {
            synchronized (lines) {
                return String.join("\n", lines);
            }
        }

        /** Waits until a line contains {@code fragment}; returns that line. */
        String await(String fragment) throws InterruptedException {
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(CHILD_TIMEOUT_S);
            while (System.nanoTime() < end) {
                synchronized (lines) {
                    for (String l : lines) if (l.contains(fragment)) return l;
                }
                if (!process.isAlive() && !output().contains(fragment)) {
                    Thread.sleep(100); // let the reader drain
                    synchronized (lines) {
                        for (String l : lines) if (l.contains(fragment)) return l;
                    }
                    fail("the child ended (exit " + process.exitValue() + ") without printing '" + fragment + "':\n" + output());
                }
                Thread.sleep(10);
            }
            fail("no '" + fragment + "' within " + CHILD_TIMEOUT_S + " s:\n" + output());
            return null;
        }

        int exit() throws InterruptedException {
            assertTrue(process.waitFor(CHILD_TIMEOUT_S, TimeUnit.SECONDS), "the child did not end:\n" + output());
            return process.exitValue();
        }

        void kill() throws InterruptedException {
            process.destroyForcibly(); // SIGKILL
            process.waitFor(CHILD_TIMEOUT_S, TimeUnit.SECONDS);
        }

        @Override
        public void close() {
            process.destroyForcibly();
        }
    }

    private static final boolean ENV_RESETS_SIGNALS = envResetsSignals();

    private static boolean envResetsSignals() {
        try {
            Process p = new ProcessBuilder("env", "--default-signal=INT", "true").redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException | InterruptedException e) {
            return false;
        }
    }

    /** Whether this process ignores SIGINT (bit 2 of /proc/self/status SigIgn), which a child would inherit. */
    private static boolean sigintIgnoredHere() throws IOException {
        Path status = Path.of("/proc/self/status");
        if (!Files.isReadable(status)) return false;
        for (String l : Files.readAllLines(status))
            if (l.startsWith("SigIgn:")) return (Long.parseLong(l.substring(7).trim(), 16) & (1L << 1)) != 0;
        return false;
    }

    private static byte[] adapter(Path out) throws IOException {
        return Files.readAllBytes(out.resolve("adapter_model.safetensors"));
    }

    private static List<String> leftovers(Path out) throws IOException {
        try (Stream<Path> s = Files.list(out)) {
            return s.map(p -> p.getFileName().toString()).filter(n -> n.startsWith(".checkpoint-") || n.equals(".lock")).toList();
        }
    }

    /** The uninterrupted run's adapter bytes, trained in this JVM. */
    private static byte[] reference(Path yaml, Path dir) throws IOException {
        Path ref = dir.resolve("ref");
        Result r = run("train", "--config", yaml.toString(), "--out", ref.toString());
        assertEquals(0, r.code(), r.err());
        return adapter(ref);
    }

    @Test
    void ctrlCStopsAfterTheStepWithACheckpointAndResumeFinishesWithTheSameAdapter(@TempDir Path dir) throws Exception {
        assumeTrue(ENV_RESETS_SIGNALS || !sigintIgnoredHere(), "SIGINT is ignored by this process and env --default-signal is missing");
        Path yaml = TinyRun.write(dir.resolve("assets"), TinyRun.SETTINGS + "device: cpu\n");
        byte[] want = reference(yaml, dir);
        Path out = dir.resolve("out");
        int stoppedAt;
        try (Child c = new Child(WRITE_DELAY_MS / 2, "train", "--config", yaml.toString(), "--out", out.toString())) {
            c.await("step 3/8");
            new ProcessBuilder("kill", "-INT", Long.toString(c.process.pid())).start().waitFor();
            assertEquals(TrainCommand.INTERRUPTED, c.exit(), c.output());
            System.out.println(c.output());
            Matcher m = Pattern.compile("interrupted at step (\\d+) of 8: checkpoint written to (\\S+)").matcher(c.output());
            assertTrue(m.find(), c.output());
            stoppedAt = Integer.parseInt(m.group(1));
            assertTrue(stoppedAt >= 3 && stoppedAt < 8, c.output());
            assertEquals(out.toAbsolutePath().resolve("checkpoint-" + stoppedAt).toString(), m.group(2));
            assertTrue(c.output().contains("resume with: lora4j train --config " + yaml + " --resume " + out.toAbsolutePath()), c.output());
        }
        assertTrue(Files.isRegularFile(out.resolve("checkpoint-" + stoppedAt).resolve("manifest.json")));
        assertFalse(Files.exists(out.resolve("adapter_model.safetensors")), "an interrupted run has no final adapter yet");
        assertEquals(List.of(), leftovers(out));

        Result r = run("train", "--config", yaml.toString(), "--resume", out.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("checkpoint-" + stoppedAt + ": step " + stoppedAt + " of 8"), r.err());
        assertArrayEquals(want, adapter(out));
    }

    @Test
    void sigkillAnywhereLosesAtMostTheStepsSinceTheLastCheckpointAndNeverUsesATornOne(@TempDir Path dir) throws Exception {
        Path yaml = TinyRun.write(dir.resolve("assets"), TinyRun.SETTINGS + "device: cpu\n");
        byte[] want = reference(yaml, dir);
        Path out = dir.resolve("out");
        // 1: killed inside the write of checkpoint-6 (after its adapter and optimizer files, before its state and manifest)
        try (Child c = new Child(WRITE_DELAY_MS, "train", "--config", yaml.toString(), "--out", out.toString())) {
            c.await("step 6/8");
            Thread.sleep(WRITE_DELAY_MS * 3 / 2);
            c.kill();
        }
        assertFalse(Files.exists(out.resolve("checkpoint-6")), "a checkpoint appears only complete");
        List<String> left = leftovers(out);
        assertTrue(left.contains(".lock") && left.stream().anyMatch(n -> n.startsWith(".checkpoint-6.tmp-")), left.toString());
        assertTrue(Files.isRegularFile(out.resolve("checkpoint-4").resolve("manifest.json")));

        // 2: resumed from checkpoint-4 despite the killed run's lock file; a second run on the directory is refused meanwhile;
        //    then killed between checkpoints
        try (Child c = new Child(WRITE_DELAY_MS, "train", "--config", yaml.toString(), "--resume", out.toString())) {
            c.await("resuming from " + out.toAbsolutePath().resolve("checkpoint-4") + ": step 4 of 8");
            Result busy = run("train", "--config", yaml.toString(), "--resume", out.toString());
            assertEquals(1, busy.code(), busy.err());
            assertTrue(busy.err().contains("another lora4j train is writing into this directory (pid " + c.process.pid() + ", started "), busy.err());
            assertEquals(1, busy.err().strip().lines().count(), busy.err());
            c.await("step 5/8");
            c.kill();
            System.out.println(c.output());
        }

        // 3: the last resume finishes with the uninterrupted run's bytes and cleans up
        Result r = run("train", "--config", yaml.toString(), "--resume", out.toString());
        System.out.println(r.err());
        assertEquals(0, r.code(), r.err());
        assertArrayEquals(want, adapter(out));
        assertEquals(List.of(), leftovers(out));
        List<String> steps = new ArrayList<>();
        for (String line : Files.readAllLines(out.resolve("metrics.jsonl"))) {
            JsonObject o = JsonParser.parseString(line).getAsJsonObject();
            if (o.has("step")) steps.add(o.get("step").getAsString());
        }
        assertEquals(List.of("0", "1", "2", "3", "4", "5", "6", "7", "8"), steps, "every step logged once");
    }

    @Test
    void resumeUsageErrors(@TempDir Path dir) throws Exception {
        Path yaml = TinyRun.write(dir.resolve("assets"), TinyRun.SETTINGS + "device: cpu\n");
        Path out = dir.resolve("out");
        assertEquals(2, run("train", "--config", yaml.toString(), "--resume", out.toString(), "--overwrite").code());
        assertEquals(2, run("train", "--config", yaml.toString(), "--out", out.toString(), "--max-bad-steps", "0").code());
        Result none = run("train", "--config", yaml.toString(), "--resume", dir.resolve("assets").toString());
        assertEquals(1, none.code());
        assertTrue(none.err().contains("no valid checkpoint to resume from (no checkpoint-N directory)"), none.err());
        Files.createDirectories(out);
        Files.writeString(out.resolve("notes.txt"), "x");
        Result busy = run("train", "--config", yaml.toString(), "--out", out.toString());
        assertEquals(1, busy.code());
        assertTrue(busy.err().contains("exists and is not empty (use --overwrite to replace it, or --resume to continue its run)"), busy.err());
        assertFalse(Files.exists(out.resolve(".lock")));
    }
}
