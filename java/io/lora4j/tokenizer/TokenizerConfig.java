package io.lora4j.tokenizer;

import io.lora4j.io.Quoted;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The parts of HF's {@code tokenizer_config.json} a tokenizer needs: the bos/eos/pad token
 * strings and {@code added_tokens_decoder} (id -> content, special, lstrip, rstrip).
 */
record TokenizerConfig(Path file, String bosToken, String eosToken, String padToken, List<AddedToken> addedTokens) {

    record AddedToken(int id, String content, boolean special, boolean lstrip, boolean rstrip) {}

    static final TokenizerConfig NONE = new TokenizerConfig(null, null, null, null, List.of());

    static TokenizerConfig read(Path file, byte[] data) throws TokenizerException {
        JsonObject o = Json.parseObject(file, data);
        List<AddedToken> added = new ArrayList<>();
        JsonObject dec = Json.optObject(file, o, "added_tokens_decoder");
        if (dec != null) {
            for (Map.Entry<String, JsonElement> e : dec.entrySet()) {
                int id;
                try {
                    id = Integer.parseInt(e.getKey());
                } catch (NumberFormatException ex) {
                    throw new TokenizerException(file, "added_tokens_decoder key " + Quoted.of(e.getKey()) + " is not an id");
                }
                if (id < 0 || id > Tokenizers.MAX_VOCAB)
                    throw new TokenizerException(file, "added_tokens_decoder id " + id + " is out of range");
                if (!e.getValue().isJsonObject())
                    throw new TokenizerException(file, "added_tokens_decoder." + id + " is not an object");
                JsonObject t = e.getValue().getAsJsonObject();
                added.add(new AddedToken(id, Json.string(file, t.get("content"), "added_tokens_decoder." + id + ".content"),
                        Json.optBoolean(file, t, "special", false), Json.optBoolean(file, t, "lstrip", false),
                        Json.optBoolean(file, t, "rstrip", false)));
            }
        }
        return new TokenizerConfig(file, Json.tokenString(file, o, "bos_token"), Json.tokenString(file, o, "eos_token"),
                Json.tokenString(file, o, "pad_token"), added);
    }
}
