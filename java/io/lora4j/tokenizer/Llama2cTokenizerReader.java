package io.lora4j.tokenizer;

import io.lora4j.io.Quoted;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads llama2.c's {@code tokenizer.bin} (DESIGN.md §4): int32 max_token_length, then per token
 * f32 score, int32 byte length, the bytes; little-endian; the token count is implied by the file
 * size. llama2.c's exporter writes the SentencePiece pieces with {@code "▁"} replaced by a space,
 * ids 0, 1, 2 as {@code <unk>}, {@code "\n<s>\n"}, {@code "\n</s>\n"}, and byte pieces 3..258
 * either as {@code <0xNN>} or as the raw character U+00NN (UTF-8 encoded) — both are accepted,
 * and everything is mapped back to SentencePiece's spelling.
 */
final class Llama2cTokenizerReader {
    /** ids 0..2 and 256 byte pieces: anything smaller is not a llama2.c SentencePiece export. */
    private static final int MIN_VOCAB = 3 + 256;

    private Llama2cTokenizerReader() {}

    static SentencePieceBpe.Vocab read(Path file, byte[] data) throws TokenizerException {
        ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        if (b.remaining() < 4) throw new TokenizerException(file, "truncated: no max_token_length header");
        int maxLen = b.getInt();
        if (maxLen <= 0 || maxLen > 1 << 16)
            throw new TokenizerException(file, "max_token_length " + maxLen + " is not plausible (not a llama2.c tokenizer.bin?)");
        var utf8 = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        List<String> pieces = new ArrayList<>();
        List<Float> scores = new ArrayList<>();
        while (b.hasRemaining()) {
            int i = pieces.size();
            if (b.remaining() < 8)
                throw new TokenizerException(file, "truncated in token " + i + ": header needs 8 bytes, " + b.remaining() + " left");
            float score = b.getFloat();
            int len = b.getInt();
            if (len <= 0 || len > maxLen)
                throw new TokenizerException(file, "token " + i + " has length " + len + ", outside [1, max_token_length " + maxLen + "]");
            if (len > b.remaining())
                throw new TokenizerException(file, "truncated in token " + i + ": " + len + " bytes declared, " + b.remaining() + " left");
            if (Float.isNaN(score)) throw new TokenizerException(file, "token " + i + " has a NaN score");
            int at = b.position();
            try {
                pieces.add(utf8.decode(ByteBuffer.wrap(data, at, len)).toString());
            } catch (CharacterCodingException e) {
                throw new TokenizerException(file, "token " + i + " at byte " + at + " is not valid UTF-8");
            }
            b.position(at + len);
            scores.add(score);
        }
        int n = pieces.size();
        if (n < MIN_VOCAB)
            throw new TokenizerException(file, "only " + n + " tokens; a llama2.c SentencePiece tokenizer has at least " + MIN_VOCAB);
        String[] p = new String[n];
        float[] s = new float[n];
        byte[] t = new byte[n];
        p[0] = "<unk>";
        p[1] = "<s>";
        p[2] = "</s>";
        t[0] = SentencePieceBpe.UNKNOWN;
        t[1] = t[2] = SentencePieceBpe.CONTROL;
        for (int i = 3; i < MIN_VOCAB; i++) {
            int byteValue = i - 3;
            String stored = pieces.get(i);
            String hex = String.format("<0x%02X>", byteValue);
            if (!stored.equals(hex) && !stored.equals(String.valueOf((char) byteValue)))
                throw new TokenizerException(file, "token " + i + " should be the byte piece " + hex + " but holds '"
                        + Quoted.of(stored) + " (not a llama2.c SentencePiece export, or corrupt)");
            p[i] = hex;
            t[i] = SentencePieceBpe.BYTE;
        }
        for (int i = MIN_VOCAB; i < n; i++) {
            p[i] = pieces.get(i).replace(' ', '\u2581');
            t[i] = SentencePieceBpe.NORMAL;
        }
        for (int i = 0; i < n; i++) s[i] = scores.get(i);
        return new SentencePieceBpe.Vocab(p, s, t, 0, 1, 2, -1, true, false);
    }
}
