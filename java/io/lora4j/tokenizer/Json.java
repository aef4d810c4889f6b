package io.lora4j.tokenizer;

import io.lora4j.io.Quoted;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import java.io.ByteArrayInputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/** Typed access to a parsed JSON file; a missing or mistyped member is a {@link TokenizerException} naming it. */
final class Json {
    private Json() {}

    static JsonObject parseObject(Path file, byte[] data) throws TokenizerException {
        JsonElement e;
        try {
            e = JsonParser.parseReader(new InputStreamReader(new ByteArrayInputStream(data), StandardCharsets.UTF_8));
        } catch (JsonParseException | StackOverflowError ex) {
            String m = ex.getMessage() == null ? ex.getClass().getSimpleName() : ex.getMessage();
            throw new TokenizerException(file, "not valid JSON: " + m.lines().findFirst().orElse(m));
        }
        if (!e.isJsonObject()) throw new TokenizerException(file, "not a JSON object at the top level");
        return e.getAsJsonObject();
    }

    static JsonObject object(Path file, JsonObject o, String key) throws TokenizerException {
        JsonElement e = o.get(key);
        if (e == null || !e.isJsonObject()) throw new TokenizerException(file, Quoted.of(key) + " is missing or not an object");
        return e.getAsJsonObject();
    }

    static JsonObject optObject(Path file, JsonObject o, String key) throws TokenizerException {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return null;
        if (!e.isJsonObject()) throw new TokenizerException(file, Quoted.of(key) + " is not an object");
        return e.getAsJsonObject();
    }

    static JsonArray optArray(Path file, JsonObject o, String key) throws TokenizerException {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return null;
        if (!e.isJsonArray()) throw new TokenizerException(file, Quoted.of(key) + " is not an array");
        return e.getAsJsonArray();
    }

    static String string(Path file, JsonElement e, String what) throws TokenizerException {
        if (e == null || !e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString())
            throw new TokenizerException(file, what + " is missing or not a string");
        return e.getAsString();
    }

    static String optString(Path file, JsonObject o, String key) throws TokenizerException {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return null;
        return string(file, e, Quoted.of(key));
    }

    static boolean optBoolean(Path file, JsonObject o, String key, boolean dflt) throws TokenizerException {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return dflt;
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean())
            throw new TokenizerException(file, Quoted.of(key) + " is not a boolean");
        return e.getAsBoolean();
    }

    /** A non-negative int that fits the vocabulary bound. */
    static int id(Path file, JsonElement e, String what) throws TokenizerException {
        if (e == null || !e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber())
            throw new TokenizerException(file, what + " is missing or not a number");
        JsonPrimitive p = e.getAsJsonPrimitive();
        double d = p.getAsDouble();
        if (d < 0 || d > Tokenizers.MAX_VOCAB || d != Math.rint(d))
            throw new TokenizerException(file, what + " is " + p + ", not an id in [0, " + Tokenizers.MAX_VOCAB + "]");
        return (int) d;
    }

    /** A special-token entry of tokenizer_config.json: a string, an AddedToken object, or null. */
    static String tokenString(Path file, JsonObject o, String key) throws TokenizerException {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return null;
        if (e.isJsonObject()) return string(file, e.getAsJsonObject().get("content"), Quoted.of(key + ".content"));
        return string(file, e, Quoted.of(key));
    }
}
