package io.lora4j.data;

import io.lora4j.tokenizer.Tokenizer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * The text of a token sequence as UTF-8 bytes with every token's byte span: special tokens as
 * their strings, other tokens as {@link Tokenizer#decodePieceBytes} gives them. Marker search on
 * these bytes finds a marker however the tokenizer split or merged it with its neighbours.
 */
public final class TokenText {
    private final byte[] bytes;
    private final int[] start, end;

    private TokenText(byte[] bytes, int[] start, int[] end) {
        this.bytes = bytes;
        this.start = start;
        this.end = end;
    }

    public static TokenText of(Tokenizer tok, int[] ids) {
        int n = ids.length;
        int[] s = new int[n], e = new int[n];
        byte[] buf = new byte[Math.max(16, n * 4)];
        int len = 0;
        int prev = -1;
        for (int i = 0; i < n; i++) {
            byte[] b = tok.isSpecial(ids[i]) ? tok.piece(ids[i]).getBytes(StandardCharsets.UTF_8) : tok.decodePieceBytes(prev, ids[i]);
            if (len + b.length > buf.length) buf = Arrays.copyOf(buf, Math.max(buf.length * 2, len + b.length));
            System.arraycopy(b, 0, buf, len, b.length);
            s[i] = len;
            len += b.length;
            e[i] = len;
            prev = ids[i];
        }
        return new TokenText(Arrays.copyOf(buf, len), s, e);
    }

    public int tokens() {
        return start.length;
    }

    /** Byte offset where token i starts. */
    public int start(int i) {
        return start[i];
    }

    /** Byte offset where token i ends (exclusive). */
    public int end(int i) {
        return end[i];
    }

    public byte[] bytes() {
        return bytes.clone();
    }

    /** The text of tokens [from, to). */
    public String text(int from, int to) {
        if (from >= to) return "";
        return new String(bytes, start[from], end[to - 1] - start[from], StandardCharsets.UTF_8);
    }

    /** The byte offset of the first occurrence of {@code needle} at or after {@code from}, or -1. */
    public int indexOf(byte[] needle, int from) {
        if (needle.length == 0) return -1;
        outer:
        for (int i = Math.max(0, from); i + needle.length <= bytes.length; i++) {
            for (int j = 0; j < needle.length; j++) if (bytes[i + j] != needle[j]) continue outer;
            return i;
        }
        return -1;
    }

    /** The first token whose span ends after byte {@code offset} (a token straddling it counts), or tokens(). */
    public int tokenEndingAfter(int offset) {
        int lo = 0, hi = end.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (end[mid] > offset) hi = mid;
            else lo = mid + 1;
        }
        return lo;
    }

    /** The first token that starts at or after byte {@code offset}, or tokens(). */
    public int tokenStartingAtOrAfter(int offset) {
        int lo = 0, hi = start.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (start[mid] >= offset) hi = mid;
            else lo = mid + 1;
        }
        return lo;
    }
}
