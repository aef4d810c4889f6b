package io.lora4j.tokenizer;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * A minimal protobuf wire-format reader over a byte array, for sentencepiece's ModelProto. Every
 * length is checked against the bytes that remain before anything is allocated, so a corrupt
 * file gives a {@link TokenizerException} naming the offset, never an out-of-bounds error or an
 * OutOfMemoryError.
 */
final class ProtoReader {
    static final int VARINT = 0, I64 = 1, LEN = 2, I32 = 5;

    private final Path file;
    private final byte[] buf;
    private int pos;
    private final int limit;

    ProtoReader(Path file, byte[] buf) {
        this(file, buf, 0, buf.length);
    }

    private ProtoReader(Path file, byte[] buf, int pos, int limit) {
        this.file = file;
        this.buf = buf;
        this.pos = pos;
        this.limit = limit;
    }

    boolean hasMore() {
        return pos < limit;
    }

    int remaining() {
        return limit - pos;
    }

    /** Reads a tag; returns (field number << 3) | wire type. */
    int readTag() throws TokenizerException {
        long tag = readVarint();
        int field = (int) (tag >>> 3);
        if (tag >>> 3 > 0x1fffffff || field == 0) throw error("bad field tag " + tag);
        return (int) tag;
    }

    long readVarint() throws TokenizerException {
        long result = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (pos >= limit) throw error("truncated varint");
            int b = buf[pos++] & 0xff;
            result |= (long) (b & 0x7f) << shift;
            if (b < 0x80) return result;
        }
        throw error("varint longer than 10 bytes");
    }

    float readFloat() throws TokenizerException {
        need(4);
        int bits = (buf[pos] & 0xff) | (buf[pos + 1] & 0xff) << 8 | (buf[pos + 2] & 0xff) << 16 | (buf[pos + 3] & 0xff) << 24;
        pos += 4;
        return Float.intBitsToFloat(bits);
    }

    /** A length-delimited field as a reader over exactly its bytes. */
    ProtoReader readMessage() throws TokenizerException {
        int len = readLength();
        ProtoReader sub = new ProtoReader(file, buf, pos, pos + len);
        pos += len;
        return sub;
    }

    String readString() throws TokenizerException {
        int len = readLength();
        int at = pos;
        pos += len;
        try {
            CharBuffer cb = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(buf, at, len));
            return cb.toString();
        } catch (CharacterCodingException e) {
            throw new TokenizerException(file, "invalid UTF-8 in a string at byte " + at);
        }
    }

    private int readLength() throws TokenizerException {
        int at = pos;
        long len = readVarint();
        if (len < 0 || len > limit - pos)
            throw new TokenizerException(file, "length " + len + " at byte " + at + " runs past the end of its message ("
                    + (limit - pos) + " bytes left)");
        return (int) len;
    }

    void skip(int wireType) throws TokenizerException {
        switch (wireType) {
            case VARINT -> readVarint();
            case I64 -> { need(8); pos += 8; }
            case LEN -> { int len = readLength(); pos += len; }
            case I32 -> { need(4); pos += 4; }
            default -> throw error("unsupported wire type " + wireType);
        }
    }

    private void need(int n) throws TokenizerException {
        if (limit - pos < n) throw error("truncated: need " + n + " bytes, " + (limit - pos) + " left");
    }

    TokenizerException error(String problem) {
        return new TokenizerException(file, problem + " at byte " + pos + " (not a sentencepiece model, or corrupt)");
    }
}
