package io.lora4j.train;

import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/**
 * The vocabulary-sliced lm_head + cross-entropy at real vocabulary sizes (Qwen3's 151,936 and
 * Gemma 3's 262,144, with and without Gemma 2's final-logit soft cap of 30) against PyTorch in
 * float64 (scripts/reference/ce_vocab_reference.py): a few rows whose targets are real token ids
 * of each tokenizer, run in vocabulary slices of 30,000 columns (the last one partial).
 */
class ChunkedCrossEntropyVocabTest {
    private static final Backend CPU = Backends.cpu();
    private static final long SLICE = 30000;

    @Test
    void realVocabulariesInSlicesMatchTorch() throws Exception {
        JsonObject ref = JsonParser.parseString(Files.readString(Path.of("tests/resources/train/ce_vocab_reference.json")))
                .getAsJsonObject();
        int cases = 0;
        for (JsonElement e : ref.getAsJsonArray("cases")) {
            JsonObject c = e.getAsJsonObject();
            String name = c.get("name").getAsString();
            int vocab = c.get("vocab").getAsInt(), d = c.get("dim").getAsInt();
            int[] labels = ints(c.getAsJsonArray("labels"));
            int n = labels.length;
            assertTrue(vocab > 4 * SLICE && vocab % SLICE != 0, name + ": several slices, the last one partial");
            float[] h = new float[n * d], w = new float[vocab * d];
            double ah = c.get("a_h").getAsDouble(), aw = c.get("a_w").getAsDouble();
            for (int i = 0; i < n; i++)
                for (int j = 0; j < d; j++) h[i * d + j] = (float) (ah * Math.sin(1.7 * i + 0.9 * j + 0.3));
            for (int v = 0; v < vocab; v++)
                for (int j = 0; j < d; j++)
                    w[v * d + j] = (float) (aw * Math.sin(0.37 * v + 1.3 * j) + 0.5 * aw * Math.cos(0.011 * v * (j + 1)));
            try (Tensor ht = Tensor.ofFloats(h, n, d); Tensor wt = Tensor.ofFloats(w, vocab, d);
                 Tensor lt = Tensor.allocate(DType.I32, MemoryCategory.WORKSPACE, n);
                 Tensor dh = CPU.allocate(DType.F32, MemoryCategory.WORKSPACE, n, d)) {
                lt.buffer().asIntBuffer().put(labels);
                double loss = ChunkedCrossEntropy.lossAndGradient(CPU, ht, wt, lt, labels, 48, SLICE,
                        (float) c.get("loss_scale").getAsDouble(), (float) c.get("softcap").getAsDouble(), dh);
                double want = c.get("loss_sum").getAsDouble();
                assertEquals(want, loss, 2e-6 * Math.abs(want), name + ": Σ CE");
                float[] got = dh.toFloats();
                JsonArray refDh = c.getAsJsonArray("dh");
                double max = 0;
                for (int i = 0; i < got.length; i++) max = Math.max(max, Math.abs(got[i] - refDh.get(i).getAsDouble()));
                System.out.printf("%s: V %d |Σ CE - torch| %.3g, max |dL/dh - torch| %.3g%n", name, vocab, Math.abs(loss - want), max);
                assertTrue(max <= 1e-5, name + ": dL/dh differs from torch by " + max);
            }
            cases++;
        }
        assertEquals(3, cases);
    }

    private static int[] ints(JsonArray a) {
        int[] v = new int[a.size()];
        for (int i = 0; i < v.length; i++) v[i] = a.get(i).getAsInt();
        return v;
    }
}
