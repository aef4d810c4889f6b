package io.lora4j.cli;

import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.model.Assets;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** lora4j train / verify end to end on the real stories15M, and their usage errors. */
class TrainCommandTest {
    private record Result(int code, String out, String err) {}

    private static Result run(String... args) {
        ByteArrayOutputStream o = new ByteArrayOutputStream(), e = new ByteArrayOutputStream();
        int code = Main.run(args, new PrintStream(o, true, StandardCharsets.UTF_8), new PrintStream(e, true, StandardCharsets.UTF_8), Map.of());
        return new Result(code, o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8));
    }

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
        System.out.println(r.err);
        assertEquals(0, r.code, r.err);
        assertTrue(r.err.contains("step 8/8"), r.err);
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

        // verify: an untrained adapter (B = 0) vs the trained one
        Path init = dir.resolve("init");
        Result r0 = run("train", "--config", yaml.toString(), "--out", init.toString(), "--max_steps", "1", "--learning_rate", "1e-30");
        assertEquals(0, r0.code, r0.err);
        Result v = run("verify", out.toString(), "--json");
        assertEquals(0, v.code, v.err);
        assertFalse(JsonParser.parseString(v.out).getAsJsonObject().get("untrained").getAsBoolean());
        Result v2 = run("verify", out.toString(), init.toString());
        assertEquals(0, v2.code, v2.err);
        assertTrue(v2.out.contains("changed: 42 of 42 lora_A, 42 of 42 lora_B"), v2.out);
        assertEquals(1, run("train", "--config", yaml.toString(), "--out", out.toString()).code, "non-empty --out without --overwrite");
    }

    @Test
    void qloraOnStories15M(@TempDir Path dir) throws Exception {
        Path model = Assets.require("stories15M.bin");
        Path out = dir.resolve("q");
        Result r = run("train", "--model", model.toString(), "--dataset", data(dir).toString(), "--load_in_4bit", "true", "--max_steps", "3",
                "--gradient_accumulation_steps", "1", "--max_seq_length", "48", "--use_gradient_checkpointing", "true", "--out", out.toString());
        System.out.println(r.err);
        assertEquals(0, r.code, r.err);
        assertTrue(Files.isRegularFile(out.resolve("adapter_model.safetensors")));
    }

    @Test
    void badConfigIsAUsageErrorListingEveryProblem(@TempDir Path dir) throws Exception {
        Path yaml = dir.resolve("bad.yaml");
        Files.writeString(yaml, "model: x.bin\nlearning_rte: 1\nr: -1\n");
        Result r = run("train", "--config", yaml.toString(), "--out", dir.resolve("o").toString());
        assertEquals(2, r.code);
        assertTrue(r.err.contains("did you mean 'learning_rate'") && r.err.contains("r must be > 0") && r.err.contains("dataset is required"), r.err);
    }
}
