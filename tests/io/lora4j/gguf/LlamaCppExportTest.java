package io.lora4j.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.lora.AdaptedModel;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.Assets;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaModel;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.model.Perplexity;
import io.lora4j.model.Projection;
import io.lora4j.model.TestModels;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.Tensor;
import io.lora4j.tokenizer.Tokenizer;
import io.lora4j.tokenizer.Tokenizers;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * lora4j's GGUF exports read by the real consumer, llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU
 * build, scripts/llamacpp/check.mjs), and by llama.cpp's own quantizer:
 * <ul>
 * <li>llama.cpp's mean token loss on held-out text equals lora4j's: f32/f16/bf16 within 2e-4 relative
 *     of lora4j on the same (rounded) weights; q8_0 within 1 % and q4_K_M within 5 % of lora4j's fp32 model;</li>
 * <li>a GGUF LoRA adapter applied by llama.cpp to the exported base gives lora4j's adapted loss within 2e-4;
 *     the merged export likewise; greedy text matches where the logit margins are clear;</li>
 * <li>GQA, an untied head, Llama 3 RoPE scaling (rope_freqs) and head_dim != hidden/heads (key_length);</li>
 * <li>the q8_0, q4_0 and q4_K_M files have, tensor by tensor, the types and bytes llama-quantize
 *     (llama_model_quantize) writes from the f32 export;</li>
 * <li>llama.cpp's tokenizer, built from our metadata, encodes like lora4j for Llama 2 and Llama 3.</li>
 * </ul>
 * F32 KV cache throughout (llama.cpp's default F16 cache moves losses by ~1e-4).
 */
class LlamaCppExportTest {
    /** f32/f16/bf16 and adapters: llama.cpp vs lora4j on the same weights (the bound). */
    static final double SAME_WEIGHTS_RTOL = 2e-4;
    /** q8_0 vs lora4j's fp32 model. */
    static final double Q8_RTOL = 0.01;
    /** q4_K_M vs lora4j's fp32 model. */
    static final double Q4KM_RTOL = 0.05;
    /** A greedy step is compared only where llama.cpp's top-2 log-probability margin exceeds this. */
    static final double CLEAR_MARGIN = 0.05;

    @TempDir static Path dir;
    static Backend cpu;
    static LlamaWeights stories;
    static Tokenizer tok;
    static Path tokPath;
    static List<int[]> heldOut;

    @BeforeAll
    static void setUp() throws Exception {
        String why = LlamaCpp.unavailable();
        assumeTrue(why == null, why);
        cpu = Backends.cpu();
        stories = ModelLoader.load(Assets.require("stories15M.bin"));
        tokPath = Assets.require("tokenizer.model");
        tok = Tokenizers.load(tokPath);
        heldOut = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of("tests/resources/gguf/heldout.txt"), StandardCharsets.UTF_8))
            if (!line.isBlank()) heldOut.add(tok.encode(line, true, true));
    }

    @AfterAll
    static void tearDown() {
        if (stories != null) stories.close();
    }

    private static JsonObject lossJob(Path model, Path lora, List<int[]> rows, int[] greedyPrompt, int greedyN) {
        JsonObject j = new JsonObject();
        j.addProperty("kind", "loss");
        j.addProperty("model", model.toString());
        if (lora != null) j.addProperty("lora", lora.toString());
        j.addProperty("kv", "F32");
        JsonArray rs = new JsonArray();
        for (int[] r : rows) rs.add(ints(r));
        j.add("rows", rs);
        if (greedyPrompt != null) {
            JsonObject g = new JsonObject();
            g.add("prompt", ints(greedyPrompt));
            g.addProperty("n", greedyN);
            j.add("greedy", g);
        }
        return j;
    }

    /** Seeded rows of BOS (1) then ids in [3, vocab). */
    private static List<int[]> randomRows(long seed, int count, int length, int vocab) {
        return randomRows(seed, count, length, vocab, 1);
    }

    /** Seeded rows of {@code bos} then ids in [3, vocab). */
    private static List<int[]> randomRows(long seed, int count, int length, int vocab, int bos) {
        Random r = new Random(seed);
        List<int[]> rows = new ArrayList<>();
        for (int k = 0; k < count; k++) {
            int[] ids = new int[length];
            ids[0] = bos;
            for (int i = 1; i < length; i++) ids[i] = 3 + r.nextInt(vocab - 3);
            rows.add(ids);
        }
        return rows;
    }

    private static JsonArray ints(int[] v) {
        JsonArray a = new JsonArray();
        for (int x : v) a.add(x);
        return a;
    }

    private static JsonArray run(JsonObject... jobs) throws Exception {
        JsonObject spec = new JsonObject();
        spec.addProperty("threads", 1);
        JsonArray a = new JsonArray();
        for (JsonObject j : jobs) a.add(j);
        spec.add("jobs", a);
        return LlamaCpp.check(spec, dir).getAsJsonArray("results");
    }

    /** llama.cpp's mean token loss of a loss job's result. */
    private static double mean(JsonElement result) {
        double sum = 0;
        long n = 0;
        for (JsonElement r : result.getAsJsonObject().getAsJsonArray("rows")) {
            sum += r.getAsJsonObject().get("lossSum").getAsDouble();
            n += r.getAsJsonObject().get("tokens").getAsLong();
        }
        return sum / n;
    }

    private static double lora4j(LlamaWeights w, List<int[]> rows) {
        try (LlamaModel m = LlamaModel.create(cpu, w)) {
            return Perplexity.evaluate(m, rows).meanLoss();
        }
    }

    private static double lora4jImported(Path gguf, LlamaConfig c, List<int[]> rows) throws Exception {
        try (GgufFile f = GgufFile.open(gguf); LlamaWeights w = GgufModelImport.load(f, c)) {
            return lora4j(w, rows);
        }
    }

    private static double rel(double a, double b) {
        return Math.abs(a - b) / Math.abs(b);
    }

    private static Path export(LlamaWeights w, GgufFileType t, String name, Tokenizer tk, Path tp) throws Exception {
        Path f = dir.resolve(name + "-" + t.key + ".gguf");
        if (!Files.exists(f)) GgufModelExport.write(w, new GgufModelExport.Options(t, name, tk, tp, null), f);
        return f;
    }

    /** lora4j's greedy continuation (full forward each step). */
    private static int[] greedy(LlamaWeights w, int[] prompt, int n) {
        int[] ids = java.util.Arrays.copyOf(prompt, prompt.length + n);
        try (LlamaModel m = LlamaModel.create(cpu, w)) {
            for (int k = 0; k < n; k++) {
                int len = prompt.length + k;
                try (Tensor logits = m.forward(new int[][] {java.util.Arrays.copyOf(ids, len)})) {
                    float[] l = logits.toFloats();
                    int v = w.config().vocabSize(), best = 0;
                    for (int i = 1; i < v; i++) if (l[(len - 1) * v + i] > l[(len - 1) * v + best]) best = i;
                    ids[len] = best;
                }
            }
        }
        return java.util.Arrays.copyOfRange(ids, prompt.length, ids.length);
    }

    /**
     * Compares greedy ids where llama.cpp's margin is clear, up to the first step where it is not and
     * the two chose differently (after that the contexts differ); returns how many clear steps were compared.
     */
    private static int compareGreedy(int[] want, JsonObject greedy) {
        JsonArray ids = greedy.getAsJsonArray("ids"), margins = greedy.getAsJsonArray("logitMargins");
        int compared = 0;
        for (int k = 0; k < want.length; k++) {
            if (margins.get(k).getAsDouble() > CLEAR_MARGIN) {
                assertEquals(want[k], ids.get(k).getAsInt(), "greedy token " + k);
                compared++;
            } else if (want[k] != ids.get(k).getAsInt()) {
                break;
            }
        }
        return compared;
    }

    @Test
    void stories15mLossInEveryTypeMatchesLora4j() throws Exception {
        GgufFileType[] types = {GgufFileType.F32, GgufFileType.F16, GgufFileType.BF16, GgufFileType.Q8_0, GgufFileType.Q4_0, GgufFileType.Q4_K_M};
        List<JsonObject> jobs = new ArrayList<>();
        int[] prompt = {1, 9038, 2501, 263, 931};
        for (GgufFileType t : types)
            jobs.add(lossJob(export(stories, t, "stories15M", tok, tokPath), null, heldOut, t == GgufFileType.F16 ? prompt : null, 24));
        JsonArray res = run(jobs.toArray(new JsonObject[0]));
        double fp32 = lora4j(stories, heldOut);
        StringBuilder table = new StringBuilder(String.format(Locale.ROOT, "stories15M, %d held-out rows; lora4j fp32 loss %.6f%n", heldOut.size(), fp32));
        table.append("type    llama.cpp   lora4j(same weights)  rel       vs lora4j fp32%n".formatted());
        for (int i = 0; i < types.length; i++) {
            double llama = mean(res.get(i)), same = lora4jImported(export(stories, types[i], "stories15M", tok, tokPath), stories.config(), heldOut);
            table.append(String.format(Locale.ROOT, "%-7s %.6f    %.6f              %.2e  %+.3f %%%n", types[i].key, llama, same, rel(llama, same),
                    100 * (llama - fp32) / fp32));
            switch (types[i]) {
                case F32: case F16: case BF16:
                    assertTrue(rel(llama, same) <= SAME_WEIGHTS_RTOL, types[i] + ": llama.cpp " + llama + " vs lora4j " + same);
                    break;
                case Q8_0: assertTrue(rel(llama, fp32) <= Q8_RTOL, "q8_0: " + llama + " vs " + fp32); break;
                case Q4_K_M: assertTrue(rel(llama, fp32) <= Q4KM_RTOL, "q4_K_M: " + llama + " vs " + fp32); break;
                default: break;
            }
        }
        System.out.print(table);
        // the golden greedy continuation of DESIGN §5 ("Once upon a time, there was a little girl named Lily. ...")
        int[] golden = {29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889, 2296, 18012, 304, 1708, 5377, 297, 278, 6575, 845, 457, 29889,
            3118, 2462, 29892};
        int compared = compareGreedy(golden, res.get(1).getAsJsonObject().getAsJsonObject("greedy"));
        assertTrue(compared >= 12, "only " + compared + " greedy tokens had a clear margin");
    }

    @Test
    void quantizedFilesEqualLlamaQuantizeOutput() throws Exception {
        // stories15M (6 layers, rows of 288: q4_K/q6_K fall back to q5_0/q8_0) and a 16-layer GQA model with rows of
        // 256 (q4_K and q6_K themselves; use_more_bits picks layers 0, 1, 4, 7, 10, 13, 14, 15), once as llama and once as
        // a tied qwen2 (its 1-D q/k/v biases stay f32, its tied embedding takes the output's type)
        LlamaConfig c16 = new LlamaConfig("llama", 256, 512, 16, 4, 2, 64, 1e-5, 10000.0, null, 300, 256, false, 1, List.of(2), "float32");
        LlamaConfig q16 = new LlamaConfig("qwen2", 256, 512, 16, 4, 2, 64, 1e-6, 1e6, null, 300, 256, true, 1, List.of(2), "float32");
        try (LlamaWeights w16 = TestModels.random(c16, 11); LlamaWeights qw16 = TestModels.random(q16, 12)) {
            for (Object[] m : new Object[][] {{stories, "stories15M", tok, tokPath}, {w16, "gqa16", null, null}, {qw16, "qwen2-16", null, null}}) {
                LlamaWeights w = (LlamaWeights) m[0];
                Path f32 = export(w, GgufFileType.F32, (String) m[1], (Tokenizer) m[2], (Path) m[3]);
                for (GgufFileType t : new GgufFileType[] {GgufFileType.Q8_0, GgufFileType.Q4_0, GgufFileType.Q4_K_M}) {
                    Path ours = export(w, t, (String) m[1], (Tokenizer) m[2], (Path) m[3]);
                    Path ref = dir.resolve(m[1] + "-" + t.key + "-llama-quantize.gguf");
                    LlamaCpp.oracle("quantize", Integer.toString(t.ftype), f32.toString(), ref.toString());
                    try (GgufFile a = GgufFile.open(ours); GgufFile b = GgufFile.open(ref)) {
                        assertEquals(b.tensors().keySet(), a.tensors().keySet());
                        for (GgufFile.TensorInfo tb : b.tensors().values()) {
                            GgufFile.TensorInfo ta = a.tensor(tb.name());
                            assertEquals(tb.type(), ta.type(), m[1] + " " + t.key + " " + tb.name());
                            ByteBuffer da = a.data(ta), db = b.data(tb);
                            assertTrue(da.equals(db), m[1] + " " + t.key + " " + tb.name() + ": bytes differ from llama-quantize's");
                        }
                    }
                }
            }
        }
    }

    /** An rsLoRA adapter (r 8, alpha 16: s = 16/sqrt(8)) on all seven projections with seeded nonzero A and B (B of std {@code bStd}). */
    static final LoraConfig RSLORA = new LoraConfig(8, 16, 0, LoraConfig.Bias.NONE, EnumSet.allOf(Projection.class), true, LoraConfig.Init.KAIMING, 1,
            LoraConfig.DEFAULT_SEED);

    static LoraAdapter randomAdapter(Backend b, LlamaConfig c, long seed, double bStd) {
        List<LoraAdapter.Slot> slots = LoraAdapter.layout(c, RSLORA);
        LoraAdapter.Slot last = slots.get(slots.size() - 1);
        float[] v = new float[(int) (last.offsetB() + last.out() * RSLORA.r())];
        Random r = new Random(seed);
        for (LoraAdapter.Slot s : slots) {
            for (int i = 0; i < RSLORA.r() * s.in(); i++) v[(int) s.offsetA() + i] = (float) ((r.nextDouble() * 2 - 1) / Math.sqrt(s.in()));
            for (int i = 0; i < s.out() * RSLORA.r(); i++) v[(int) s.offsetB() + i] = (float) (r.nextGaussian() * bStd);
        }
        return LoraAdapter.of(b, c, RSLORA, v);
    }

    @Test
    void adapterAndMergedExportsMatchLora4jEvalAdapter() throws Exception {
        Path gguf = dir.resolve("adapter.gguf");
        double adapted;
        int[] prompt = {1, 9038, 2501, 263, 931};
        int[] lora4jGreedy;
        Path merged;
        try (LoraAdapter a = randomAdapter(cpu, stories.config(), 5, 0.002); AdaptedModel am = AdaptedModel.merge(cpu, stories, a, 1.0)) {
            GgufAdapterExport.write(a, stories.config(), 1.0, "adapter", gguf);
            adapted = lora4j(am.weights(), heldOut);
            lora4jGreedy = greedy(am.weights(), prompt, 16);
            merged = dir.resolve("merged-f16.gguf");
            GgufModelExport.write(am.weights(), new GgufModelExport.Options(GgufFileType.F16, "merged", tok, tokPath, null), merged);
        }
        try (GgufFile f = GgufFile.open(gguf)) {
            assertEquals("adapter", f.get("general.type").asString());
            assertEquals("lora", f.get("adapter.type").asString());
            assertEquals(16 * Math.sqrt(8), f.get("adapter.lora.alpha").asDouble(), 1e-4, "rsLoRA folded in: alpha/r = 16/sqrt(8)");
        }
        Path base = export(stories, GgufFileType.F32, "stories15M", tok, tokPath);
        JsonArray res = run(lossJob(base, gguf, heldOut, prompt, 16), lossJob(merged, null, heldOut, null, 0));
        double withLora = mean(res.get(0)), mergedLoss = mean(res.get(1));
        double mergedSame = lora4jImported(merged, stories.config(), heldOut), baseLoss = lora4j(stories, heldOut);
        System.out.printf(Locale.ROOT, "adapter: lora4j eval --adapter %.6f, llama.cpp base f32 + GGUF adapter %.6f (rel %.2e); merged f16: llama.cpp %.6f, "
                + "lora4j same weights %.6f (rel %.2e); base %.6f%n", adapted, withLora, rel(withLora, adapted), mergedLoss, mergedSame, rel(mergedLoss, mergedSame), baseLoss);
        assertTrue(rel(adapted, baseLoss) > 0.01, "the adapter must change the loss for this test to mean anything");
        assertTrue(rel(withLora, adapted) <= SAME_WEIGHTS_RTOL, "llama.cpp with the adapter " + withLora + " vs lora4j " + adapted);
        assertTrue(rel(mergedLoss, mergedSame) <= SAME_WEIGHTS_RTOL, "merged: " + mergedLoss + " vs " + mergedSame);
        int compared = compareGreedy(lora4jGreedy, res.get(0).getAsJsonObject().getAsJsonObject("greedy"));
        assertTrue(compared >= 8, "only " + compared + " greedy tokens had a clear margin");
    }

    @Test
    void gqaUntiedLlama3RopeAndKeyLength() throws Exception {
        // 4 heads of 24 over hidden 64 (key_length), 2 KV heads, untied head, Llama 3 RoPE scaling (rope_freqs.weight)
        LlamaConfig c = new LlamaConfig("llama", 64, 96, 2, 4, 2, 24, 1e-5, 500000.0,
                new LlamaConfig.RopeScaling("llama3", 8.0, 1.0, 4.0, 32), 300, 256, false, 1, List.of(2), "float32");
        List<int[]> rows = randomRows(9, 3, 120, 300);
        try (LlamaWeights w = TestModels.random(c, 21)) {
            Path f = export(w, GgufFileType.F32, "gqa-rope", null, null);
            try (GgufFile g = GgufFile.open(f)) {
                assertEquals(24, g.get("llama.attention.key_length").asLong());
                assertEquals(12, g.tensor("rope_freqs.weight").elements());
            }
            double llama = mean(run(lossJob(f, null, rows, null, 0)).get(0)), ours = lora4j(w, rows);
            System.out.printf(Locale.ROOT, "gqa/untied/llama3-rope/key_length: llama.cpp %.6f, lora4j %.6f (rel %.2e)%n", llama, ours, rel(llama, ours));
            assertTrue(rel(llama, ours) <= SAME_WEIGHTS_RTOL, llama + " vs " + ours);
        }
    }

    /**
     * Each further family in llama.cpp's own architecture for it, on the config of its tiny HF-layout
     * model (tests/resources/model/families, whose lora4j forward FamilyReferenceTest checks against
     * transformers: Qwen2's biases, Qwen3's q/k norms, Gemma 3's (1 + w) and four norms, GeGLU,
     * embedding scale, query_pre_attn_scalar 24 != head_dim 16, linear RoPE scaling on the global
     * layer, sliding window 5 with the local RoPE base on 2 of 3 layers; Gemma 2's attention soft-cap 1, final
     * soft-cap, query_pre_attn_scalar folded into attn_q, window 5 on alternate layers) with 300 ids instead of 64
     * (the placeholder vocabulary then holds all 256 byte tokens, which llama.cpp's tokenizer needs at
     * load) and seeded random weights: base exports in every type, a GGUF adapter on the f32 base, the
     * merged export. Random ids, 3 rows x 96 tokens.
     */
    /** Weights of this std make attention and next-token distributions peaked (losses well below ln 300 = 5.70), so each tensor matters. */
    static final float WEIGHT_STD = 0.15f;

    @ParameterizedTest
    @ValueSource(strings = {"qwen2", "qwen3", "gemma3_text", "gemma2", "phi3"})
    void familyExportsMatchLora4j(String family) throws Exception {
        // Phi-3's q4_K_M would need q5_K for attn_qkv (GgufModelExportTest checks the refusal): q4_0 instead
        GgufFileType[] types = {GgufFileType.F32, GgufFileType.F16, GgufFileType.BF16, GgufFileType.Q8_0,
                family.equals("phi3") ? GgufFileType.Q4_0 : GgufFileType.Q4_K_M};
        // llama.cpp sets token attributes of a model whose general.name holds "phi3" by looking up Phi-3's own special
        // tokens, which the placeholder vocabulary lacks (a real Phi-3 tokenizer has them): the tiny model is named otherwise
        String name = family.equals("phi3") ? "tiny-phi" : family;
        Path cfg = Path.of("tests/resources/model/families", family, "model", LlamaConfig.FILE);
        JsonObject json = JsonParser.parseString(Files.readString(cfg)).getAsJsonObject();
        json.addProperty("vocab_size", 300);
        // Gemma 2's final cap of 2 squeezes the logits until no greedy step has a clear margin; 5 still caps them
        if (family.equals("gemma2")) json.addProperty("final_logit_softcapping", 5.0);
        try (LlamaWeights w = TestModels.random(LlamaConfig.fromJson(json, cfg), 23, WEIGHT_STD)) {
            LlamaConfig c = w.config();
            List<int[]> rows = randomRows(17, 3, 96, c.vocabSize(), c.bosTokenId());
            int[] prompt = java.util.Arrays.copyOf(rows.get(0), 6);
            List<JsonObject> jobs = new ArrayList<>();
            for (GgufFileType t : types) jobs.add(lossJob(export(w, t, name, null, null), null, rows, null, 0));
            Path adapter = dir.resolve(family + "-adapter.gguf"), merged = dir.resolve(family + "-merged-f16.gguf");
            double adapted;
            int[] lora4jGreedy;
            try (LoraAdapter a = randomAdapter(cpu, c, 7, 0.3); AdaptedModel am = AdaptedModel.merge(cpu, w, a, 1.0)) {
                GgufAdapterExport.write(a, c, 1.0, family + "-adapter", adapter);
                adapted = lora4j(am.weights(), rows);
                lora4jGreedy = greedy(am.weights(), prompt, 12);
                GgufModelExport.write(am.weights(), new GgufModelExport.Options(GgufFileType.F16, "merged", null, null, null), merged);
            }
            jobs.add(lossJob(export(w, GgufFileType.F32, name, null, null), adapter, rows, prompt, 12));
            jobs.add(lossJob(merged, null, rows, null, 0));
            JsonArray res = run(jobs.toArray(new JsonObject[0]));

            double fp32 = lora4j(w, rows);
            StringBuilder table = new StringBuilder(String.format(Locale.ROOT, "%s (llama.cpp arch %s), %d rows of %d; lora4j fp32 loss %.6f%n", family,
                    GgufArchitecture.of(c.modelType()).orElseThrow().name(), rows.size(), rows.get(0).length, fp32));
            for (int i = 0; i < types.length; i++) {
                double llama = mean(res.get(i)), same = lora4jImported(export(w, types[i], name, null, null), c, rows);
                table.append(String.format(Locale.ROOT, "  %-7s llama.cpp %.6f  lora4j same weights %.6f  rel %.2e  vs lora4j fp32 %+.3f %%%n", types[i].key, llama,
                        same, rel(llama, same), 100 * (llama - fp32) / fp32));
                switch (types[i]) {
                    case F32:
                        // against the model itself, not its import: a value the export and the import get wrong alike shows here
                        assertTrue(rel(llama, fp32) <= SAME_WEIGHTS_RTOL, family + " f32: llama.cpp " + llama + " vs lora4j " + fp32);
                        // fall through
                    case F16: case BF16:
                        assertTrue(rel(llama, same) <= SAME_WEIGHTS_RTOL, family + " " + types[i] + ": llama.cpp " + llama + " vs lora4j " + same);
                        break;
                    case Q8_0: assertTrue(rel(llama, fp32) <= Q8_RTOL, family + " q8_0: " + llama + " vs " + fp32); break;
                    case Q4_0: assertTrue(rel(llama, fp32) <= Q4KM_RTOL, family + " q4_0: " + llama + " vs " + fp32); break;
                    case Q4_K_M: assertTrue(rel(llama, fp32) <= Q4KM_RTOL, family + " q4_K_M: " + llama + " vs " + fp32); break;
                    default: break;
                }
            }
            double withLora = mean(res.get(types.length)), mergedLoss = mean(res.get(types.length + 1));
            double mergedSame = lora4jImported(merged, c, rows);
            table.append(String.format(Locale.ROOT, "  adapter: lora4j eval --adapter %.6f, llama.cpp f32 base + GGUF adapter %.6f (rel %.2e); merged f16: "
                    + "llama.cpp %.6f, lora4j same weights %.6f (rel %.2e)%n", adapted, withLora, rel(withLora, adapted), mergedLoss, mergedSame,
                    rel(mergedLoss, mergedSame)));
            System.out.print(table);
            // an adapter llama.cpp ignored, or applied to the wrong rows, would miss the bound by 10x at least
            assertTrue(rel(adapted, fp32) > 10 * SAME_WEIGHTS_RTOL, "the adapter must change the loss for this test to mean anything");
            assertTrue(rel(withLora, adapted) <= SAME_WEIGHTS_RTOL, family + ": llama.cpp with the adapter " + withLora + " vs lora4j " + adapted);
            assertTrue(rel(mergedLoss, mergedSame) <= SAME_WEIGHTS_RTOL, family + " merged: " + mergedLoss + " vs " + mergedSame);
            int compared = compareGreedy(lora4jGreedy, res.get(types.length).getAsJsonObject().getAsJsonObject("greedy"));
            assertTrue(compared >= 4, "only " + compared + " greedy tokens had a clear margin");
        }
    }

    @Test
    void hfDirectoryExportedByTheCli() throws Exception {
        // the synthetic HF directory (GQA, untied, no tokenizer: placeholder tokens) through `lora4j export`, in f16
        Path model = Path.of("tests/resources/model/synthetic-gqa-untied"), f = dir.resolve("cli-gqa-f16.gguf");
        java.io.ByteArrayOutputStream sink = new java.io.ByteArrayOutputStream();
        java.io.PrintStream ps = new java.io.PrintStream(sink, true, StandardCharsets.UTF_8);
        assertEquals(0, io.lora4j.cli.Main.run(new String[] {"export", "--model", model.toString(), "--out", f.toString(), "--quant", "f16"}, ps, ps,
                java.util.Map.of()), sink.toString(StandardCharsets.UTF_8));
        List<int[]> rows = randomRows(13, 2, 100, 300);
        try (LlamaWeights w = ModelLoader.load(model)) {
            double llama = mean(run(lossJob(f, null, rows, null, 0)).get(0)), same = lora4jImported(f, w.config(), rows);
            System.out.printf(Locale.ROOT, "synthetic HF dir via the CLI, f16: llama.cpp %.6f, lora4j same weights %.6f (rel %.2e), fp32 %.6f%n", llama, same,
                    rel(llama, same), lora4j(w, rows));
            assertTrue(rel(llama, same) <= SAME_WEIGHTS_RTOL, llama + " vs " + same);
        }
    }

    @Test
    void llamaCppTokenizesLikeLora4j() throws Exception {
        // Llama 2 (SentencePiece), Llama 3 (byte-level, llama-bpe) on llama models; Qwen3's tokenizer (byte-level, qwen2
        // pre-tokenizer) on a qwen2 model of Qwen's 151 936 rows, whose 267 ids past the tokenizer's are [PAD] tokens
        String[] names = {"Llama 2", "Llama 3", "Qwen3"};
        String[] vectors = {"tests/resources/tokenizer/llama2_sentencepiece_vectors.json", "tests/resources/tokenizer/llama3_vectors.json",
            "tests/resources/tokenizer/qwen3_vectors.json"};
        Path[] sources = {tokPath, Assets.require("llama3"), Assets.require("qwen3/tokenizer.json")};
        String[] types = {"llama", "llama", "qwen2"};
        int[] rows = {-1, -1, 151936};
        JsonObject[] jobs = new JsonObject[names.length];
        List<List<String>> texts = new ArrayList<>();
        List<Tokenizer> toks = new ArrayList<>();
        for (int k = 0; k < names.length; k++) {
            Tokenizer t = Tokenizers.load(sources[k]);
            toks.add(t);
            List<String> ts = new ArrayList<>();
            for (JsonElement e : JsonParser.parseString(Files.readString(Path.of(vectors[k]))).getAsJsonArray())
                ts.add(e.getAsJsonObject().get("text").getAsString());
            texts.add(ts);
            LlamaConfig c = new LlamaConfig(types[k], 16, 32, 1, 2, 2, 8, 1e-5, 10000.0, null, rows[k] > 0 ? rows[k] : t.vocabSize(), 64, true,
                    t.bosId() >= 0 ? t.bosId() : null, List.of(t.eosId()), "float32");
            Path f;
            try (LlamaWeights w = TestModels.random(c, 3)) {
                f = export(w, GgufFileType.F16, "tok" + k, t, sources[k]);
            }
            if (rows[k] > 0) {
                try (GgufFile g = GgufFile.open(f)) {
                    assertEquals("qwen2", g.get("tokenizer.ggml.pre").asString());
                    assertEquals(rows[k], g.tensor("token_embd.weight").shape()[0]);
                }
            }
            jobs[k] = new JsonObject();
            jobs[k].addProperty("kind", "tokenize");
            jobs[k].addProperty("model", f.toString());
            // GGUF has no key for Qwen's NFC normalizer and llama.cpp does not apply it: it gets the texts in NFC
            // (lora4j normalizes, so its ids for a text and for its NFC form are the same)
            JsonArray a = new JsonArray();
            for (String text : ts) a.add(rows[k] > 0 ? java.text.Normalizer.normalize(text, java.text.Normalizer.Form.NFC) : text);
            jobs[k].add("texts", a);
        }
        JsonArray res = run(jobs);
        for (int k = 0; k < names.length; k++) {
            JsonArray ids = res.get(k).getAsJsonObject().getAsJsonArray("ids");
            for (int i = 0; i < texts.get(k).size(); i++) {
                JsonArray got = ids.get(i).getAsJsonArray();
                int[] g = new int[got.size()];
                for (int j = 0; j < g.length; j++) g[j] = got.get(j).getAsInt();
                assertArrayEquals(toks.get(k).encode(texts.get(k).get(i), false, false), g, names[k] + " text " + i + ": '" + texts.get(k).get(i) + "'");
            }
        }
    }
}
