package io.lora4j.tokenizer;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Turns a stream of generated token ids into text, one call per token. A UTF-8 character split
 * over several byte-fallback tokens (an emoji is four {@code <0xNN>} pieces in Llama 2) is held
 * back until complete, so what {@link #accept} returns is always whole characters. Bytes that
 * can never form a character become U+FFFD. One instance per generation stream; not
 * thread-safe.
 */
public final class StreamDecoder {
    private final Tokenizer tokenizer;
    private final CharsetDecoder utf8 = StandardCharsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPLACE)
            .onUnmappableCharacter(CodingErrorAction.REPLACE);
    private int prevId = -1;
    private byte[] pending = new byte[16];
    private int pendingLength;

    /** A decoder whose first token is treated as the start of the text (prevId -1). */
    public StreamDecoder(Tokenizer tokenizer) {
        this.tokenizer = tokenizer;
    }

    /**
     * Adds one token and returns the text it completes (possibly empty).
     *
     * @throws IllegalArgumentException for an id outside the vocabulary
     */
    public String accept(int id) {
        byte[] b = tokenizer.decodePieceBytes(prevId, id);
        prevId = id;
        if (pendingLength + b.length > pending.length)
            pending = Arrays.copyOf(pending, Math.max(pending.length * 2, pendingLength + b.length));
        System.arraycopy(b, 0, pending, pendingLength, b.length);
        pendingLength += b.length;
        return drain(completeLength());
    }

    /** Returns whatever is held back (an incomplete character becomes U+FFFD) and resets. */
    public String flush() {
        String s = drain(pendingLength);
        prevId = -1;
        return s;
    }

    /** Length of the prefix of {@code pending} that does not end inside a still-valid UTF-8 sequence. */
    private int completeLength() {
        // Look back at most 3 bytes for the lead byte of the last character.
        for (int back = 1; back <= Math.min(3, pendingLength); back++) {
            int b = pending[pendingLength - back] & 0xff;
            if ((b & 0xc0) == 0x80) continue; // continuation byte: keep looking for the lead
            int need = b >= 0xf0 && b <= 0xf4 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 && b < 0xe0 ? 2 : 1;
            return need > back ? pendingLength - back : pendingLength;
        }
        return pendingLength;
    }

    private String drain(int n) {
        if (n == 0) return "";
        try {
            utf8.reset();
            CharBuffer out = utf8.decode(ByteBuffer.wrap(pending, 0, n));
            System.arraycopy(pending, n, pending, 0, pendingLength - n);
            pendingLength -= n;
            return out.toString();
        } catch (java.nio.charset.CharacterCodingException e) {
            throw new IllegalStateException("UTF-8 decoder with REPLACE threw", e); // cannot happen
        }
    }
}
