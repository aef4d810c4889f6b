package io.lora4j.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/**
 * The Llama-2 SentencePiece tokenizer from both of its files (tokenizer.model, llama2.c's
 * tokenizer.bin) against ids from llama-tokenizer-js (llama2_tokenizer_vectors.json) and from
 * the real SentencePiece (llama2_sentencepiece_vectors.json, scripts/reference/make_tokenizer_vectors.py).
 */
class SentencePieceBpeTest {
    private static final int BOS = 1, EOS = 2;

    static Tokenizer load(String file) throws IOException {
        return Tokenizers.load(TokenizerAssets.require(file));
    }

    @ParameterizedTest
    @ValueSource(strings = {"tokenizer.model", "tokenizer.bin"})
    void llamaTokenizerJsVectors(String file) throws IOException {
        Tokenizer t = load(file);
        JsonArray rows = TokenizerAssets.resourceArray("llama2_tokenizer_vectors.json");
        assertEquals(12, rows.size());
        for (JsonElement row : rows) {
            String text = row.getAsJsonArray().get(0).getAsString();
            int[] ids = TokenizerAssets.ints(row.getAsJsonArray().get(1).getAsJsonArray());
            assertArrayEquals(ids, t.encode(text, true, false), () -> file + " encode " + text);
            assertEquals(text, t.decode(ids), () -> file + " decode " + text);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"tokenizer.model", "tokenizer.bin"})
    void sentencePieceVectors(String file) throws IOException {
        Tokenizer t = load(file);
        JsonArray rows = TokenizerAssets.resourceArray("llama2_sentencepiece_vectors.json");
        assertTrue(rows.size() >= 40, "vector file too small: " + rows.size());
        for (JsonElement row : rows) {
            JsonObject o = row.getAsJsonObject();
            String text = o.get("text").getAsString();
            int[] ids = TokenizerAssets.ints(o.get("ids").getAsJsonArray());
            // SentencePiece reads "<s>" as text; so does encode without addBos. With addBos, a
            // leading "<s>" is taken as the BOS itself (the no-double-BOS rule), so compare
            // [BOS] + encode(text) there.
            assertArrayEquals(ids, concat(new int[] {BOS}, t.encode(text, false, false)), () -> file + " encode '" + text + "'");
            if (!text.startsWith("<s>"))
                assertArrayEquals(ids, t.encode(text, true, false), () -> file + " encode+BOS '" + text + "'");
            assertEquals(o.get("decoded").getAsString(), t.decode(ids), () -> file + " decode '" + text + "'");
            assertEquals(text, t.decode(t.encode(text, false, true)), () -> file + " round trip '" + text + "'");
        }
    }

    @Test
    void modelAndBinAgreeOnRandomText() throws IOException {
        Tokenizer model = load("tokenizer.model"), bin = load("tokenizer.bin");
        assertEquals(32000, model.vocabSize());
        assertEquals(32000, bin.vocabSize());
        Random rnd = new Random(3407);
        String alphabet = "abcdefghijklmnopqrstuvwxyz ABCXYZ  \n\t0123456789.,;:!?'\"()[]{}<>/\\-_=+*&^%$#@~`|"
                + "éüßñøçåæœ€£¥°±×÷αβγδλπΩжщяあいうアイウ漢字中文한글🦙😀";
        int[] cps = alphabet.codePoints().toArray();
        for (int trial = 0; trial < 300; trial++) {
            StringBuilder sb = new StringBuilder();
            int len = rnd.nextInt(80);
            for (int i = 0; i < len; i++) sb.appendCodePoint(cps[rnd.nextInt(cps.length)]);
            String s = sb.toString();
            int[] ids = model.encode(s, true, false);
            assertArrayEquals(ids, bin.encode(s, true, false), () -> "model vs bin on '" + s + "'");
            assertEquals(s, model.decode(ids), () -> "round trip '" + s + "'");
        }
    }

    @Test
    void specialIdsAndLookup() throws IOException {
        for (String f : new String[] {"tokenizer.model", "tokenizer.bin"}) {
            Tokenizer t = load(f);
            assertEquals(BOS, t.bosId());
            assertEquals(EOS, t.eosId());
            assertFalse(t.padId().isPresent(), "Llama 2 defines no pad token");
            assertEquals(BOS, t.tokenId("<s>"));
            assertEquals(EOS, t.tokenId("</s>"));
            assertEquals(13, t.tokenId("<0x0A>"));
            assertEquals(29871, t.tokenId("\u2581"));
            assertEquals(-1, t.tokenId("definitely-not-a-piece"));
            assertEquals("<0x0A>", t.piece(13));
            assertTrue(t.isSpecial(BOS) && t.isSpecial(EOS) && !t.isSpecial(13));
            assertEquals(BOS, t.specialTokens().get("<s>"));
        }
    }

    @Test
    void bosIsNeverDoubled() throws IOException {
        Tokenizer t = load("tokenizer.model");
        int[] plain = t.encode("Hello world", true, true);
        assertEquals(BOS, plain[0]);
        assertEquals(EOS, plain[plain.length - 1]);
        // A BOS string at the start is the BOS itself, whether given as text or recognised as a special.
        assertArrayEquals(plain, t.encode("<s>Hello world", true, true));
        assertArrayEquals(plain, t.encodeWithSpecials("<s>Hello world", true, true));
        assertArrayEquals(plain, t.encodeWithSpecials("<s>Hello world</s>", true, true));
        // Without addBos the text is literal: "<s>" is three ordinary pieces.
        int[] literal = t.encode("<s>Hello", false, false);
        assertTrue(Arrays.stream(literal).noneMatch(id -> id == BOS), Arrays.toString(literal));
        assertEquals("<s>Hello", t.decode(literal));
        // encode never reads specials inside the text; encodeWithSpecials does.
        assertTrue(Arrays.stream(t.encode("a </s> b", false, false)).noneMatch(id -> id == EOS));
        assertTrue(Arrays.stream(t.encodeWithSpecials("a </s> b")).anyMatch(id -> id == EOS));
    }

    @Test
    void encodeWithSpecialsMatchesLegacyLlamaChat() throws IOException {
        Tokenizer t = load("tokenizer.model");
        // HF's legacy LlamaTokenizer: each segment after a special keeps the dummy prefix
        // ("<s>[INST]" -> <s> ▁[ INST ]), the ids Llama-2-chat was trained on.
        int[] ids = t.encodeWithSpecials("<s>[INST] Hi [/INST] Hello</s>");
        int[] expected = concat(new int[] {BOS}, t.encode("[INST] Hi [/INST] Hello", false, false), new int[] {EOS});
        assertArrayEquals(expected, ids);
        assertEquals(518, ids[1], "▁[");
        assertEquals("<s>[INST] Hi [/INST] Hello</s>", t.decode(ids, true));
        assertEquals("[INST] Hi [/INST] Hello", t.decode(ids));
    }

    @Test
    void streamingDecodeReassemblesBytePieces() throws IOException {
        Tokenizer t = load("tokenizer.bin");
        String text = "Llamas 🦙 say 镇 hi\nbye";
        int[] ids = t.encode(text, true, false);
        StreamDecoder d = new StreamDecoder(t);
        StringBuilder sb = new StringBuilder();
        for (int id : ids) {
            String piece = d.accept(id);
            assertFalse(piece.contains("\uFFFD"), "a split character leaked out: " + Arrays.toString(ids));
            sb.append(piece);
        }
        sb.append(d.flush());
        assertEquals(text, sb.toString());
        // llama2.c style: the piece after BOS loses its leading space, later ones keep it.
        assertEquals("Hello", t.decodePiece(BOS, t.tokenId("\u2581Hello")));
        assertEquals(" Hello", t.decodePiece(263, t.tokenId("\u2581Hello")));
        assertEquals("\n", t.decodePiece(263, 13));
        assertEquals("", t.decodePiece(263, EOS));
    }

    @Test
    void longTextIsFastAndExact() throws IOException {
        Tokenizer model = load("tokenizer.model"), bin = load("tokenizer.bin");
        JsonArray rows = TokenizerAssets.resourceArray("llama2_tokenizer_vectors.json");
        String paragraph = rows.get(11).getAsJsonArray().get(0).getAsString();
        StringBuilder sb = new StringBuilder();
        while (sb.length() < 100_000) sb.append(paragraph).append('\n');
        String text = sb.toString();
        model.encode(text, true, false); // warm-up (JIT)
        long t0 = System.nanoTime();
        int[] ids = model.encode(text, true, false);
        double sec = (System.nanoTime() - t0) / 1e9;
        System.out.printf("SentencePiece BPE encode: %d chars -> %d tokens in %.3f s = %.0f tokens/s%n",
                text.length(), ids.length, sec, ids.length / sec);
        assertArrayEquals(ids, bin.encode(text, true, false));
        assertEquals(text, model.decode(ids));
        // A single symbol run (no spaces) is the merge loop's worst case: must stay O(n log n).
        String run = "a".repeat(100_000);
        long t1 = System.nanoTime();
        int[] runIds = model.encode(run, false, false);
        double runSec = (System.nanoTime() - t1) / 1e9;
        assertEquals(run, model.decode(runIds));
        assertTrue(sec < 5 && runSec < 5, "too slow: paragraph " + sec + " s, run " + runSec + " s");
    }

    @Test
    void mergeOrderOnASyntheticVocabulary() throws IOException {
        // Scores decide, not length; equal scores merge leftmost first; unknown chars fall back to bytes.
        String[] pieces = new String[3 + 256 + 6];
        float[] scores = new float[pieces.length];
        byte[] types = new byte[pieces.length];
        pieces[0] = "<unk>";
        types[0] = SentencePieceBpe.UNKNOWN;
        pieces[1] = "<s>";
        pieces[2] = "</s>";
        types[1] = types[2] = SentencePieceBpe.CONTROL;
        for (int b = 0; b < 256; b++) {
            pieces[3 + b] = String.format("<0x%02X>", b);
            types[3 + b] = SentencePieceBpe.BYTE;
        }
        String[] normal = {"\u2581", "a", "b", "ab", "ba", "\u2581a"};
        float[] normalScores = {-1, -2, -3, -10, -10, -20};
        for (int i = 0; i < normal.length; i++) {
            pieces[259 + i] = normal[i];
            scores[259 + i] = normalScores[i];
            types[259 + i] = SentencePieceBpe.NORMAL;
        }
        SentencePieceBpe t = new SentencePieceBpe(Path.of("synthetic"),
                new SentencePieceBpe.Vocab(pieces, scores, types, 0, 1, 2, -1, true, false));
        int ab = 262, ba = 263, a = 260, sp = 259, spA = 264;
        // "▁aba": ab and ba tie at -10, the leftmost (a|b at 1) wins, then ▁a needs "▁"+"ab" (absent).
        assertArrayEquals(new int[] {sp, ab, a}, t.encode("aba", false, false));
        // "▁a": only ▁a merges.
        assertArrayEquals(new int[] {spA}, t.encode("a", false, false));
        // "c" is not a piece: byte fallback, 0x63.
        assertArrayEquals(new int[] {sp, 3 + 'c'}, t.encode("c", false, false));
        assertArrayEquals(new int[] {sp, ba}, t.encode("ba", false, false));
        assertEquals("aba c", t.decode(t.encode("aba c", false, false)));
    }

    static int[] concat(int[]... parts) {
        return Arrays.stream(parts).flatMapToInt(Arrays::stream).toArray();
    }
}
