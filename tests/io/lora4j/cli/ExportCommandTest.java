package io.lora4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.gguf.GgmlType;
import io.lora4j.gguf.GgufFile;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.Projection;
import io.lora4j.ops.Backends;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code lora4j export}: what it writes, its Modelfile, and its one-line errors that leave nothing behind. */
class ExportCommandTest {
    static final String GQA = "tests/resources/model/synthetic-gqa-untied";
    static final String TIED = "tests/resources/model/synthetic-llama31-bf16";

    private static Path adapter(Path dir, LlamaConfig model, int r, boolean rslora) throws Exception {
        LoraConfig lc = new LoraConfig(r, 16, 0, LoraConfig.Bias.NONE, EnumSet.of(Projection.Q, Projection.K, Projection.V), rslora,
                LoraConfig.Init.KAIMING, 1, LoraConfig.DEFAULT_SEED);
        List<LoraAdapter.Slot> slots = LoraAdapter.layout(model, lc);
        LoraAdapter.Slot last = slots.get(slots.size() - 1);
        float[] v = new float[(int) (last.offsetB() + last.out() * r)];
        for (int i = 0; i < v.length; i++) v[i] = (float) Math.sin(i * 0.61) * 0.05f;
        try (LoraAdapter a = LoraAdapter.of(Backends.cpu(), model, lc, v)) {
            a.save(dir, GQA, false);
        }
        return dir;
    }

    private static List<String> listing(Path dir) throws Exception {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void exportsAModelWithItsAdapterMergedAndAModelfile(@TempDir Path dir) throws Exception {
        Path a = adapter(dir.resolve("a"), LlamaConfig.read(Path.of(GQA, "config.json")), 4, false);
        Path out = dir.resolve("out");
        Files.createDirectories(out);
        CliRun.Result r = CliRun.run("export", "--model", GQA, "--adapter", a.toString(), "--out", out.resolve("m.gguf").toString(),
                "--quant", "q8_0", "--modelfile", "--chat-template", "llama-3");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("q8_0"), r.out());
        assertEquals(List.of("Modelfile", "m.gguf"), listing(out));
        try (GgufFile g = GgufFile.open(out.resolve("m.gguf"))) {
            assertEquals("llama", g.get("general.architecture").asString());
            assertEquals(7, g.get("general.file_type").asLong());
            assertEquals(GgmlType.Q8_0, g.tensor("blk.0.attn_q.weight").type());
            assertEquals(GgmlType.F32, g.tensor("blk.0.attn_norm.weight").type());
            assertEquals(GgmlType.Q8_0, g.tensor("output.weight").type(), "q8_0 files keep output in q8_0");
            assertTrue(g.get("tokenizer.chat_template").asString().contains("<|start_header_id|>"));
            assertArrayEquals(new long[] {300, 64}, g.tensor("token_embd.weight").shape());
        }
        String mf = Files.readString(out.resolve("Modelfile"));
        assertTrue(mf.contains("FROM ./m.gguf\n"), mf);
        assertTrue(mf.contains("TEMPLATE \"\"\"{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>"), mf);
        assertTrue(mf.contains("PARAMETER stop \"<|eot_id|>\""), mf);
    }

    @Test
    void exportsAnAdapterAgainstItsBase(@TempDir Path dir) throws Exception {
        Path a = adapter(dir.resolve("a"), LlamaConfig.read(Path.of(GQA, "config.json")), 4, true);
        Path out = dir.resolve("a.gguf");
        CliRun.Result r = CliRun.run("export", "--adapter", a.toString(), "--base", GQA, "--out", out.toString(), "--scale", "0.5");
        assertEquals(0, r.code(), r.err());
        try (GgufFile g = GgufFile.open(out)) {
            assertEquals("adapter", g.get("general.type").asString());
            assertEquals(16 * Math.sqrt(4) * 0.5, g.get("adapter.lora.alpha").asDouble(), 1e-5, "rsLoRA and --scale folded into alpha");
            assertArrayEquals(new long[] {4, 64}, g.tensor("blk.1.attn_k.weight.lora_a").shape());
            assertArrayEquals(new long[] {32, 4}, g.tensor("blk.1.attn_k.weight.lora_b").shape());
            assertEquals(12, g.tensors().size());
        }
    }

    @Test
    void badInputIsOneLineAndLeavesNothing(@TempDir Path dir) throws Exception {
        Path a = adapter(dir.resolve("a"), LlamaConfig.read(Path.of(GQA, "config.json")), 4, false);
        Path out = dir.resolve("x.gguf");
        // an adapter made for another base: one line naming the file, no output
        CliRun.Result r = CliRun.run("export", "--adapter", a.toString(), "--base", TIED, "--out", out.toString());
        assertEquals(1, r.code());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().contains("adapter_model.safetensors"), r.err());
        r = CliRun.run("export", "--model", TIED, "--adapter", a.toString(), "--out", out.toString());
        assertEquals(1, r.code(), r.err());
        assertFalse(Files.exists(out));
        assertEquals(List.of("a"), listing(dir), "no file and no temporary file");
        // a family whose shapes llama.cpp's architecture cannot hold (qwen2 with 4 heads of 24 over hidden 64)
        Path narrow = dir.resolve("narrow");
        try (io.lora4j.model.LlamaWeights w = io.lora4j.model.TestModels.random(new LlamaConfig("qwen2", 64, 96, 1, 4, 2, 24, 1e-6, 1e6, null, 300, 128,
                true, 1, List.of(2), "float32"), 1)) {
            io.lora4j.model.HfWriter.write(w, narrow, io.lora4j.model.HfWriter.Options.of(io.lora4j.tensor.DType.F32));
        }
        r = CliRun.run("export", "--model", narrow.toString(), "--out", out.toString());
        assertEquals(1, r.code(), r.err());
        assertEquals(1, r.err().strip().lines().filter(l -> !l.contains("note:")).count(), r.err());
        assertTrue(r.err().contains("qwen2 needs num_attention_heads x head_dim = hidden_size"), r.err());
        assertEquals(List.of("a", "narrow"), listing(dir), "no file and no temporary file");
        // Mistral's sliding window has no place in llama.cpp's llama architecture: written, with a warning
        r = CliRun.run("export", "--model", "tests/resources/model/families/mistral/model", "--out", out.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("WARNING: llama.cpp's llama architecture has no sliding window"), r.err());
        Files.delete(out);
        // usage errors
        assertEquals(2, CliRun.run("export", "--model", GQA, "--out", out.toString(), "--quant", "q3_K").code());
        assertEquals(2, CliRun.run("export", "--base", GQA, "--out", out.toString()).code());
        assertEquals(2, CliRun.run("export", "--model", GQA, "--out", out.toString(), "--scale", "2").code());
        assertEquals(2, CliRun.run("export", "--model", GQA, "--base", GQA, "--adapter", a.toString(), "--out", out.toString()).code());
        // an existing output is kept unless --overwrite
        Files.writeString(out, "keep");
        r = CliRun.run("export", "--model", GQA, "--out", out.toString());
        assertEquals(1, r.code());
        assertTrue(r.err().contains("--overwrite"), r.err());
        assertEquals("keep", Files.readString(out));
        assertEquals(0, CliRun.run("export", "--model", GQA, "--out", out.toString(), "--overwrite").code());
        assertTrue(GgufFile.isGguf(out));
    }
}
