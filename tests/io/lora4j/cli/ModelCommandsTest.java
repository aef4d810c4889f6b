package io.lora4j.cli;

import static io.lora4j.cli.CliRun.run;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.cli.CliRun.Result;
import io.lora4j.model.Assets;
import io.lora4j.model.TestModels;
import io.lora4j.ops.Backends;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** generate and eval on the real stories15M, and their one-line errors for bad input. */
class ModelCommandsTest {
    @TempDir
    Path dir;


    static void assertOneLine(Result r, int code, String fragment) {
        assertEquals(code, r.code(), r.err());
        String err = r.err().strip();
        assertFalse(err.contains("\n"), "one line: " + err);
        assertTrue(err.contains(fragment), "'" + fragment + "' in: " + err);
    }

    @Test
    void generatePrintsTheGoldenStory() {
        Path model = Assets.require("stories15M.bin");
        Result r = run("generate", "--model", model.toString(), "--prompt", "Once upon a time", "--max-new-tokens", "35", "--json");
        assertEquals(0, r.code(), r.err());
        JsonObject j = JsonParser.parseString(r.out()).getAsJsonObject();
        assertEquals("Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. "
                + "One day, she saw a big, red ball in the sky.", j.get("text").getAsString());
        assertEquals(35, j.get("new_tokens").getAsInt());
    }

    @Test
    void evalReportsLossAndPerplexity() throws Exception {
        Path model = Assets.require("stories15M.bin");
        Path data = dir.resolve("eval.jsonl");
        Files.writeString(data, "{\"text\": \"Once upon a time, there was a little girl named Lily.\"}\n\n{\"input_ids\": [1, 9038, 2501, 263, 931]}\n");
        Result r = run("eval", "--model", model.toString(), "--data", data.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        JsonObject j = JsonParser.parseString(r.out()).getAsJsonObject();
        assertEquals(2, j.get("rows").getAsInt());
        assertEquals(Math.exp(j.get("loss").getAsDouble()), j.get("perplexity").getAsDouble(), 1e-9);
        assertTrue(j.get("loss").getAsDouble() > 0.1 && j.get("loss").getAsDouble() < 5, j.toString());
    }

    @Test
    void badInputIsOneLineWithExitOne() throws Exception {
        Path model = Assets.require("stories15M.bin");
        Path bad = dir.resolve("bad.jsonl");
        Files.writeString(bad, "{\"text\": \"fine\"}\n{\"input_ids\": [1, 99999]}\n");
        assertOneLine(run("eval", "--model", model.toString(), "--data", bad.toString()), 1, bad + ": line 2: input_ids[1] = 99999");
        Files.writeString(bad, "{\"text\": \"fine\"}\nnot json\n");
        assertOneLine(run("eval", "--model", model.toString(), "--data", bad.toString()), 1, "line 2: not valid JSON");

        // a tokenizer of another vocabulary: a tiny model (vocab 80) with the real Llama-2 tokenizer
        Path tiny = dir.resolve("tiny.bin");
        TestModels.writeLlama2c(tiny, 64, 96, 2, 4, 2, 80, 32, false, 3);
        Result r = run("generate", "--model", tiny.toString(), "--tokenizer", Assets.require("tokenizer.model").toString(), "--prompt", "x");
        assertOneLine(r, 1, "the tokenizer has 32000 tokens, more than the model's vocabulary of 80");
        // more embedding rows than tokens (Qwen pads its vocabulary this way) loads and generates
        Path padded = dir.resolve("padded.bin");
        TestModels.writeLlama2c(padded, 64, 96, 2, 4, 2, 32064, 32, false, 3);
        Result p = run("generate", "--model", padded.toString(), "--tokenizer", Assets.require("tokenizer.model").toString(), "--prompt", "x",
                "--max-new-tokens", "8", "--temperature", "1.5", "--seed", "7");
        assertEquals(0, p.code(), p.err());

        assertEquals(2, run("generate", "--model", model.toString(), "--prompt", "x", "--temperature", "-1").code());
        assertEquals(2, run("generate", "--model", model.toString()).code(), "--prompt is required");
    }

    @Test
    void cudaWithoutADeviceIsAClearError() {
        assumeTrue(Backends.cudaDeviceCount() <= 0, "a CUDA device is present");
        Path model = Assets.require("stories15M.bin");
        assertOneLine(run("generate", "--model", model.toString(), "--prompt", "x", "--device", "cuda"), 1,
                "--device cuda: CUDA requested but unavailable: ");
    }
}
