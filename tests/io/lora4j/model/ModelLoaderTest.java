package io.lora4j.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonObject;
import io.lora4j.io.FormatException;
import io.lora4j.io.SafeTensorsDir;
import io.lora4j.io.SafeTensorsWriter;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Halfs;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ModelLoaderTest {
    @TempDir
    Path dir;

    private static float[] floats(Tensor t) {
        return t.toFloats();
    }

    private static Tensor dense(ProjectionWeight w) {
        return ((ProjectionWeight.Dense) w).tensor();
    }

    /** Meta row {@code metaRow} of a [rows, dim] fp32 array at byte {@code offset} of a llama2.c file. */
    private static float[] row(ByteBuffer file, long offset, int metaRow, int dim) {
        float[] out = new float[dim];
        for (int i = 0; i < dim; i++) out[i] = file.getFloat((int) (offset + 4L * ((long) metaRow * dim + i)));
        return out;
    }

    /** Checks the HF permutation of q/k rows of one layer against the raw Meta rows, every head. */
    private static void checkPermutation(ByteBuffer raw, Llama2c.Array a, Tensor hf, int heads, int hs, int dim) {
        float[] v = hf.toFloats();
        for (int h = 0; h < heads; h++) {
            for (int r = 0; r < hs / 2; r++) {
                float[] first = Arrays.copyOfRange(v, (h * hs + r) * dim, (h * hs + r + 1) * dim);
                float[] second = Arrays.copyOfRange(v, (h * hs + hs / 2 + r) * dim, (h * hs + hs / 2 + r + 1) * dim);
                assertArrayEquals(row(raw, a.offset(), h * hs + 2 * r, dim), first, a.name() + " head " + h + " HF row " + r);
                assertArrayEquals(row(raw, a.offset(), h * hs + 2 * r + 1, dim), second, a.name() + " head " + h + " HF row " + (hs / 2 + r));
            }
        }
    }

    private static ByteBuffer readAll(Path f) throws IOException {
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ)) {
            return ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size()).order(ByteOrder.LITTLE_ENDIAN);
        }
    }

    @Test
    void llama2cGqaUntiedLoadsInHfLayout() throws IOException {
        Path f = dir.resolve("gqa.bin");
        // dim 32, 4 heads of 8, 2 KV heads, untied classifier
        TestModels.writeLlama2c(f, 32, 48, 2, 4, 2, 50, 16, false, 7);
        Llama2c.Header h = Llama2c.readHeader(f);
        ByteBuffer raw = readAll(f);
        try (LlamaWeights w = ModelLoader.load(f)) {
            LlamaConfig c = w.config();
            assertEquals(ModelFormat.LLAMA2C, w.format());
            assertEquals(2, c.numKeyValueHeads());
            assertFalse(w.tied());
            assertArrayEquals(new long[] {16, 32}, w.layer(0).projection(Projection.K).shape());
            for (Llama2c.Array a : h.arrays()) {
                switch (a.name()) {
                    case "wq": checkPermutation(raw, a, dense(w.layer(a.layer()).projection(Projection.Q)), 4, 8, 32); break;
                    case "wk": checkPermutation(raw, a, dense(w.layer(a.layer()).projection(Projection.K)), 2, 8, 32); break;
                    case "w2": assertArrayEquals(row(raw, a.offset(), 0, (int) a.floats()), floats(dense(w.layer(a.layer()).projection(Projection.DOWN)))); break;
                    case "w3": assertArrayEquals(row(raw, a.offset(), 0, (int) a.floats()), floats(dense(w.layer(a.layer()).projection(Projection.UP)))); break;
                    case "wcls": assertArrayEquals(row(raw, a.offset(), 0, (int) a.floats()), floats(w.lmHead())); break;
                    case "rms_final_weight": assertArrayEquals(row(raw, a.offset(), 0, 32), floats(w.norm())); break;
                    default: break;
                }
            }
        }
    }

    @Test
    void llama2cSizeMismatchIsOneLine() throws IOException {
        Path f = dir.resolve("m.bin");
        TestModels.writeLlama2c(f, 32, 48, 1, 4, 4, 20, 8, true, 1);
        byte[] all = Files.readAllBytes(f);
        Path cut = dir.resolve("cut.bin");
        Files.write(cut, Arrays.copyOf(all, all.length - 4));
        FormatException e = assertThrows(FormatException.class, () -> ModelLoader.load(cut));
        assertTrue(e.getMessage().startsWith(cut + ": file holds " + (all.length - 4) + " bytes") && e.getMessage().contains("truncated"),
                e.getMessage());
        assertFalse(e.getMessage().contains("\n"));
        Path junk = dir.resolve("junk.bin");
        Files.write(junk, "this is not a model at all, just text".getBytes());
        assertTrue(assertThrows(FormatException.class, () -> ModelLoader.load(junk)).getMessage().startsWith(junk + ": "));
    }

    @Test
    void stories15MLoadsWithPermutedQK() throws IOException {
        Path f = TestModels.stories15M();
        assumeTrue(Files.exists(f), TestModels.MISSING);
        Llama2c.Header h = Llama2c.readHeader(f);
        ByteBuffer raw = readAll(f);
        try (LlamaWeights w = ModelLoader.load(f)) {
            LlamaConfig c = w.config();
            assertEquals(288, c.hiddenSize());
            assertEquals(768, c.intermediateSize());
            assertEquals(6, c.numHiddenLayers());
            assertEquals(6, c.numAttentionHeads());
            assertEquals(48, c.headDim());
            assertEquals(32000, c.vocabSize());
            assertEquals(256, c.maxPositionEmbeddings());
            assertTrue(w.tied());
            assertSame(w.embedding(), w.lmHead());
            assertArrayEquals(new long[] {32000, 288}, w.embedding().shape());
            assertArrayEquals(new long[] {768, 288}, w.layer(5).projection(Projection.GATE).shape());
            assertArrayEquals(new long[] {288, 768}, w.layer(5).projection(Projection.DOWN).shape());
            // q and k of layer 2, head 3: a direct computation from the raw file
            int hs = 48, dim = 288, head = 3;
            for (Llama2c.Array a : h.arrays()) {
                if (a.layer() != 2 || !(a.name().equals("wq") || a.name().equals("wk"))) continue;
                float[] hf = dense(w.layer(2).projection(a.name().equals("wq") ? Projection.Q : Projection.K)).toFloats();
                for (int r = 0; r < hs; r++) {
                    int metaRow = head * hs + (r < hs / 2 ? 2 * r : 2 * (r - hs / 2) + 1);
                    assertArrayEquals(row(raw, a.offset(), metaRow, dim),
                            Arrays.copyOfRange(hf, (head * hs + r) * dim, (head * hs + r + 1) * dim), a.name() + " row " + r);
                }
            }
            assertEquals(15_191_712L, c.parameterCount());
        }
    }

    private static void assertSameBits(Tensor a, Tensor b, String what) {
        assertEquals(a.dtype(), b.dtype(), what);
        assertArrayEquals(a.shape(), b.shape(), what);
        assertArrayEquals(a.toBytes(), b.toBytes(), what);
    }

    static void assertSameModel(LlamaWeights a, LlamaWeights b) {
        assertEquals(a.config().withTorchDtype(null), b.config().withTorchDtype(null));
        assertSameBits(a.embedding(), b.embedding(), "embedding");
        assertSameBits(a.norm(), b.norm(), "norm");
        assertSameBits(a.lmHead(), b.lmHead(), "lm_head");
        assertEquals(a.tied(), b.tied());
        for (int l = 0; l < a.layers().size(); l++) {
            assertSameBits(a.layer(l).inputLayernorm(), b.layer(l).inputLayernorm(), "input_layernorm " + l);
            assertSameBits(a.layer(l).postAttentionLayernorm(), b.layer(l).postAttentionLayernorm(), "post_attention_layernorm " + l);
            for (Projection p : Projection.values())
                assertSameBits(dense(a.layer(l).projection(p)), dense(b.layer(l).projection(p)), p.weightName(l));
        }
    }

    @Test
    void stories15MHfRoundTripIsBitExact() throws IOException {
        Path f = TestModels.stories15M();
        assumeTrue(Files.exists(f), TestModels.MISSING);
        Path out = dir.resolve("hf");
        try (LlamaWeights w = ModelLoader.load(f)) {
            HfWriter.write(w, out, HfWriter.Options.of(DType.F32));
            assertFalse(SafeTensorsDir.open(out).contains(LlamaWeights.LM_HEAD), "tied: no lm_head written");
            try (LlamaWeights back = ModelLoader.load(out)) {
                assertEquals(ModelFormat.HF, back.format());
                assertSameModel(w, back);
            }
        }
    }

    @Test
    void syntheticGqaAndUntiedHfRoundTrips() throws IOException {
        for (boolean tied : new boolean[] {true, false}) {
            LlamaConfig c = TestModels.smallConfig(2, tied);
            Path out = dir.resolve("hf-" + tied);
            try (LlamaWeights w = TestModels.random(c, 11)) {
                HfWriter.write(w, out, HfWriter.Options.of(DType.F32));
                assertEquals(!tied, SafeTensorsDir.open(out).contains(LlamaWeights.LM_HEAD));
                try (LlamaWeights back = ModelLoader.load(out)) {
                    assertSameModel(w, back);
                    assertEquals(2, back.config().numKeyValueHeads());
                }
                // BF16: every value is the round-to-nearest-even bf16 of the fp32 one
                Path bf = dir.resolve("bf16-" + tied);
                HfWriter.write(w, bf, HfWriter.Options.of(DType.BF16));
                try (LlamaWeights back = ModelLoader.load(bf)) {
                    assertEquals("bfloat16", back.config().torchDtype());
                    Tensor k = dense(back.layer(1).projection(Projection.K));
                    assertEquals(DType.BF16, k.dtype());
                    float[] src = dense(w.layer(1).projection(Projection.K)).toFloats();
                    float[] got = k.toFloats();
                    for (int i = 0; i < src.length; i++) assertEquals(Halfs.bf16ToFloat(Halfs.floatToBf16(src[i])), got[i]);
                }
            }
        }
    }

    @Test
    void shardedHfDirectoryLoads() throws IOException {
        LlamaConfig c = TestModels.smallConfig(2, false);
        Path single = dir.resolve("single");
        Path sharded = Files.createDirectories(dir.resolve("sharded"));
        try (LlamaWeights w = TestModels.random(c, 21)) {
            HfWriter.write(w, single, HfWriter.Options.of(DType.F32));
            io.lora4j.io.SafeTensors src = io.lora4j.io.SafeTensors.open(single.resolve("model.safetensors"));
            SafeTensorsWriter a = new SafeTensorsWriter(), b = new SafeTensorsWriter();
            StringBuilder map = new StringBuilder();
            for (io.lora4j.io.SafeTensors.Entry e : src.entries().values()) {
                boolean first = e.name().startsWith("model.layers.0.") || e.name().startsWith("model.embed");
                (first ? a : b).add(e.name(), e.dtype(), e.shape(), src.bytes(e.name()));
                map.append(map.length() == 0 ? "" : ",").append('"').append(e.name()).append("\":\"")
                        .append(first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors").append('"');
            }
            a.write(sharded.resolve("model-00001-of-00002.safetensors"));
            b.write(sharded.resolve("model-00002-of-00002.safetensors"));
            Files.writeString(sharded.resolve("model.safetensors.index.json"), "{\"weight_map\":{" + map + "}}");
            Files.copy(single.resolve("config.json"), sharded.resolve("config.json"));
            try (LlamaWeights back = ModelLoader.load(sharded)) {
                assertSameModel(w, back);
            }
            // a tensor the index does not list is missing, and the index is named
            Path index = sharded.resolve("model.safetensors.index.json");
            JsonObject idx = com.google.gson.JsonParser.parseString(Files.readString(index)).getAsJsonObject();
            idx.getAsJsonObject("weight_map").remove(LlamaWeights.NORM);
            Files.writeString(index, idx.toString());
            FormatException e = assertThrows(FormatException.class, () -> ModelLoader.load(sharded));
            assertTrue(e.getMessage().startsWith(index + ": missing tensor 'model.norm.weight'"), e.getMessage());
        }
    }

    @Test
    void configAndTensorsDisagreeing() throws IOException {
        LlamaConfig c = TestModels.smallConfig(2, true);
        Path out = dir.resolve("m");
        try (LlamaWeights w = TestModels.random(c, 3)) {
            HfWriter.write(w, out, HfWriter.Options.of(DType.F32));
        }
        Path cfg = out.resolve("config.json");
        Path st = out.resolve("model.safetensors");
        JsonObject json = c.toJson();
        json.addProperty("intermediate_size", 100);
        LlamaConfig.writeJson(json, cfg);
        FormatException e = assertThrows(FormatException.class, () -> ModelLoader.load(out));
        assertTrue(e.getMessage().startsWith(st + ": tensor 'model.layers.0.mlp.gate_proj.weight' has shape [96, 64]"), e.getMessage());
        json.addProperty("intermediate_size", 96);
        json.addProperty("num_hidden_layers", 3);
        LlamaConfig.writeJson(json, cfg);
        e = assertThrows(FormatException.class, () -> ModelLoader.load(out));
        assertTrue(e.getMessage().startsWith(st + ": missing tensor 'model.layers.2.self_attn.q_proj.weight'"), e.getMessage());
        json.addProperty("num_hidden_layers", 2);
        json.addProperty("tie_word_embeddings", false);
        LlamaConfig.writeJson(json, cfg);
        e = assertThrows(FormatException.class, () -> ModelLoader.load(out));
        assertTrue(e.getMessage().contains("missing tensor 'lm_head.weight'"), e.getMessage());
        json.addProperty("model_type", "bert");
        LlamaConfig.writeJson(json, cfg);
        e = assertThrows(FormatException.class, () -> ModelLoader.load(out));
        assertTrue(e.getMessage().startsWith(cfg + ": model_type 'bert'"), e.getMessage());
        // a tensor of the wrong dtype
        Files.delete(st);
        new SafeTensorsWriter().add(LlamaWeights.EMBED, DType.I32, new long[] {80, 64}, new byte[80 * 64 * 4]).write(st);
        c.write(cfg);
        e = assertThrows(FormatException.class, () -> ModelLoader.load(out));
        assertTrue(e.getMessage().contains("'model.embed_tokens.weight' has dtype I32"), e.getMessage());
    }

    @Test
    void detectsFormats() throws IOException {
        assertThrows(FormatException.class, () -> ModelLoader.detect(dir));
        assertThrows(FormatException.class, () -> ModelLoader.detect(dir.resolve("nope.bin")));
        Path f = dir.resolve("x.bin");
        Files.write(f, new byte[4]);
        assertEquals(ModelFormat.LLAMA2C, ModelLoader.detect(f));
        Files.write(f, ByteBuffer.allocate(28).order(ByteOrder.LITTLE_ENDIAN).putInt(0x616b3432).array());
        assertTrue(assertThrows(FormatException.class, () -> ModelLoader.load(f)).getMessage().contains("ak42"));
    }
}
