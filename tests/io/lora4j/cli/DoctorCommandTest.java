package io.lora4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonParser;
import io.lora4j.train.RunConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DoctorCommandTest {
    @TempDir
    Path dir;

    static final Path EXAMPLE = Path.of("examples/lora-defaults.yaml");

    private Path config(String extra) throws IOException {
        Path y = dir.resolve("run.yaml");
        Files.writeString(y, "model: none.bin\ndataset: " + dir.resolve("data.jsonl") + "\nwarmup_ratio: 0.05\n" + extra);
        return y;
    }

    @Test
    void exampleConfigHasEveryKeyAndNoAdvice() throws IOException {
        RunConfig c = RunConfig.load(EXAMPLE, Map.of());
        assertEquals(16, c.lora().r());
        String text = Files.readString(EXAMPLE);
        for (String k : RunConfig.keys()) assertTrue(text.contains("\n" + k + ":"), "key " + k + " in " + EXAMPLE);
        for (String line : text.split("\n"))
            if (!line.isBlank() && !line.startsWith("#")) assertTrue(line.contains(" # "), "commented: " + line);
        CliRun.Result r = CliRun.run("doctor", "--config", EXAMPLE.toString());
        assertEquals(0, r.code(), r.out() + r.err());
        assertTrue(r.out().startsWith("no advice"), r.out());
    }

    /** The example file holds the code defaults: every value, key by key, against a config of model and dataset alone. */
    @Test
    void exampleConfigIsTheCodeDefaults() throws IOException {
        RunConfig example = RunConfig.load(EXAMPLE, Map.of());
        RunConfig defaults = RunConfig.from(Map.of("model", example.model().toString(), "dataset", example.dataset().toString()));
        for (var c : RunConfig.class.getRecordComponents()) {
            try {
                assertEquals(c.getAccessor().invoke(defaults), c.getAccessor().invoke(example), "key group " + c.getName() + " of " + EXAMPLE);
            } catch (ReflectiveOperationException e) {
                throw new AssertionError(e);
            }
        }
        assertEquals(defaults, example);
    }

    /** The built-in defaults pass doctor: a config with only model and dataset gets no advice, with the dataset read. */
    @Test
    void minimalConfigHasNoAdvice() throws IOException {
        Path y = dir.resolve("min.yaml");
        Files.writeString(y, "model: none.bin\ndataset: " + Path.of("examples/data/simple-instructions.jsonl").toAbsolutePath() + "\n");
        CliRun.Result r = CliRun.run("doctor", "--config", y.toString());
        assertEquals(0, r.code(), r.out() + r.err());
        assertTrue(r.out().startsWith("no advice"), r.out());
        assertTrue(r.err().contains("eval_split auto: 7 of 134 rows held out") && r.err().contains("train_on_responses_only auto: on"), r.err());
        // and so does chat data (messages rows) with too few rows for an eval split
        Files.writeString(dir.resolve("data.jsonl"), "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n");
        Files.writeString(y, "model: none.bin\ndataset: " + dir.resolve("data.jsonl") + "\n");
        r = CliRun.run("doctor", "--config", y.toString());
        assertEquals(0, r.code(), r.out() + r.err());
    }

    /** doctor advises eval when it is switched off, and early stopping when eval is on without it. */
    @Test
    void evalAdvice() throws IOException {
        Files.writeString(dir.resolve("data.jsonl"), "{\"text\":\"a\"}\n".repeat(40));
        CliRun.Result r = CliRun.run("doctor", "--config", config("eval_split: 0\n").toString());
        assertEquals(DoctorCommand.ADVICE, r.code(), r.out());
        assertTrue(r.out().contains("[advice] eval:") && r.out().contains("eval_split: auto"), r.out());
        r = CliRun.run("doctor", "--config", config("early_stopping_patience: 0\n").toString());
        assertTrue(r.out().contains("[advice] early-stopping:") && r.out().contains("early_stopping_patience: 3"), r.out());
    }

    @Test
    void findingsRuleByRuleExit3() throws IOException {
        Files.writeString(dir.resolve("data.jsonl"), "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n");
        CliRun.Result r = CliRun.run("doctor", "--config", config("lora_alpha: 8\ntrain_on_responses_only: false\n").toString(),
                "--learning_rate", "1e-3");
        assertEquals(DoctorCommand.ADVICE, r.code(), r.err());
        assertTrue(r.out().contains("[advice] learning-rate:") && r.out().contains("[warning] alpha-rank:"), r.out());
        assertTrue(r.out().contains("[advice] responses-only:"), "chat data detected from the file: " + r.out());
        assertTrue(r.out().contains("why:") && r.out().contains("(guide: "), r.out());
        assertTrue(r.out().indexOf("learning-rate") < r.out().indexOf("alpha-rank"), "guide order");
    }

    @Test
    void json() throws IOException {
        CliRun.Result r = CliRun.run("doctor", "--config", config("r: 128\nlora_alpha: 128\n").toString(), "--json");
        assertEquals(3, r.code(), r.err());
        assertTrue(r.err().contains("not found"), "dataset missing: said on stderr: " + r.err());
        JsonArray a = JsonParser.parseString(r.out()).getAsJsonArray();
        assertEquals(1, a.size(), r.out());
        assertEquals("rslora", a.get(0).getAsJsonObject().get("rule").getAsString());
        assertEquals("advice", a.get(0).getAsJsonObject().get("severity").getAsString());
        for (String k : List.of("found", "change", "why", "section")) assertTrue(a.get(0).getAsJsonObject().has(k), k);
        r = CliRun.run("doctor", "--config", EXAMPLE.toString(), "--json");
        assertEquals(0, r.code());
        assertEquals(0, JsonParser.parseString(r.out()).getAsJsonArray().size());
    }

    @Test
    void badConfigIsUsageWithEveryProblem() throws IOException {
        CliRun.Result r = CliRun.run("doctor", "--config", config("r: 0\nlearning_rat: 1\n").toString());
        assertEquals(2, r.code(), r.out());
        String err = r.err().strip();
        assertFalse(err.contains("\n"), err);
        assertTrue(err.startsWith("lora4j doctor: ") && err.contains("learning_rate") && err.contains("r must be"), err);
        assertEquals(2, CliRun.run("doctor").code());
    }

    @Test
    void unknownOptionsSuggestTheClosest() {
        CliRun.Result r = CliRun.run("train", "--learning-rat", "1e-4");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("unknown option --learning-rat (did you mean --learning_rate?)"), r.err());
        r = CliRun.run("doctor", "--jsno");
        assertTrue(r.err().contains("unknown option --jsno (did you mean --json?)"), r.err());
        r = CliRun.run("quantize", "--blocksiz=64");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("unknown option --blocksiz (did you mean --blocksize?)"), r.err());
        r = CliRun.run("eval", "--zzzzzzzz", "1");
        assertTrue(r.err().contains("unknown option --zzzzzzzz") && !r.err().contains("did you mean"), r.err());
        r = CliRun.run("doctr");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("unknown command 'doctr' (did you mean 'doctor'?)"), r.err());
    }

    @Test
    void editDistance() {
        assertEquals(0, Cli.editDistance("abc", "abc"));
        assertEquals(3, Cli.editDistance("kitten", "sitting"));
        assertEquals(1, Cli.editDistance("jsno", "json"));
        assertEquals("learning_rate", Cli.closest("learning-rat", RunConfig.keys()));
        assertNull(Cli.closest("xyz", List.of("model", "dataset")));
    }
}
