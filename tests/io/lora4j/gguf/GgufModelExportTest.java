package io.lora4j.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
}
