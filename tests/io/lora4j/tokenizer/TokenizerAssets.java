package io.lora4j.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/** Tokenizer assets of scripts/fetch-assets.sh ($LORA4J_CACHE or ~/.cache/lora4j) and test resources. */
final class TokenizerAssets {
    private TokenizerAssets() {}

    static Path cache() {
        String env = System.getenv("LORA4J_CACHE");
        return env != null && !env.isEmpty() ? Path.of(env) : Path.of(System.getProperty("user.home"), ".cache", "lora4j");
    }

    /** The asset's path; skips the calling test, saying why, when it was not fetched. */
    static Path require(String name) {
        Path p = cache().resolve(name);
        assumeTrue(Files.isRegularFile(p), "asset missing: " + p + " (run scripts/fetch-assets.sh)");
        return p;
    }

    static JsonArray resourceArray(String name) throws IOException {
        try (InputStream in = TokenizerAssets.class.getResourceAsStream("/tokenizer/" + name)) {
            if (in == null) throw new IOException("test resource /tokenizer/" + name + " is missing");
            return JsonParser.parseReader(new InputStreamReader(in, StandardCharsets.UTF_8)).getAsJsonArray();
        }
    }

    static int[] ints(JsonArray a) {
        int[] r = new int[a.size()];
        for (int i = 0; i < r.length; i++) r[i] = a.get(i).getAsInt();
        return r;
    }

    /**
     * Checks {@code t} against a transformers.js vector file of rows {"text", "ids", "plain",
     * "decoded"} (scripts/reference/tokenizer_vectors.mjs): encodeWithSpecials gives ids, encode
     * gives plain (where not null), decode(ids) gives decoded.
     */
    static void assertTransformersJsVectors(Tokenizer t, String resource) throws IOException {
        JsonArray rows = resourceArray(resource);
        assertTrue(rows.size() >= 20, "vector file too small: " + rows.size());
        for (JsonElement row : rows) {
            JsonObject o = row.getAsJsonObject();
            String text = o.get("text").getAsString();
            int[] ids = ints(o.get("ids").getAsJsonArray());
            assertArrayEquals(ids, t.encodeWithSpecials(text), () -> "encodeWithSpecials '" + text + "'");
            if (!o.get("plain").isJsonNull())
                assertArrayEquals(ints(o.get("plain").getAsJsonArray()), t.encode(text, false, false), () -> "encode '" + text + "'");
            assertEquals(o.get("decoded").getAsString(), t.decode(ids, true), () -> "decode '" + text + "'");
        }
    }
}
