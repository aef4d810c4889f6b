package io.lora4j.model;

import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Synthetic HF models (GQA with an untied lm_head; Llama 3.1 rope_scaling with an explicit
 * head_dim, one KV head and bf16 weights) against scripts/reference/synthetic_reference.py's fp64
 * PyTorch forward pass of the same files.
 */
class SyntheticModelTest {
    /** fp32 forward vs fp64 reference on logits of magnitude ~1-5: absolute 1e-4. */
    static final double LOGIT_ATOL = 1e-4;

    @ParameterizedTest
    @ValueSource(strings = {"synthetic-gqa-untied", "synthetic-llama31-bf16"})
    void forwardAndDecodeMatchTheReference(String name) throws Exception {
        Path dir = Path.of(getClass().getResource("/model/" + name).toURI());
        JsonObject ref = JsonParser.parseString(Files.readString(dir.resolve("reference.json"))).getAsJsonObject();
        JsonArray idsJ = ref.getAsJsonArray("ids");
        int[] ids = new int[idsJ.size()];
        for (int i = 0; i < ids.length; i++) ids[i] = idsJ.get(i).getAsInt();
        JsonArray logitsJ = ref.getAsJsonArray("logits");
        try (LlamaWeights w = ModelLoader.load(dir); LlamaModel m = LlamaModel.create(Backends.cpu(), w);
             Tensor logits = m.forward(new int[][] {ids}); LlamaModel.KvCache cache = m.newCache(ids.length)) {
            int v = m.config().vocabSize();
            float[] l = logits.toFloats();
            for (int t = 0; t < ids.length; t++) {
                JsonArray row = logitsJ.get(t).getAsJsonArray();
                float[] d = m.decode(cache, ids[t]);
                for (int j = 0; j < v; j++) {
                    double e = row.get(j).getAsDouble();
                    assertEquals(e, l[t * v + j], LOGIT_ATOL, name + " forward logit [" + t + "," + j + "]");
                    assertEquals(e, d[j], LOGIT_ATOL, name + " decode logit [" + t + "," + j + "]");
                }
            }
        }
    }
}
