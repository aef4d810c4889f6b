package io.lora4j.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.io.FormatException;
import io.lora4j.model.LayerWeights;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.model.Projection;
import io.lora4j.model.ProjectionWeight;
import io.lora4j.model.TestModels;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4;
import io.lora4j.tensor.Tensor;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The model export without llama.cpp: exact f32 round trips through the q/k permutation, NF4 bases, and the type rule. */
class GgufModelExportTest {

    private static float[] dense(ProjectionWeight p) {
        if (p instanceof ProjectionWeight.Dense d) return d.tensor().toFloats();
        try (Tensor t = Nf4.dequantize(Backends.cpu(), ((ProjectionWeight.Quantized) p).weight())) {
            return t.toFloats();
        }
    }

    private static void assertSameWeights(LlamaWeights want, LlamaWeights got) {
        assertArrayEquals(want.embedding().toFloats(), got.embedding().toFloats());
        assertArrayEquals(want.norm().toFloats(), got.norm().toFloats());
        assertArrayEquals(want.lmHead().toFloats(), got.lmHead().toFloats());
        for (int l = 0; l < want.config().numHiddenLayers(); l++) {
            LayerWeights a = want.layer(l), b = got.layer(l);
            assertArrayEquals(a.inputLayernorm().toFloats(), b.inputLayernorm().toFloats());
            assertArrayEquals(a.postAttentionLayernorm().toFloats(), b.postAttentionLayernorm().toFloats());
            for (Projection p : Projection.values()) assertArrayEquals(dense(a.projection(p)), dense(b.projection(p)), p + " of layer " + l);
        }
    }

    @Test
    void f32RoundTripIsExactThroughThePermutation(@TempDir Path dir) throws Exception {
        LlamaConfig c = new LlamaConfig("llama", 64, 96, 2, 4, 2, 24, 1e-5, 10000.0, null, 300, 128, false, 1, List.of(2), "float32");
        Path f = dir.resolve("m.gguf");
        try (LlamaWeights w = TestModels.random(c, 5)) {
            GgufModelExport.write(w, new GgufModelExport.Options(GgufFileType.F32, "m", null, null, null), f);
            try (GgufFile g = GgufFile.open(f); LlamaWeights back = GgufModelImport.load(g, c)) {
                assertSameWeights(w, back);
                // the stored q rows are permuted: GGUF row 1 of head 0 is HF row head_dim/2 = 12
                float[] q = g.floats(g.tensor("blk.0.attn_q.weight"));
                float[] hf = ((ProjectionWeight.Dense) w.layer(0).projection(Projection.Q)).tensor().toFloats();
                for (int j = 0; j < 64; j++) assertEquals(hf[12 * 64 + j], q[64 + j]);
            }
        }
    }

    @Test
    void nf4BaseIsExportedDequantized(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("q.gguf");
        try (LlamaWeights w = ModelLoader.load(Path.of("tests/resources/model/synthetic-gqa-untied"), ModelLoader.Options.in4bit())) {
            assertTrue(w.quantized());
            GgufModelExport.write(w, new GgufModelExport.Options(GgufFileType.F32, "q", null, null, null), f);
            try (GgufFile g = GgufFile.open(f); LlamaWeights back = GgufModelImport.load(g, w.config())) {
                assertSameWeights(w, back);
            }
        }
    }

    @Test
    void q4KmRuleForStories15mShapes() {
        // llama.cpp's llama_tensor_get_type for LLAMA_FTYPE_MOSTLY_Q4_K_M, 6 layers, tied embedding, rows of 288
        // (768 for ffn_down): use_more_bits(i, 6) holds for layers 2 and 5.
        GgufFileType.Rule rule = GgufFileType.Q4_K_M.rule(6, true, false);
        Map<String, GgmlType> want = new LinkedHashMap<>();
        want.put("token_embd.weight", GgmlType.Q8_0);        // tied: the output rule; 288 % 256 != 0 -> q8_0
        for (int l = 0; l < 6; l++) {
            boolean more = l == 2 || l == 5;
            want.put("blk." + l + ".attn_norm.weight", GgmlType.F32);
            want.put("blk." + l + ".attn_q.weight", GgmlType.Q5_0);            // q4_K falls back to q5_0
            want.put("blk." + l + ".attn_v.weight", more ? GgmlType.Q8_0 : GgmlType.Q5_0); // q6_K -> q8_0
            want.put("blk." + l + ".ffn_down.weight", more ? GgmlType.Q6_K : GgmlType.Q4_K);  // 768 fits 256
        }
        for (Map.Entry<String, GgmlType> e : want.entrySet()) {
            String n = e.getKey();
            long ne0 = n.contains("ffn_down") ? 768 : 288;
            assertEquals(e.getValue(), rule.typeOf(n, n.contains("norm") ? 1 : 2, ne0), n);
        }
        // an 80-layer GQA llama is llama.cpp's 70B: its attn_v would need q5_K
        GgufFileType.Rule big = GgufFileType.Q4_K_M.rule(80, false, true);
        assertThrows(IllegalArgumentException.class, () -> {
            for (int l = 0; l < 80; l++) big.typeOf("blk." + l + ".attn_v.weight", 2, 8192);
        });
    }
    @Test
    void gemma3NormsAreStoredAsOnePlusWAndTheQueryScaleInAttnQNorm(@TempDir Path dir) throws Exception {
        // the families' Gemma 3 config: head_dim 16, query_pre_attn_scalar 24, sliding window 5 on layers 0 and 1 of 3
        f32RoundTrip("gemma3_text", 4, dir, (w, g, back) -> {
            assertEquals("gemma3", g.get("general.architecture").asString());
            assertEquals(5, g.get("gemma3.attention.sliding_window").asLong());
            assertEquals(3, g.get("gemma3.attention.sliding_window_pattern").asLong());
            assertEquals(10000.0, g.get("gemma3.rope.freq_base_swa").asDouble());
            assertEquals("linear", g.get("gemma3.rope.scaling.type").asString());
            assertEquals(16, g.get("gemma3.attention.key_length").asLong());
            float[] norm = w.layer(1).inputLayernorm().toFloats(), stored = g.floats(g.tensor("blk.1.attn_norm.weight"));
            for (int i = 0; i < norm.length; i++) assertEquals(1f + norm[i], stored[i]);
            float[] post = w.layer(1).extra(io.lora4j.model.Architecture.POST_FFN_NORM).toFloats();
            float[] storedPost = g.floats(g.tensor("blk.1.post_ffw_norm.weight"));
            for (int i = 0; i < post.length; i++) assertEquals(1f + post[i], storedPost[i]);
            float[] q = w.layer(0).extra(io.lora4j.model.Architecture.Q_NORM).toFloats(), storedQ = g.floats(g.tensor("blk.0.attn_q_norm.weight"));
            float s = (float) Math.sqrt(16.0 / 24.0);
            for (int i = 0; i < q.length; i++) assertEquals((1f + q[i]) * s, storedQ[i]);
            // read back: what the norm multiplies by (1 + w in fp32, as lora4j computes it) exactly, the folded q norm to rounding
            float[] backNorm = back.layer(1).inputLayernorm().toFloats();
            for (int i = 0; i < norm.length; i++) assertEquals(1f + norm[i], 1f + backNorm[i]);
            assertArrayEquals(q, back.layer(0).extra(io.lora4j.model.Architecture.Q_NORM).toFloats(), 1e-6f);
        });
    }

    /** What a check of an f32 export gets: the model, the file, and the model read back from it. */
    private interface ExportCheck {
        void check(LlamaWeights w, GgufFile g, LlamaWeights back) throws Exception;
    }

    /** The seeded random model of {@code family}'s tiny test config, exported as f32 and read back, checked by {@code check}. */
    private static void f32RoundTrip(String family, long seed, Path dir, ExportCheck check) throws Exception {
        LlamaConfig c = LlamaConfig.read(Path.of("tests/resources/model/families", family, "model", LlamaConfig.FILE));
        Path f = dir.resolve(family + ".gguf");
        try (LlamaWeights w = TestModels.random(c, seed)) {
            GgufModelExport.write(w, new GgufModelExport.Options(GgufFileType.F32, family, null, null, null), f);
            try (GgufFile g = GgufFile.open(f); LlamaWeights back = GgufModelImport.load(g, c)) {
                check.check(w, g, back);
            }
        }
    }

    @Test
    void gemma2SoftCapsAndWindowAreMetadataAndTheQueryScaleIsInAttnQ(@TempDir Path dir) throws Exception {
        // the families' Gemma 2 config: head_dim 16, query_pre_attn_scalar 24, soft-caps 1 and 2, window 5
        f32RoundTrip("gemma2", 5, dir, (w, g, back) -> {
            assertEquals("gemma2", g.get("general.architecture").asString());
            assertEquals(1.0, g.get("gemma2.attn_logit_softcapping").asDouble());
            assertEquals(2.0, g.get("gemma2.final_logit_softcapping").asDouble());
            assertEquals(5, g.get("gemma2.attention.sliding_window").asLong());
            float[] q = ((ProjectionWeight.Dense) w.layer(2).projection(Projection.Q)).tensor().toFloats();
            float[] storedQ = g.floats(g.tensor("blk.2.attn_q.weight"));
            float s = (float) Math.sqrt(16.0 / 24.0);
            for (int i = 0; i < q.length; i++) assertEquals(q[i] * s, storedQ[i]);
            float[] backQ = ((ProjectionWeight.Dense) back.layer(2).projection(Projection.Q)).tensor().toFloats();
            assertArrayEquals(q, backQ, 1e-6f);
        });
        // llama.cpp's gemma2 always soft-caps: a model without caps is refused, naming the keys
        Path cfg = Path.of("tests/resources/model/families/gemma2/model/config.json");
        com.google.gson.JsonObject json = com.google.gson.JsonParser.parseString(java.nio.file.Files.readString(cfg)).getAsJsonObject();
        json.remove("attn_logit_softcapping");
        json.remove("final_logit_softcapping");
        try (LlamaWeights w = TestModels.random(LlamaConfig.fromJson(json, cfg), 5)) {
            FormatException e = assertThrows(FormatException.class,
                    () -> GgufModelExport.write(w, new GgufModelExport.Options(GgufFileType.F16, "m", null, null, null), dir.resolve("u.gguf")));
            assertEquals(1, e.getMessage().lines().count(), e.getMessage());
            assertTrue(e.getMessage().contains("final_logit_softcapping"), e.getMessage());
        }
    }

    @Test
    void phi3FusedModulesAreOneTensorEachAndQ4KmIsRefused(@TempDir Path dir) throws Exception {
        // the families' Phi-3 config: hidden 32, 4 heads of 8, 2 kv heads, intermediate 48
        f32RoundTrip("phi3", 6, dir, (w, g, back) -> {
            assertEquals("phi3", g.get("general.architecture").asString());
            // rows [Q | K | V] = 32 + 16 + 16 and [gate | up] = 48 + 48, of 32 columns
            assertArrayEquals(new long[] {64, 32}, g.tensor("blk.1.attn_qkv.weight").shape());
            assertArrayEquals(new long[] {96, 32}, g.tensor("blk.1.ffn_up.weight").shape());
            assertTrue(!g.tensors().containsKey("blk.1.attn_q.weight") && !g.tensors().containsKey("blk.1.ffn_gate.weight"));
            float[] qkv = g.floats(g.tensor("blk.1.attn_qkv.weight")), up = g.floats(g.tensor("blk.1.ffn_up.weight"));
            int at = 0;
            for (Projection p : new Projection[] {Projection.Q, Projection.K, Projection.V, Projection.GATE, Projection.UP}) {
                if (p == Projection.GATE) at = 0;
                float[] want = ((ProjectionWeight.Dense) w.layer(1).projection(p)).tensor().toFloats();
                float[] stored = java.util.Arrays.copyOfRange(p.ordinal() <= Projection.V.ordinal() ? qkv : up, at, at + want.length);
                assertArrayEquals(want, stored, p.toString());
                assertArrayEquals(want, ((ProjectionWeight.Dense) back.layer(1).projection(p)).tensor().toFloats(), p.toString());
                at += want.length;
            }
        });
        // llama-quantize puts attn_qkv in q5_K for q4_K_M, a type lora4j does not write: refused, no file
        try (LlamaWeights w = TestModels.random(LlamaConfig.read(Path.of("tests/resources/model/families/phi3/model/config.json")), 6)) {
            Path q = dir.resolve("q.gguf");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> GgufModelExport.write(w, new GgufModelExport.Options(GgufFileType.Q4_K_M, "p", null, null, null), q));
            assertTrue(e.getMessage().contains("attn_qkv") && e.getMessage().contains("q5_K"), e.getMessage());
            assertTrue(!java.nio.file.Files.exists(q));
        }
    }

    private static List<String> listing(Path dir) throws Exception {
        try (java.util.stream.Stream<Path> s = java.nio.file.Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void whatLlamaCppCannotComputeIsOneLineAndNoFile(@TempDir Path dir) throws Exception {
        Path out = dir.resolve("m.gguf");
        // qwen2 heads that do not span hidden_size (llama.cpp's qwen2 sizes q by n_embd); Llama 3 RoPE scaling outside llama
        LlamaConfig narrow = new LlamaConfig("qwen2", 64, 96, 1, 4, 2, 24, 1e-6, 1e6, null, 300, 128, true, 1, List.of(2), "float32");
        LlamaConfig scaled = new LlamaConfig("qwen3", 64, 96, 1, 4, 2, 16, 1e-6, 1e6, new LlamaConfig.RopeScaling("llama3", 8, 1, 4, 32), 300, 128,
                true, 1, List.of(2), "float32");
        for (LlamaConfig c : List.of(narrow, scaled)) {
            try (LlamaWeights w = TestModels.random(c, 1)) {
                FormatException e = assertThrows(FormatException.class,
                        () -> GgufModelExport.write(w, new GgufModelExport.Options(GgufFileType.F16, "m", null, null, null), out));
                assertEquals(1, e.getMessage().lines().count(), e.getMessage());
                assertTrue(e.getMessage().contains(c == narrow ? "hidden_size" : "llama3"), e.getMessage());
                try (io.lora4j.lora.LoraAdapter a = LlamaCppExportTest.randomAdapter(Backends.cpu(), c, 1, 0.01)) {
                    assertThrows(FormatException.class, () -> GgufAdapterExport.write(a, c, 1.0, "a", out));
                }
            }
        }
        // a quantization rule that needs a type lora4j does not write fails mid-file: nothing is left either
        LlamaConfig big = new LlamaConfig("llama", 32, 64, 80, 4, 2, 8, 1e-5, 1e4, null, 300, 64, true, 1, List.of(2), "float32");
        try (LlamaWeights w = TestModels.random(big, 2)) {
            assertThrows(IllegalArgumentException.class,
                    () -> GgufModelExport.write(w, new GgufModelExport.Options(GgufFileType.Q4_K_M, "m", null, null, null), out));
        }
        assertEquals(List.of(), listing(dir), "no file and no temporary file");
    }
}
