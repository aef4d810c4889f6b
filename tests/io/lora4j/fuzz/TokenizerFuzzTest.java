package io.lora4j.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.model.TestModels;
import io.lora4j.tokenizer.Tokenizer;
import io.lora4j.tokenizer.Tokenizers;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Random;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;
import org.junit.jupiter.api.Assumptions;

/**
 * Mutation fuzzing of the tokenizer readers, seeded from the real assets: the Llama 2
 * SentencePiece tokenizer.model (protobuf), llama2.c's tokenizer.bin, a 1000-token cut of the
 * Llama 3 tokenizer.json, and tokenizer_config.json. A tokenizer that loads must encode and
 * decode text without failing.
 */
class TokenizerFuzzTest {
    private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().create();
    private static final String TEXT = "Once upon a time, ünïcode 日本 \t\n  <|begin_of_text|> 123";
    private static Path dir;
    private static byte[] model, bin;
    private static JsonObject json;
    private static JsonObject config = JsonParser.parseString(
            "{\"bos_token\":\"<|begin_of_text|>\",\"eos_token\":\"<|end_of_text|>\",\"add_bos_token\":true,"
                    + "\"added_tokens_decoder\":{\"1000\":{\"content\":\"<|begin_of_text|>\",\"special\":true}},"
                    + "\"chat_template\":\"{% for m in messages %}{{ m.content }}{% endfor %}\"}").getAsJsonObject();

    @BeforeContainer
    static void seeds() throws IOException {
        dir = Files.createTempDirectory("fuzz-tok");
        Path cache = TestModels.cache();
        if (Files.isRegularFile(cache.resolve("tokenizer.model"))) model = Files.readAllBytes(cache.resolve("tokenizer.model"));
        if (Files.isRegularFile(cache.resolve("tokenizer.bin"))) bin = Files.readAllBytes(cache.resolve("tokenizer.bin"));
        Path j = cache.resolve("llama3/tokenizer.json");
        if (Files.isRegularFile(j)) json = shrink(JsonParser.parseString(Files.readString(j)).getAsJsonObject(), 1000);
    }

    /** The first {@code keep} tokens of a byte-level BPE tokenizer.json, its merges among them, and renumbered added tokens. */
    private static JsonObject shrink(JsonObject root, int keep) {
        JsonObject m = root.getAsJsonObject("model");
        JsonObject vocab = new JsonObject();
        for (Map.Entry<String, JsonElement> e : m.getAsJsonObject("vocab").entrySet())
            if (e.getValue().getAsInt() < keep) vocab.add(e.getKey(), e.getValue());
        JsonArray merges = new JsonArray();
        for (JsonElement e : m.getAsJsonArray("merges")) {
            String a, b;
            if (e.isJsonArray()) {
                a = e.getAsJsonArray().get(0).getAsString();
                b = e.getAsJsonArray().get(1).getAsString();
            } else {
                String[] p = e.getAsString().split(" ", 2);
                a = p[0];
                b = p[1];
            }
            if (vocab.has(a) && vocab.has(b) && vocab.has(a + b)) merges.add(e);
        }
        m.add("vocab", vocab);
        m.add("merges", merges);
        JsonArray added = new JsonArray();
        int id = keep;
        for (JsonElement e : root.getAsJsonArray("added_tokens")) {
            if (id >= keep + 8) break;
            JsonObject t = e.getAsJsonObject().deepCopy();
            t.addProperty("id", id++);
            added.add(t);
        }
        root.add("added_tokens", added);
        root.remove("post_processor");
        return root;
    }

    @AfterContainer
    static void report() {
        System.out.print(Fuzz.summary("tokenizer"));
    }

    private static Object use(Path f) throws IOException {
        Tokenizer t = Tokenizers.load(f);
        int[] ids = t.encode(TEXT, true, true);
        t.decode(ids);
        int[] all = new int[Math.min(t.vocabSize(), 4000)];
        for (int i = 0; i < all.length; i++) all[i] = i;
        t.decode(all, true);
        return ids.length;
    }

    @Property(tries = 300, seed = "3407")
    void sentencePieceModel(@ForAll long s) throws IOException {
        Assumptions.assumeTrue(model != null, TestModels.MISSING);
        Random r = new Random(s);
        for (int rep = 0; rep < Fuzz.REPEAT; rep++) {
            // half the mutations land in the first 4 KiB (the first pieces' framing), half anywhere
            byte[] b = r.nextBoolean() ? Fuzz.mutate(model, r, 0) : mutatePrefix(model, r, 4096);
            Path f = Files.write(dir.resolve("tokenizer.model"), b);
            Fuzz.check("tokenizer/sentencepiece.model", "seed " + s, () -> use(f));
        }
    }

    @Property(tries = 300, seed = "3407")
    void llama2cTokenizerBin(@ForAll long s) throws IOException {
        Assumptions.assumeTrue(bin != null, TestModels.MISSING);
        Random r = new Random(s);
        for (int rep = 0; rep < Fuzz.REPEAT; rep++) {
            byte[] b = r.nextBoolean() ? Fuzz.mutate(bin, r, 0) : mutatePrefix(bin, r, 512);
            if (r.nextInt(4) == 0) b = Fuzz.withSize(b, 0, Fuzz.HOSTILE[r.nextInt(Fuzz.HOSTILE.length)], false);
            Path f = Files.write(dir.resolve("tokenizer.bin"), b);
            Fuzz.check("tokenizer/llama2c.bin", "seed " + s, () -> use(f));
        }
    }

    @Property(tries = 400, seed = "3407")
    void hfTokenizerJson(@ForAll long s) throws IOException {
        Assumptions.assumeTrue(json != null, TestModels.MISSING);
        Random r = new Random(s);
        Path d = Files.createDirectories(dir.resolve("hf"));
        Files.writeString(d.resolve("tokenizer_config.json"), GSON.toJson(config));
        JsonElement m = mutateTokenizerJson(r);
        byte[] text = GSON.toJson(m).getBytes(StandardCharsets.UTF_8);
        if (r.nextInt(6) == 0) text = Fuzz.mutate(text, r, 0);
        Path f = Files.write(d.resolve("tokenizer.json"), text);
        Fuzz.check("tokenizer/tokenizer.json", "seed " + s + ": " + SafeTensorsFuzzTest.abbreviate(m), () -> use(f));
    }

    /** Structural mutations aimed at the parts the reader interprets, not only the top level. */
    private static JsonElement mutateTokenizerJson(Random r) {
        JsonObject root = json.deepCopy();
        String[] parts = {"model", "added_tokens", "pre_tokenizer", "normalizer", "decoder", "post_processor"};
        String p = parts[r.nextInt(parts.length)];
        JsonElement e = root.get(p);
        if (e == null || r.nextInt(10) == 0) return Fuzz.mutateJson(root, r);
        if (p.equals("model") && r.nextBoolean()) {
            JsonObject model = e.getAsJsonObject();
            String k = r.nextBoolean() ? "vocab" : "merges";
            JsonElement big = model.get(k);
            // mutate a few entries of the big tables directly
            if (big.isJsonObject()) {
                JsonObject v = big.getAsJsonObject();
                String key = v.keySet().stream().skip(r.nextInt(v.size())).findFirst().orElseThrow();
                v.add(r.nextBoolean() ? key : key + "\u0120x", r.nextBoolean() ? Fuzz.hostileValue(r)
                        : new com.google.gson.JsonPrimitive(new long[] {-1, 999, 1000, 1007, 1008, Integer.MAX_VALUE}[r.nextInt(6)]));
            } else {
                JsonArray a = big.getAsJsonArray();
                int i = r.nextInt(Math.max(1, a.size()));
                if (a.size() > 0) a.set(i, r.nextBoolean() ? Fuzz.hostileValue(r) : new com.google.gson.JsonPrimitive("zz qq"));
            }
            return root;
        }
        root.add(p, Fuzz.mutateJson(e, r));
        return root;
    }

    @Property(tries = 300, seed = "3407")
    void tokenizerConfigJson(@ForAll long s) throws IOException {
        Assumptions.assumeTrue(model != null, TestModels.MISSING);
        Random r = new Random(s);
        Path d = Files.createDirectories(dir.resolve("spcfg"));
        Path f = d.resolve("tokenizer.model");
        if (!Files.exists(f)) Files.write(f, model);
        JsonObject base = JsonParser.parseString("{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"pad_token\":null,"
                + "\"added_tokens_decoder\":{\"0\":{\"content\":\"<unk>\",\"special\":true},\"32000\":{\"content\":\"<pad>\",\"special\":true}},"
                + "\"chat_template\":\"{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}\"}").getAsJsonObject();
        JsonElement m = Fuzz.mutateJson(base, r);
        if (r.nextInt(5) == 0) {
            // an added token id far beyond the vocabulary
            JsonObject atd = new JsonObject();
            JsonObject tok = new JsonObject();
            tok.addProperty("content", "<x>");
            atd.add(String.valueOf(Fuzz.HOSTILE[r.nextInt(Fuzz.HOSTILE.length)]), tok);
            base.add("added_tokens_decoder", atd);
            m = base;
        }
        byte[] text = GSON.toJson(m).getBytes(StandardCharsets.UTF_8);
        Files.write(d.resolve("tokenizer_config.json"), text);
        Fuzz.check("tokenizer/tokenizer_config.json", "seed " + s + ": " + SafeTensorsFuzzTest.abbreviate(m), () -> use(f));
    }

    private static byte[] mutatePrefix(byte[] seed, Random r, int prefix) {
        byte[] b = seed.clone();
        int n = 1 + r.nextInt(4);
        for (int i = 0; i < n; i++) {
            int pos = r.nextInt(Math.min(prefix, b.length));
            if (r.nextBoolean()) b[pos] = (byte) r.nextInt(256);
            else b[pos] ^= (byte) (1 << r.nextInt(8));
        }
        return b;
    }

    @Property(tries = 1, seed = "3407")
    void seedsLoad(@ForAll long s) throws IOException {
        Assumptions.assumeTrue(model != null && bin != null && json != null, TestModels.MISSING);
        Path d = Files.createDirectories(dir.resolve("ok"));
        Files.writeString(d.resolve("tokenizer_config.json"), GSON.toJson(config));
        assertEquals(Integer.class, use(Files.write(d.resolve("tokenizer.json"), GSON.toJson(json).getBytes(StandardCharsets.UTF_8))).getClass());
        assertEquals(Integer.class, use(Files.write(dir.resolve("ok.model"), model)).getClass());
    }
}
