package io.lora4j.gguf;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import io.lora4j.io.FormatException;
import io.lora4j.io.TextFiles;
import io.lora4j.tokenizer.ByteLevelBpe;
import io.lora4j.tokenizer.SentencePieceBpe;
import io.lora4j.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The {@code tokenizer.ggml.*} metadata of a lora4j tokenizer, as llama.cpp's converter writes it:
 * <ul>
 * <li>SentencePiece BPE (Llama 2): model {@code llama}, pre {@code default}; tokens, scores and
 *     token types (SentencePiece's piece types, which GGUF's LLAMA_TOKEN_TYPE_* mirror);</li>
 * <li>byte-level BPE (Llama 3): model {@code gpt2}, pre from the pre-tokenizer ({@link #PRE_BY_REGEX});
 *     tokens in the GPT-2 byte alphabet, types (1 normal, 3 control for special added tokens,
 *     4 user-defined for other added tokens) and the merges in rank order ("a b").</li>
 * </ul>
 * Then bos/eos/unknown/padding ids, add_bos_token (true: lora4j's text rows start with BOS),
 * add_eos_token (false) and the chat template.
 */
public final class GgufTokenizer {
    private GgufTokenizer() {}

    /** LLAMA_TOKEN_TYPE_* (llama.h): normal, control, user-defined, unused. */
    static final int NORMAL = 1, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5;

    /**
     * llama.cpp pre-tokenizer names by the Split regex of tokenizer.json (convert_hf_to_gguf_update.py's
     * table; llama-vocab.cpp quotes each regex): Llama 3's, and Qwen2/Qwen3's, which splits digits one by one.
     */
    static final Map<String, String> PRE_BY_REGEX = Map.of(
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            "llama-bpe",
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            "qwen2");

    /**
     * Adds the tokenizer metadata of {@code tok}.
     *
     * @param source       the file or directory {@code tok} was loaded from (a byte-level BPE's
     *                     tokenizer.json is read again for its merges and added tokens)
     * @param modelVocab   the model's vocab_size: ids from the tokenizer's size up to it (the padded rows of
     *                     Qwen's embeddings, 151 669 tokens in 151 936 rows) become {@code [PAD<id>]} tokens of
     *                     type unused, as convert_hf_to_gguf pads them
     * @param chatTemplate the Jinja chat template, or null
     * @throws FormatException when the tokenizer cannot be described to llama.cpp (an unknown pre-tokenizer)
     */
    public static void write(Tokenizer tok, Path source, int modelVocab, String chatTemplate, GgufWriter w) throws IOException {
        int n = tok.vocabSize();
        if (modelVocab < n) throw new IllegalArgumentException("the model's vocabulary " + modelVocab + " is smaller than the tokenizer's " + n);
        List<String> tokens = new ArrayList<>(modelVocab);
        for (int i = 0; i < n; i++) tokens.add(tok.piece(i));
        for (int i = n; i < modelVocab; i++) tokens.add("[PAD" + i + "]");
        int[] types = new int[modelVocab];
        java.util.Arrays.fill(types, n, modelVocab, UNUSED);
        if (tok instanceof SentencePieceBpe sp) {
            float[] scores = new float[modelVocab];
            for (int i = 0; i < n; i++) {
                scores[i] = sp.score(i);
                types[i] = sp.pieceType(i);
            }
            w.put("tokenizer.ggml.model", GgufValue.string("llama"));
            w.put("tokenizer.ggml.pre", GgufValue.string("default"));
            w.put("tokenizer.ggml.tokens", GgufValue.strings(tokens));
            w.put("tokenizer.ggml.scores", GgufValue.f32s(scores));
            w.put("tokenizer.ggml.token_type", GgufValue.i32s(types));
            if (sp.unkId() >= 0) w.put("tokenizer.ggml.unknown_token_id", GgufValue.u32(sp.unkId()));
        } else if (tok instanceof ByteLevelBpe) {
            Path json = Files.isDirectory(source) ? source.resolve("tokenizer.json") : source;
            JsonObject root = readJson(json);
            Map<Integer, Boolean> added = addedTokens(json, root);
            for (int i = 0; i < n; i++) {
                Boolean special = added.get(i);
                types[i] = special == null ? NORMAL : special ? CONTROL : USER_DEFINED;
            }
            w.put("tokenizer.ggml.model", GgufValue.string("gpt2"));
            w.put("tokenizer.ggml.pre", GgufValue.string(pre(json, root)));
            w.put("tokenizer.ggml.tokens", GgufValue.strings(tokens));
            w.put("tokenizer.ggml.token_type", GgufValue.i32s(types));
            w.put("tokenizer.ggml.merges", GgufValue.strings(merges(json, root)));
        } else {
            throw new FormatException(source, "the tokenizer " + tok + " has no GGUF form (SentencePiece BPE or byte-level BPE)");
        }
        if (tok.bosId() >= 0) w.put("tokenizer.ggml.bos_token_id", GgufValue.u32(tok.bosId()));
        if (tok.eosId() >= 0) w.put("tokenizer.ggml.eos_token_id", GgufValue.u32(tok.eosId()));
        if (tok.padId().isPresent()) w.put("tokenizer.ggml.padding_token_id", GgufValue.u32(tok.padId().getAsInt()));
        w.put("tokenizer.ggml.add_bos_token", GgufValue.bool(tok.bosId() >= 0));
        w.put("tokenizer.ggml.add_eos_token", GgufValue.bool(false));
        if (chatTemplate != null) w.put("tokenizer.chat_template", GgufValue.string(chatTemplate));
    }

    /**
     * A vocabulary for a model that has no tokenizer (synthetic or test models): llama.cpp needs one
     * to load and run a model, and with it the model runs on token ids. SentencePiece form: id 0
     * {@code <unk>}, the config's BOS {@code <s>} and first EOS {@code </s>} (control), then as many of
     * the 256 byte pieces {@code <0xNN>} as fit (llama.cpp's SentencePiece tokenizer falls back to
     * them), every other id the placeholder piece {@code [tN]}. Text in or out needs the real tokenizer.
     */
    public static void placeholder(io.lora4j.model.LlamaConfig c, GgufWriter w) {
        int n = c.vocabSize();
        int bos = c.bosTokenId() == null ? -1 : c.bosTokenId(), eos = c.eosTokenId() == null ? -1 : c.eosTokenId();
        List<String> tokens = new ArrayList<>(n);
        int[] types = new int[n];
        int nextByte = 0;
        for (int i = 0; i < n; i++) {
            if (i == 0) {
                tokens.add("<unk>");
                types[i] = 2;
            } else if (i == bos || i == eos) {
                tokens.add(i == bos ? "<s>" : "</s>");
                types[i] = CONTROL;
            } else if (nextByte < 256) {
                tokens.add(String.format("<0x%02X>", nextByte++));
                types[i] = 6;
            } else {
                tokens.add("[t" + i + "]");
                types[i] = NORMAL;
            }
        }
        w.put("tokenizer.ggml.model", GgufValue.string("llama"));
        w.put("tokenizer.ggml.pre", GgufValue.string("default"));
        w.put("tokenizer.ggml.tokens", GgufValue.strings(tokens));
        w.put("tokenizer.ggml.scores", GgufValue.f32s(new float[n]));
        w.put("tokenizer.ggml.token_type", GgufValue.i32s(types));
        w.put("tokenizer.ggml.unknown_token_id", GgufValue.u32(0));
        if (bos > 0) w.put("tokenizer.ggml.bos_token_id", GgufValue.u32(bos));
        if (eos > 0) w.put("tokenizer.ggml.eos_token_id", GgufValue.u32(eos));
        w.put("tokenizer.ggml.add_bos_token", GgufValue.bool(bos > 0));
        w.put("tokenizer.ggml.add_eos_token", GgufValue.bool(false));
    }

    private static JsonObject readJson(Path json) throws IOException {
        try {
            JsonElement e = JsonParser.parseString(TextFiles.readUtf8(json));
            if (!e.isJsonObject()) throw new FormatException(json, "not a JSON object");
            return e.getAsJsonObject();
        } catch (JsonParseException e) {
            throw new FormatException(json, "not valid JSON");
        }
    }

    private static Map<Integer, Boolean> addedTokens(Path json, JsonObject root) throws FormatException {
        Map<Integer, Boolean> out = new HashMap<>();
        JsonElement a = root.get("added_tokens");
        if (a == null || a.isJsonNull()) return out;
        if (!a.isJsonArray()) throw new FormatException(json, "added_tokens is not a list");
        for (JsonElement e : a.getAsJsonArray()) {
            if (!e.isJsonObject() || !e.getAsJsonObject().has("id")) throw new FormatException(json, "an added token without an id");
            JsonObject o = e.getAsJsonObject();
            out.put(o.get("id").getAsInt(), o.has("special") && o.get("special").getAsBoolean());
        }
        return out;
    }

    private static List<String> merges(Path json, JsonObject root) throws FormatException {
        JsonElement m = root.has("model") && root.get("model").isJsonObject() ? root.getAsJsonObject("model").get("merges") : null;
        if (m == null || !m.isJsonArray()) throw new FormatException(json, "model.merges is missing");
        List<String> out = new ArrayList<>();
        for (JsonElement e : m.getAsJsonArray()) {
            if (e.isJsonPrimitive()) out.add(e.getAsString());
            else if (e.isJsonArray() && e.getAsJsonArray().size() == 2) {
                JsonArray p = e.getAsJsonArray();
                out.add(p.get(0).getAsString() + " " + p.get(1).getAsString());
            } else throw new FormatException(json, "a merge is neither \"a b\" nor [a, b]");
        }
        return out;
    }

    /** The llama.cpp pre-tokenizer name of a byte-level tokenizer.json. */
    static String pre(Path json, JsonObject root) throws FormatException {
        JsonElement p = root.get("pre_tokenizer");
        List<JsonObject> steps = new ArrayList<>();
        if (p != null && p.isJsonObject()) {
            JsonObject o = p.getAsJsonObject();
            if (o.has("pretokenizers") && o.get("pretokenizers").isJsonArray()) {
                for (JsonElement e : o.getAsJsonArray("pretokenizers")) if (e.isJsonObject()) steps.add(e.getAsJsonObject());
            } else {
                steps.add(o);
            }
        }
        for (JsonObject s : steps) {
            if (!"Split".equals(str(s, "type"))) continue;
            JsonElement pat = s.get("pattern");
            String regex = pat != null && pat.isJsonObject() ? str(pat.getAsJsonObject(), "Regex") : null;
            String name = regex == null ? null : PRE_BY_REGEX.get(regex);
            if (name == null)
                throw new FormatException(json, "its pre-tokenizer regex is not one llama.cpp knows by name (known: Llama 3's 'llama-bpe', Qwen2/3's 'qwen2')");
            return name;
        }
        for (JsonObject s : steps)
            if ("ByteLevel".equals(str(s, "type")) && (!s.has("use_regex") || s.get("use_regex").getAsBoolean())) return "gpt-2";
        throw new FormatException(json, "no pre-tokenizer that llama.cpp knows (Llama 3's Split regex or GPT-2's ByteLevel)");
    }

    private static String str(JsonObject o, String k) {
        JsonElement e = o.get(k);
        return e != null && e.isJsonPrimitive() ? e.getAsString() : null;
    }
}
