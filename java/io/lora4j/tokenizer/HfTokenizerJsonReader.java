package io.lora4j.tokenizer;

import io.lora4j.io.Quoted;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * Builds a {@link ByteLevelBpe} from HF's {@code tokenizer.json}. Supported: model BPE (vocab,
 * merges as "a b" strings or [a, b] pairs, ignore_merges), either byte-level (a ByteLevel
 * pre-tokenizer) or SentencePiece-style with {@code byte_fallback} and all 256 {@code <0xNN>}
 * tokens (Gemma 3); normalizer null, NFC or literal Replace steps (or a Sequence of them);
 * pre_tokenizer Sequence / Split (Isolated, Removed or MergedWithPrevious) / ByteLevel;
 * added_tokens. Anything else is refused with a message rather than tokenized differently.
 */
final class HfTokenizerJsonReader {
    private HfTokenizerJsonReader() {}

    /** True when the file's pre-tokenizer contains ByteLevel (so it is GPT-2-style byte-level BPE). */
    static boolean isByteLevel(JsonObject root) {
        JsonElement pre = root.get("pre_tokenizer");
        return pre != null && pre.isJsonObject() && containsByteLevel(pre.getAsJsonObject());
    }

    private static boolean containsByteLevel(JsonObject p) {
        JsonElement type = p.get("type");
        if (type != null && type.isJsonPrimitive() && "ByteLevel".equals(type.getAsString())) return true;
        JsonElement seq = p.get("pretokenizers");
        if (seq != null && seq.isJsonArray())
            for (JsonElement e : seq.getAsJsonArray())
                if (e.isJsonObject() && containsByteLevel(e.getAsJsonObject())) return true;
        return false;
    }

    static ByteLevelBpe read(Path file, JsonObject root, TokenizerConfig config) throws TokenizerException {
        JsonObject model = Json.object(file, root, "model");
        String type = Json.optString(file, model, "type");
        if (type != null && !type.equals("BPE"))
            throw new TokenizerException(file, "model type " + type + " is not supported (only BPE)");
        ByteLevelBpe.Alphabet alphabet = isByteLevel(root) ? ByteLevelBpe.Alphabet.BYTE_LEVEL
                : ByteLevelBpe.Alphabet.CHARS_WITH_BYTE_FALLBACK;
        if (alphabet == ByteLevelBpe.Alphabet.CHARS_WITH_BYTE_FALLBACK && !Json.optBoolean(file, model, "byte_fallback", false))
            throw new TokenizerException(file, "BPE without a ByteLevel pre-tokenizer needs model.byte_fallback true "
                    + "(for a SentencePiece model load its tokenizer.model)");
        String prefix = Json.optString(file, model, "continuing_subword_prefix");
        String suffix = Json.optString(file, model, "end_of_word_suffix");
        if ((prefix != null && !prefix.isEmpty()) || (suffix != null && !suffix.isEmpty()))
            throw new TokenizerException(file, "BPE continuing_subword_prefix/end_of_word_suffix are not supported");

        // Vocabulary and added tokens.
        JsonObject vocab = Json.object(file, model, "vocab");
        Map<String, Integer> tokenToId = new HashMap<>(vocab.size() * 2);
        int size = 0;
        for (Map.Entry<String, JsonElement> e : vocab.entrySet()) {
            int id = Json.id(file, e.getValue(), "model.vocab[" + Quoted.of(e.getKey()) + "]");
            tokenToId.put(e.getKey(), id);
            size = Math.max(size, id + 1);
        }
        List<SpecialTokenMatcher.Token> addedTokens = new ArrayList<>();
        List<Boolean> addedSpecial = new ArrayList<>();
        JsonArray added = Json.optArray(file, root, "added_tokens");
        if (added != null) {
            for (int i = 0; i < added.size(); i++) {
                JsonElement e = added.get(i);
                if (!e.isJsonObject()) throw new TokenizerException(file, "added_tokens[" + i + "] is not an object");
                JsonObject t = e.getAsJsonObject();
                int id = Json.id(file, t.get("id"), "added_tokens[" + i + "].id");
                String content = Json.string(file, t.get("content"), "added_tokens[" + i + "].content");
                if (content.isEmpty()) throw new TokenizerException(file, "added_tokens[" + i + "] has empty content");
                addedTokens.add(new SpecialTokenMatcher.Token(content, id,
                        Json.optBoolean(file, t, "lstrip", false), Json.optBoolean(file, t, "rstrip", false)));
                addedSpecial.add(Json.optBoolean(file, t, "special", false));
                size = Math.max(size, id + 1);
            }
        }
        if (tokenToId.isEmpty()) throw new TokenizerException(file, "model.vocab is empty");
        String[] tokens = new String[size];
        boolean[] special = new boolean[size];
        boolean[] isAdded = new boolean[size];
        for (Map.Entry<String, Integer> e : tokenToId.entrySet()) {
            int id = e.getValue();
            if (tokens[id] != null)
                throw new TokenizerException(file, "model.vocab gives id " + id + " to both " + Quoted.of(tokens[id]) + " and " + Quoted.of(e.getKey()));
            tokens[id] = e.getKey();
            if (alphabet == ByteLevelBpe.Alphabet.BYTE_LEVEL) for (int i = 0; i < e.getKey().length(); i++)
                if (!ByteLevelBpe.isByteChar(e.getKey().charAt(i)))
                    throw new TokenizerException(file, "vocab token " + Quoted.of(e.getKey()) + " (id " + id
                            + ") has a char outside the byte-level alphabet");
        }
        for (int i = 0; i < addedTokens.size(); i++) {
            SpecialTokenMatcher.Token t = addedTokens.get(i);
            if (tokens[t.id()] == null) {
                tokens[t.id()] = t.content();
                isAdded[t.id()] = true;
            } else if (!tokens[t.id()].equals(t.content())) {
                throw new TokenizerException(file, "added token " + Quoted.of(t.content()) + " has id " + t.id()
                        + ", which the vocabulary gives to " + Quoted.of(tokens[t.id()]));
            }
            special[t.id()] = addedSpecial.get(i);
            tokenToId.put(t.content(), t.id());
        }
        int[] byteIds = new int[256];
        for (int b = 0; b < 256; b++) {
            String piece = alphabet == ByteLevelBpe.Alphabet.BYTE_LEVEL ? String.valueOf(ByteLevelBpe.BYTE_TO_CHAR[b])
                    : String.format("<0x%02X>", b);
            Integer id = tokenToId.get(piece);
            if (id == null || isAdded[id])
                throw new TokenizerException(file, "the vocabulary lacks the " + (alphabet == ByteLevelBpe.Alphabet.BYTE_LEVEL
                        ? "byte-level token" : "byte-fallback token " + piece) + " for byte " + b);
            byteIds[b] = id;
        }

        // Merges.
        JsonArray merges = Json.optArray(file, model, "merges");
        if (merges == null) throw new TokenizerException(file, "'model.merges' is missing");
        ByteLevelBpe.MergeTable table = new ByteLevelBpe.MergeTable(merges.size());
        for (int rank = 0; rank < merges.size(); rank++) {
            JsonElement m = merges.get(rank);
            String a, b;
            if (m.isJsonArray() && m.getAsJsonArray().size() == 2) {
                a = Json.string(file, m.getAsJsonArray().get(0), "model.merges[" + rank + "][0]");
                b = Json.string(file, m.getAsJsonArray().get(1), "model.merges[" + rank + "][1]");
            } else {
                String s = Json.string(file, m, "model.merges[" + rank + "]");
                int sp = s.indexOf(' ');
                if (sp <= 0 || sp == s.length() - 1 || s.indexOf(' ', sp + 1) >= 0)
                    throw new TokenizerException(file, "model.merges[" + rank + "] " + Quoted.of(s) + " is not two tokens");
                a = s.substring(0, sp);
                b = s.substring(sp + 1);
            }
            Integer ia = tokenToId.get(a), ib = tokenToId.get(b), im = tokenToId.get(a + b);
            if (ia == null || ib == null || im == null)
                throw new TokenizerException(file, "model.merges[" + rank + "] (" + a + " " + b + ") uses a token not in the vocabulary");
            table.put(ia, ib, rank, im);
        }
        boolean ignoreMerges = Json.optBoolean(file, model, "ignore_merges", false);

        List<ByteLevelBpe.Replace> replaces = new ArrayList<>();
        boolean nfc = readNormalizer(file, Json.optObject(file, root, "normalizer"), replaces);
        List<ByteLevelBpe.PreTokenizer> pre = new ArrayList<>();
        readPreTokenizer(file, Json.object(file, root, "pre_tokenizer"), pre);

        // Special ids: tokenizer_config.json first; else BOS from a TemplateProcessing post-processor.
        int bos = resolve(file, config, "bos_token", config.bosToken(), tokenToId);
        int eos = resolve(file, config, "eos_token", config.eosToken(), tokenToId);
        int pad = resolve(file, config, "pad_token", config.padToken(), tokenToId);
        if (config.bosToken() == null) bos = templateBos(file, Json.optObject(file, root, "post_processor"), tokenToId);

        return new ByteLevelBpe(tokens, special, isAdded, tokenToId, byteIds, table, ignoreMerges, nfc, alphabet, replaces,
                pre, addedTokens, bos, eos, pad);
    }

    private static int resolve(Path file, TokenizerConfig config, String key, String token, Map<String, Integer> ids)
            throws TokenizerException {
        if (token == null) return -1;
        Integer id = ids.get(token);
        if (id == null)
            throw new TokenizerException(config.file() != null ? config.file() : file,
                    key + " " + Quoted.of(token) + " is not in the vocabulary of " + file.getFileName());
        return id;
    }

    private static int templateBos(Path file, JsonObject post, Map<String, Integer> ids) throws TokenizerException {
        if (post == null || !"TemplateProcessing".equals(Json.optString(file, post, "type"))) return -1;
        JsonArray single = Json.optArray(file, post, "single");
        if (single == null || single.isEmpty() || !single.get(0).isJsonObject()) return -1;
        JsonObject first = Json.optObject(file, single.get(0).getAsJsonObject(), "SpecialToken");
        if (first == null) return -1;
        String name = Json.optString(file, first, "id");
        Integer id = name == null ? null : ids.get(name);
        return id == null ? -1 : id;
    }

    /**
     * Reads the normalizer: returns whether it applies NFC, and collects its literal Replace steps
     * into {@code replaces}. NFC must come before any Replace (the order the tokenizer runs them).
     */
    private static boolean readNormalizer(Path file, JsonObject n, List<ByteLevelBpe.Replace> replaces) throws TokenizerException {
        if (n == null) return false;
        String type = Json.optString(file, n, "type");
        if ("NFC".equals(type)) {
            if (!replaces.isEmpty()) throw new TokenizerException(file, "normalizer NFC after a Replace is not supported");
            return true;
        }
        if ("Replace".equals(type)) {
            String from = Json.optString(file, Json.object(file, n, "pattern"), "String");
            if (from == null || from.isEmpty())
                throw new TokenizerException(file, "normalizer Replace is supported with a non-empty String pattern only");
            replaces.add(new ByteLevelBpe.Replace(from, Json.string(file, n.get("content"), "normalizer Replace content")));
            return false;
        }
        if ("Sequence".equals(type)) {
            JsonArray list = Json.optArray(file, n, "normalizers");
            boolean nfc = false;
            if (list != null) for (JsonElement e : list) {
                if (!e.isJsonObject()) throw new TokenizerException(file, "a normalizer is not an object");
                nfc |= readNormalizer(file, e.getAsJsonObject(), replaces);
            }
            return nfc;
        }
        throw new TokenizerException(file, "normalizer " + type + " is not supported (none, NFC or Replace)");
    }

    private static void readPreTokenizer(Path file, JsonObject p, List<ByteLevelBpe.PreTokenizer> out)
            throws TokenizerException {
        String type = Json.optString(file, p, "type");
        if (type == null) throw new TokenizerException(file, "a pre_tokenizer has no type");
        switch (type) {
            case "Sequence" -> {
                JsonArray list = Json.optArray(file, p, "pretokenizers");
                if (list == null) throw new TokenizerException(file, "Sequence pre_tokenizer has no 'pretokenizers'");
                for (JsonElement e : list) {
                    if (!e.isJsonObject()) throw new TokenizerException(file, "a pre_tokenizer is not an object");
                    readPreTokenizer(file, e.getAsJsonObject(), out);
                }
            }
            case "Split" -> {
                JsonObject pat = Json.object(file, p, "pattern");
                String regex = Json.optString(file, pat, "Regex");
                String literal = Json.optString(file, pat, "String");
                if (regex == null && literal == null)
                    throw new TokenizerException(file, "Split pattern has neither Regex nor String");
                String behavior = Json.optString(file, p, "behavior");
                if (Json.optBoolean(file, p, "invert", false))
                    throw new TokenizerException(file, "Split with invert=true is not supported");
                if (!"Isolated".equals(behavior) && !"Removed".equals(behavior) && !"MergedWithPrevious".equals(behavior))
                    throw new TokenizerException(file, "Split behavior " + behavior
                            + " is not supported (Isolated, Removed, MergedWithPrevious)");
                Pattern pattern;
                try {
                    // HF runs these through Oniguruma, whose \s, \p{..} and case folding are Unicode:
                    // UNICODE_CHARACTER_CLASS gives java.util.regex the same classes.
                    pattern = regex != null ? Pattern.compile(regex, Pattern.UNICODE_CHARACTER_CLASS)
                            : Pattern.compile(Pattern.quote(literal));
                } catch (PatternSyntaxException e) {
                    throw new TokenizerException(file, "Split regex does not compile in Java: " + e.getDescription());
                }
                out.add("MergedWithPrevious".equals(behavior) ? ByteLevelBpe.splitMergedWithPrevious(pattern)
                        : ByteLevelBpe.split(pattern, "Removed".equals(behavior)));
            }
            case "ByteLevel" -> out.add(ByteLevelBpe.byteLevel(Json.optBoolean(file, p, "add_prefix_space", false),
                    Json.optBoolean(file, p, "use_regex", true)));
            default -> throw new TokenizerException(file, "pre_tokenizer " + type + " is not supported");
        }
    }
}
