package io.lora4j.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Truncated, byte-flipped and lying tokenizer files must fail with a one-line
 * {@link TokenizerException} naming the file — never an index error, OOM or silent garbage
 * where the damage is detectable.
 */
class TokenizerCorruptionTest {
    @TempDir
    Path dir;

    /** Loads {@code bytes} as {@code name}; returns the exception, or null if it loaded. */
    private TokenizerException tryLoad(String name, byte[] bytes) throws IOException {
        Path p = dir.resolve(name);
        Files.write(p, bytes);
        try {
            Tokenizer t = Tokenizers.load(p);
            // A corruption that still parses must give a usable tokenizer.
            t.decode(t.encode("Hello, world! 🦙", true, true));
            return null;
        } catch (TokenizerException e) {
            String m = e.getMessage();
            assertTrue(m.startsWith(p.toString()), "message must name the file: " + m);
            assertTrue(!m.contains("\n"), "message must be one line: " + m);
            return e;
        } catch (RuntimeException | Error e) {
            fail("loading a corrupt " + name + " threw " + e, e);
            return null;
        }
    }

    private void assertRejected(String name, byte[] bytes, String expectedFragment) throws IOException {
        TokenizerException e = tryLoad(name, bytes);
        if (e == null) fail(name + " (" + bytes.length + " bytes) loaded but should have been rejected");
        assertTrue(e.getMessage().contains(expectedFragment), "'" + expectedFragment + "' not in: " + e.getMessage());
    }

    @Test
    void truncatedFilesAreRejected() throws IOException {
        for (String asset : new String[] {"tokenizer.model", "tokenizer.bin"}) {
            byte[] all = Files.readAllBytes(TokenizerAssets.require(asset));
            for (int cut : new int[] {0, 1, 3, 7, 100, 4097, all.length / 3, all.length / 2, all.length - 5, all.length - 1}) {
                TokenizerException e = tryLoad(asset, Arrays.copyOf(all, cut));
                if (e == null) fail(asset + " truncated to " + cut + " bytes loaded");
            }
        }
        byte[] json = Files.readAllBytes(TokenizerAssets.require("llama3/tokenizer.json"));
        for (int cut : new int[] {0, 1, 50, json.length / 2, json.length - 2}) {
            TokenizerException e = tryLoad("tokenizer.json", Arrays.copyOf(json, cut));
            if (e == null) fail("tokenizer.json truncated to " + cut + " bytes loaded");
        }
    }

    @Test
    void flippedBytesNeverEscapeAsOtherExceptions() throws IOException {
        Random rnd = new Random(3407);
        for (String asset : new String[] {"tokenizer.model", "tokenizer.bin"}) {
            byte[] all = Files.readAllBytes(TokenizerAssets.require(asset));
            int rejected = 0;
            for (int trial = 0; trial < 60; trial++) {
                byte[] b = all.clone();
                // Early bytes hold the headers and lengths a lie hurts most; hit them often.
                int at = trial % 2 == 0 ? rnd.nextInt(Math.min(64, b.length)) : rnd.nextInt(b.length);
                b[at] ^= (byte) (1 + rnd.nextInt(255));
                if (tryLoad(asset, b) != null) rejected++;
            }
            assertTrue(rejected > 0, asset + ": no flip was detected at all");
        }
    }

    @Test
    void lyingLengthsAreCheckedBeforeAllocating() throws IOException {
        // tokenizer.bin whose first token claims 2 GB.
        ByteBuffer b = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(27).putFloat(0f).putInt(Integer.MAX_VALUE).putInt(0);
        assertRejected("tokenizer.bin", b.array(), "length");
        // A ModelProto whose first piece claims a huge length (varint 0xFFFFFFFF0F).
        byte[] proto = {0x0a, (byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, 0x0f, 0x0a, 0x01, 'a'};
        assertRejected("tokenizer.model", proto, "runs past the end");
        // A ModelProto with a piece but no trainer spec.
        byte[] noTrainer = {0x0a, 0x03, 0x0a, 0x01, 'a'};
        assertRejected("tokenizer.model", noTrainer, "trainer_spec");
        // A unigram model (trainer_spec.model_type = 1).
        byte[] unigram = {0x0a, 0x03, 0x0a, 0x01, 'a', 0x12, 0x02, 0x18, 0x01};
        assertRejected("tokenizer.model", unigram, "UNIGRAM");
    }

    @Test
    void garbageAndWrongJsonAreRejected() throws IOException {
        byte[] noise = new byte[4096];
        new Random(3407).nextBytes(noise);
        assertTrue(tryLoad("tokenizer.model", noise) != null);
        assertTrue(tryLoad("tokenizer.bin", noise) != null);
        assertTrue(tryLoad("tokenizer.json", noise) != null);
        assertRejected("tokenizer.json", "[1, 2, 3]".getBytes(StandardCharsets.UTF_8), "not a JSON object");
        assertRejected("tokenizer.json", "{\"model\": {\"type\": \"BPE\"}}".getBytes(StandardCharsets.UTF_8), "ByteLevel");
        assertRejected("tokenizer.json", ("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\","
                + " \"vocab\": {\"a\": -4}, \"merges\": []}}").getBytes(StandardCharsets.UTF_8), "not an id");
        assertRejected("tokenizer.json", ("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"Unigram\"}}")
                .getBytes(StandardCharsets.UTF_8), "Unigram");
        TokenizerException missing = assertThrows(TokenizerException.class, () -> Tokenizers.load(dir.resolve("nope.model")));
        assertTrue(missing.getMessage().contains("no such file"));
        Path empty = Files.createDirectory(dir.resolve("empty"));
        TokenizerException emptyDir = assertThrows(TokenizerException.class, () -> Tokenizers.load(empty));
        assertTrue(emptyDir.getMessage().contains("no tokenizer.json"), emptyDir.getMessage());
    }

    @Test
    void badTokenizerConfigIsNamed() throws IOException {
        Path json = TokenizerAssets.require("llama3/tokenizer.json");
        Files.copy(json, dir.resolve("tokenizer.json"));
        Path cfg = dir.resolve("tokenizer_config.json");
        Files.writeString(cfg, "{\"bos_token\": \"<|no_such_token|>\"}");
        TokenizerException e = assertThrows(TokenizerException.class, () -> Tokenizers.load(dir));
        assertTrue(e.getMessage().startsWith(cfg.toString()) && e.getMessage().contains("<|no_such_token|>"), e.getMessage());
        Files.writeString(cfg, "{\"bos_token\": ");
        e = assertThrows(TokenizerException.class, () -> Tokenizers.load(dir));
        assertEquals(cfg.toString(), e.getMessage().substring(0, cfg.toString().length()));
    }
}
