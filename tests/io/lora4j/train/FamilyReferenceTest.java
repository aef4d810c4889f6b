package io.lora4j.train;

import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.io.SafeTensors;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.model.Bnb4bitWriter;
import io.lora4j.model.LlamaModel;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelFamily;
import io.lora4j.model.ModelLoader;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Each non-Llama family on a tiny random-weight model in HF layout against the committed PyTorch
 * reference written from transformers' modeling code (scripts/reference/families_reference.py,
 * torch 1.13 fp32): logits, greedy decoding (full forward and KV cache), six LoRA steps, the PEFT
 * adapter's key names and shapes, and the bnb-4bit form of the model.
 */
class FamilyReferenceTest {
    private static final Path DIR = Path.of("tests/resources/model/families");
    /** fp32 kernels vs torch fp32 over two layers: summation order only. */
    private static final double LOGIT_ATOL = 1e-4;
    private static final Backend CPU = Backends.cpu();

    private static JsonObject expected(String family) throws Exception {
        return JsonParser.parseString(Files.readString(DIR.resolve(family).resolve("expected.json"))).getAsJsonObject();
    }

    private static int[] ints(JsonArray a) {
        int[] v = new int[a.size()];
        for (int i = 0; i < v.length; i++) v[i] = a.get(i).getAsInt();
        return v;
    }

    private static int argmax(float[] v, int from) {
        int best = from;
        for (int i = from; i < v.length; i++) if (v[i] > v[best]) best = i;
        return best - from;
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2", "qwen3", "mistral", "gemma3_text", "gemma2", "phi3"})
    void logitsAndGreedyDecodingMatchTheReference(String family) throws Exception {
        JsonObject exp = expected(family);
        try (LlamaWeights w = ModelLoader.load(DIR.resolve(family).resolve("model")); LlamaModel m = LlamaModel.create(CPU, w)) {
            assertEquals(ModelFamily.ofModelType(family), w.config().architecture().family());
            int[] prompt = ints(exp.getAsJsonArray("prompt"));
            JsonArray ref = exp.getAsJsonArray("logits");
            try (Tensor lg = m.forward(new int[][] {prompt})) {
                float[] got = lg.toFloats();
                assertEquals(ref.size(), got.length);
                double max = 0;
                for (int i = 0; i < got.length; i++) max = Math.max(max, Math.abs(got[i] - ref.get(i).getAsDouble()));
                System.out.printf("%s: max |logit - torch| %.3g%n", family, max);
                assertTrue(max <= LOGIT_ATOL, family + " logits differ from torch by " + max);
            }
            int[] greedy = ints(exp.getAsJsonArray("greedy_ids"));
            int n0 = exp.getAsJsonArray("greedy_prompt").size();
            int vocab = w.config().vocabSize();
            try (LlamaModel.KvCache cache = m.newCache(greedy.length)) {
                float[] next = null;
                for (int i = 0; i < n0; i++) next = m.decode(cache, greedy[i]);
                for (int i = n0; i < greedy.length; i++) {
                    try (Tensor full = m.forward(new int[][] {Arrays.copyOf(greedy, i)})) {
                        float[] f = full.toFloats();
                        double max = 0;
                        for (int v = 0; v < vocab; v++) max = Math.max(max, Math.abs(next[v] - f[(i - 1) * vocab + v]));
                        assertTrue(max <= LOGIT_ATOL, family + ": decode logits at position " + (i - 1) + " differ from the full forward by " + max);
                        assertEquals(greedy[i], argmax(f, (i - 1) * vocab), family + ": full-forward greedy token " + i);
                    }
                    assertEquals(greedy[i], argmax(next, 0), family + ": KV-cache greedy token " + i);
                    next = m.decode(cache, greedy[i]);
                }
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2", "qwen3", "mistral", "gemma3_text", "gemma2", "phi3"})
    void loraStepsMatchTheReferenceAndTheAdapterHasPeftNames(String family, @TempDir Path tmp) throws Exception {
        JsonObject exp = expected(family);
        Path dir = DIR.resolve(family);
        assertEquals(GoldenTrainTest.STEPS, exp.get("steps").getAsInt(), "the reference trains with GoldenTrainTest's schedule");
        assertEquals(GoldenTrainTest.BATCH, exp.get("batch").getAsInt());
        assertEquals(GoldenTrainTest.GA, exp.get("grad_accum").getAsInt());
        assertEquals(GoldenTrainTest.WARMUP, exp.get("warmup").getAsLong());
        assertEquals(GoldenTrainTest.WD, exp.get("weight_decay").getAsDouble());
        assertEquals(GoldenTrainTest.CLIP, exp.get("clip").getAsDouble());
        try (LlamaWeights w = ModelLoader.load(dir.resolve("model"))) {
            GoldenTrainTest.check(CPU, dir, w, family, exp.get("lr").getAsDouble());
            try (LoraAdapter a = LoraAdapter.create(CPU, w.config(), io.lora4j.lora.LoraConfig.defaults().withRank(4).withAlpha(8))) {
                a.save(tmp.resolve("adapter"), "model", false);
            }
        }
        assertEquals(shapes(dir.resolve("init_adapter/adapter_model.safetensors")), shapes(tmp.resolve("adapter/adapter_model.safetensors")),
                family + ": adapter keys and shapes as PEFT writes them");
    }

    private static Map<String, String> shapes(Path file) throws Exception {
        Map<String, String> m = new TreeMap<>();
        for (var e : SafeTensors.open(file).entries().entrySet()) m.put(e.getKey(), Arrays.toString(e.getValue().shape()));
        return m;
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2", "qwen3", "mistral", "gemma3_text", "gemma2"})
    void bnb4bitCheckpointOfTheFamilyLoads(String family, @TempDir Path tmp) throws Exception {
        Path out = tmp.resolve("bnb");
        int[] prompt = ints(expected(family).getAsJsonArray("prompt"));
        try (LlamaWeights w = ModelLoader.load(DIR.resolve(family).resolve("model"))) {
            Bnb4bitWriter.write(w, out, Bnb4bitWriter.Options.defaults());
        }
        try (LlamaWeights q = ModelLoader.load(DIR.resolve(family).resolve("model"), ModelLoader.Options.in4bit());
             LlamaWeights b = ModelLoader.load(out); LlamaModel mq = LlamaModel.create(CPU, q); LlamaModel mb = LlamaModel.create(CPU, b);
             Tensor lq = mq.forward(new int[][] {prompt}); Tensor lb = mb.forward(new int[][] {prompt})) {
            assertTrue(b.quantized());
            assertEquals(q.config().architecture(), b.config().architecture());
            assertArrayEquals(lq.toFloats(), lb.toFloats(), family + ": the bnb-4bit checkpoint computes what quantizing on load does");
        }
    }

    /**
     * Phi-3's fused qkv_proj/gate_up_proj: written back fused (16-bit output computes the same
     * logits), quantized on load (QLoRA), and refused as bnb-4bit output, naming why.
     */
    @org.junit.jupiter.api.Test
    void phi3FusedWeightsRoundTripAndQuantizeOnLoad(@TempDir Path tmp) throws Exception {
        Path dir = DIR.resolve("phi3");
        int[] prompt = ints(expected("phi3").getAsJsonArray("prompt"));
        try (LlamaWeights w = ModelLoader.load(dir.resolve("model"))) {
            io.lora4j.model.HfWriter.write(w, tmp.resolve("f32"), io.lora4j.model.HfWriter.Options.of(io.lora4j.tensor.DType.F32));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Bnb4bitWriter.write(w, tmp.resolve("bnb"), Bnb4bitWriter.Options.defaults()));
            assertTrue(e.getMessage().contains("qkv_proj"), e.getMessage());
        }
        assertTrue(SafeTensors.open(tmp.resolve("f32/model.safetensors")).entries().containsKey("model.layers.0.self_attn.qkv_proj.weight"));
        assertFalse(SafeTensors.open(tmp.resolve("f32/model.safetensors")).entries().containsKey("model.layers.0.self_attn.q_proj.weight"));
        try (LlamaWeights q = ModelLoader.load(dir.resolve("model"), ModelLoader.Options.in4bit())) {
            assertTrue(q.quantized());
            // the NF4 projections dequantized and written fused: the dense model of the same numbers
            io.lora4j.model.HfWriter.write(q, tmp.resolve("dq"), io.lora4j.model.HfWriter.Options.of(io.lora4j.tensor.DType.F32));
        }
        try (LlamaWeights a = ModelLoader.load(dir.resolve("model")); LlamaWeights b = ModelLoader.load(tmp.resolve("f32"));
             LlamaWeights q = ModelLoader.load(dir.resolve("model"), ModelLoader.Options.in4bit());
             LlamaWeights dq = ModelLoader.load(tmp.resolve("dq"));
             LlamaModel ma = LlamaModel.create(CPU, a); LlamaModel mb = LlamaModel.create(CPU, b); LlamaModel mq = LlamaModel.create(CPU, q);
             LlamaModel mdq = LlamaModel.create(CPU, dq);
             Tensor la = ma.forward(new int[][] {prompt}); Tensor lb = mb.forward(new int[][] {prompt}); Tensor lq = mq.forward(new int[][] {prompt});
             Tensor ldq = mdq.forward(new int[][] {prompt})) {
            assertArrayEquals(la.toFloats(), lb.toFloats(), "the fused rows are written back in their order");
            float[] fq = lq.toFloats(), fdq = ldq.toFloats();
            double max = 0;
            for (int i = 0; i < fq.length; i++) max = Math.max(max, Math.abs(fq[i] - fdq[i]));
            assertTrue(max <= LOGIT_ATOL, "QLoRA's NF4 model computes its dequantized weights' logits: " + max);
        }
    }

    @org.junit.jupiter.api.Test
    void trainingOverRowsLongerThanTheSlidingWindowIsRefusedByName() throws Exception {
        Path dir = DIR.resolve("mistral");
        try (LlamaWeights w = ModelLoader.load(dir.resolve("model"));
             LoraAdapter a = LoraAdapter.load(dir.resolve("init_adapter"), CPU, w.config()); LoraTrainingModel m = new LoraTrainingModel(CPU, w, a)) {
            int window = w.config().architecture().slidingWindow();
            int[] ids = new int[window + 1];
            Arrays.fill(ids, 3);
            Batch b = Batch.of(List.of(Example.allTokens(ids)), SimpleDataset.PAD_ID);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> m.forwardBackward(b, 1f, 0));
            assertTrue(e.getMessage().contains("sliding_window of " + window), e.getMessage());
            assertTrue(Double.isFinite(m.lossSum(b)), "evaluation honours the window instead");
        }
    }

    @org.junit.jupiter.api.Test
    void biasTrainingOnQwen2IsRefused() throws Exception {
        try (LlamaWeights w = ModelLoader.load(DIR.resolve("qwen2").resolve("model"))) {
            io.lora4j.lora.LoraConfig d = io.lora4j.lora.LoraConfig.defaults();
            io.lora4j.lora.LoraConfig all = new io.lora4j.lora.LoraConfig(d.r(), d.loraAlpha(), d.loraDropout(), io.lora4j.lora.LoraConfig.Bias.ALL,
                    d.targetModules(), d.useRslora(), d.init(), d.loftqIter(), d.randomState());
            try (LoraAdapter a = LoraAdapter.create(CPU, w.config(), all)) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new LoraTrainingModel(CPU, w, a));
                assertTrue(e.getMessage().contains("bias=all") && e.getMessage().contains("q/k/v biases"), e.getMessage());
            }
        }
    }
}
