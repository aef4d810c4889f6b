package io.lora4j.cli;

import static io.lora4j.cli.CliRun.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.cli.CliRun.Result;
import io.lora4j.model.TestModels;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MainTest {
    @TempDir
    Path dir;

    /** Exit code, stdout and stderr of one run. */

    private static void assertOneLineError(Result r, int code, String prefix, String fragment) {
        assertEquals(code, r.code(), r.err());
        String err = r.err().strip();
        assertFalse(err.contains("\n"), "one line: " + err);
        assertFalse(err.contains("\tat "), "no stack trace: " + err);
        assertTrue(err.startsWith(prefix), "'" + prefix + "' starts: " + err);
        assertTrue(err.contains(fragment), "'" + fragment + "' in: " + err);
    }

    /** A small llama2.c model with a tokenizer.model beside it. */
    private Path model() throws IOException {
        Path m = dir.resolve("tiny.bin");
        TestModels.writeLlama2c(m, 64, 96, 2, 4, 2, 80, 32, false, 3);
        Files.write(dir.resolve("tokenizer.model"), new byte[] {1, 2, 3});
        return m;
    }

    @Test
    void helpAndUsageErrors() {
        Result r = run("--help");
        assertEquals(0, r.code());
        assertTrue(r.out().contains("quantize") && r.out().contains("inspect"), r.out());
        for (String c : new String[] {"generate", "eval", "data", "train", "verify"})
            assertTrue(r.out().contains(c), c + " is listed: " + r.out());
        assertTrue(r.out().contains("doctor"), "doctor is listed: " + r.out());
        assertTrue(r.out().contains("plan "), "plan is listed: " + r.out());
        assertEquals(2, run().code());
        assertOneLineError(run("frobnicate"), 2, "lora4j: unknown command 'frobnicate'", "quantize");
        for (String c : new String[] {"quantize", "inspect", "generate", "eval", "data", "train", "verify"}) {
            Result h = run(c, "--help");
            assertEquals(0, h.code());
            assertTrue(h.out().startsWith("usage: lora4j " + c), h.out());
            assertTrue(h.out().contains("--help"), h.out());
        }
        assertOneLineError(run("quantize", "--model", "x.bin"), 2, "lora4j quantize: ", "missing required option --out");
        assertOneLineError(run("quantize", "--model", "x.bin", "--out", "o", "--bogus"), 2, "lora4j quantize: ", "unknown option --bogus");
        assertOneLineError(run("quantize", "--model", "x.bin", "--out", "o", "--blocksize", "100"), 2, "lora4j quantize: ", "power of two");
        assertOneLineError(run("quantize", "--model", "x.bin", "--out", "o", "--blocksize", "abc"), 2, "lora4j quantize: ", "not an integer");
        assertOneLineError(run("quantize", "--model", "x.bin", "--out", "o", "--compute-dtype", "int8"), 2, "lora4j quantize: ", "int8");
        assertOneLineError(run("inspect"), 2, "lora4j inspect: ", "missing PATH");
        assertEquals(0, run("--version").code());
    }

    @Test
    void badInputIsExitOneWithFileAndProblem() throws IOException {
        Path missing = dir.resolve("missing.bin");
        assertOneLineError(run("quantize", "--model", missing.toString(), "--out", dir.resolve("o").toString()), 1,
                "lora4j quantize: " + missing + ": ", "no such file");
        Path junk = dir.resolve("junk.bin");
        Files.writeString(junk, "hello, this is not a checkpoint");
        assertOneLineError(run("inspect", junk.toString()), 1, "lora4j inspect: " + junk + ": ", "llama2.c");
        assertFalse(Files.exists(dir.resolve("o")), "nothing written on failure");
    }

    @Test
    void quantizeThenInspect() throws IOException {
        Path m = model();
        Path out = dir.resolve("q");
        Result r = run("quantize", "--model", m.toString(), "--out", out.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        JsonObject s = JsonParser.parseString(r.out()).getAsJsonObject();
        assertEquals(14, s.get("quantized").getAsInt());
        assertEquals(64, s.get("blocksize").getAsInt());
        assertTrue(s.get("double_quant").getAsBoolean());
        assertEquals("llama2c", s.get("source_format").getAsString());
        assertTrue(s.get("output_bytes").getAsLong() < s.get("source_bytes").getAsLong());
        assertTrue(s.getAsJsonArray("files").toString().contains("tokenizer.model"), s.toString());
        assertTrue(Files.exists(out.resolve("config.json")) && Files.exists(out.resolve("model.safetensors"))
                && Files.exists(out.resolve("tokenizer.model")));

        // an existing non-empty --out is refused, then replaced with --overwrite
        assertOneLineError(run("quantize", "--model", m.toString(), "--out", out.toString()), 1,
                "lora4j quantize: " + out.toAbsolutePath() + ": ", "--overwrite");
        Result again = run("quantize", "--model", m.toString(), "--out", out.toString(), "--overwrite", "--no-double-quant",
                "--blocksize", "128", "--compute-dtype", "bfloat16");
        assertEquals(0, again.code(), again.err());
        assertTrue(again.out().contains("quantized 14 projections"), again.out());

        Result ij = run("inspect", out.toString(), "--json");
        assertEquals(0, ij.code(), ij.err());
        JsonObject info = JsonParser.parseString(ij.out()).getAsJsonObject();
        assertEquals("hf-bnb-4bit", info.get("format").getAsString());
        assertEquals("bfloat16", info.getAsJsonObject("config").getAsJsonObject("quantization_config").get("bnb_4bit_compute_dtype").getAsString());
        int nf4 = 0;
        for (JsonElement e : info.getAsJsonArray("tensors")) {
            JsonObject t = e.getAsJsonObject();
            if (t.has("nf4")) {
                nf4++;
                assertEquals(128, t.getAsJsonObject("nf4").get("blocksize").getAsInt());
                assertFalse(t.getAsJsonObject("nf4").get("double_quant").getAsBoolean());
                assertEquals("float32", t.getAsJsonObject("nf4").get("source_dtype").getAsString());
            }
        }
        assertEquals(14, nf4);
        // parameters of the logical model: the same whether read from the .bin or the bnb-4bit dir
        JsonObject binInfo = JsonParser.parseString(run("inspect", m.toString(), "--json").out()).getAsJsonObject();
        assertEquals(binInfo.get("parameters").getAsLong(), info.get("parameters").getAsLong());
        assertEquals("llama2c", binInfo.get("format").getAsString());

        Result it = run("inspect", out.toString());
        assertEquals(0, it.code());
        assertTrue(it.out().contains("model.layers.1.mlp.down_proj.weight") && it.out().contains("NF4 [64, 96] blocksize 128"), it.out());
        Result st = run("inspect", out.resolve("model.safetensors").toString(), "--json");
        assertEquals(0, st.code(), st.err());
        JsonArray tensors = JsonParser.parseString(st.out()).getAsJsonObject().getAsJsonArray("tensors");
        assertEquals(info.getAsJsonArray("tensors").size(), tensors.size());
    }

    @Test
    void quantizeStories15M() throws IOException {
        Path m = TestModels.stories15M();
        assumeTrue(Files.exists(m), TestModels.MISSING);
        Path out = dir.resolve("stories15M-bnb-4bit");
        Result r = run("quantize", "--model", m.toString(), "--out", out.toString());
        assertEquals(0, r.code(), r.err());
        System.out.println("[quantize stories15M] " + r.out().strip().replace("\n", " | "));
        assertTrue(r.out().contains("quantized 42 projections"), r.out());
        assertTrue(Files.exists(out.resolve("tokenizer.model")) == Files.exists(m.resolveSibling("tokenizer.model")));
    }
}
