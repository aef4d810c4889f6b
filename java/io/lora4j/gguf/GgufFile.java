package io.lora4j.gguf;

import io.lora4j.io.FormatException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A GGUF file opened for reading (versions 2 and 3; the layout is described at {@link GgufWriter}).
 * The header, metadata and tensor infos are parsed and checked up front against the file size;
 * tensor data is read on request. Every problem is a one-line {@link FormatException} naming the
 * file: nothing is allocated from a count before the count is checked against the bytes that remain.
 */
public final class GgufFile implements AutoCloseable {
    /** Longest string accepted (a chat template or token is far shorter). */
    static final long MAX_STRING = 1L << 26;
    /** ggml's GGML_MAX_DIMS. */
    static final int MAX_DIMS = 4;

    /** One tensor: ggml dimensions (ne[0] = row length), type, offset in the data section, size. */
    public record TensorInfo(String name, GgmlType type, long[] ne, long offset, long bytes) {
        /** Elements in all. */
        public long elements() {
            long n = 1;
            for (long d : ne) n *= d;
            return n;
        }

        /** The shape in row-major (PyTorch) order: ne reversed. */
        public long[] shape() {
            long[] s = new long[ne.length];
            for (int i = 0; i < ne.length; i++) s[i] = ne[ne.length - 1 - i];
            return s;
        }
    }

    private final Path file;
    private final FileChannel ch;
    private final int version;
    private final Map<String, GgufValue> metadata;
    private final Map<String, TensorInfo> tensors;
    private final long dataStart;
    private final int alignment;

    private GgufFile(Path file, FileChannel ch, int version, Map<String, GgufValue> metadata, Map<String, TensorInfo> tensors,
            long dataStart, int alignment) {
        this.file = file;
        this.ch = ch;
        this.version = version;
        this.metadata = Collections.unmodifiableMap(metadata);
        this.tensors = Collections.unmodifiableMap(tensors);
        this.dataStart = dataStart;
        this.alignment = alignment;
    }

    /**
     * Opens and parses {@code file}.
     *
     * @throws FormatException for a missing file, a bad magic or version, a truncated or inconsistent
     *                         header, or a tensor type lora4j does not read
     */
    public static GgufFile open(Path file) throws IOException {
        FileChannel ch;
        try {
            ch = FileChannel.open(file, StandardOpenOption.READ);
        } catch (NoSuchFileException e) {
            throw new FormatException(file, "no such file");
        }
        try {
            return parse(file, ch);
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    private static GgufFile parse(Path file, FileChannel ch) throws IOException {
        In in = new In(file, ch);
        byte[] magic = in.bytes(4);
        if (!Arrays.equals(magic, GgufWriter.MAGIC)) throw new FormatException(file, "not a GGUF file (magic " + hex(magic) + ", expected GGUF)");
        long version = in.u32();
        if (version != 2 && version != 3) throw new FormatException(file, "GGUF version " + version + " is not supported (2 or 3)");
        long nTensors = in.u64(), nKv = in.u64();
        // a key/value takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info 8 + 4 + 8 + 4 + 8
        if (nKv < 0 || nKv > in.remaining() / 13) throw new FormatException(file, "metadata count " + Long.toUnsignedString(nKv) + " exceeds the file");
        if (nTensors < 0 || nTensors > in.remaining() / 32) throw new FormatException(file, "tensor count " + Long.toUnsignedString(nTensors) + " exceeds the file");
        Map<String, GgufValue> kv = new LinkedHashMap<>();
        for (long i = 0; i < nKv; i++) {
            String key = in.string("metadata key " + i);
            long typeId = in.u32();
            GgufValue.Type t = GgufValue.Type.ofId(typeId);
            if (t == null) throw new FormatException(file, "metadata " + key + " has unknown value type " + typeId);
            GgufValue v = t == GgufValue.Type.ARRAY ? array(in, key) : new GgufValue(t, null, scalar(in, t, key));
            if (kv.put(key, v) != null) throw new FormatException(file, "metadata key " + key + " appears twice");
        }
        int alignment = GgufWriter.DEFAULT_ALIGNMENT;
        GgufValue a = kv.get(GgufWriter.ALIGNMENT_KEY);
        if (a != null) {
            if (a.type() != GgufValue.Type.UINT32 || a.asLong() <= 0 || Long.bitCount(a.asLong()) != 1)
                throw new FormatException(file, GgufWriter.ALIGNMENT_KEY + " must be a u32 power of two, got " + a);
            alignment = (int) a.asLong();
        }
        List<long[]> raw = new ArrayList<>();
        List<String> names = new ArrayList<>();
        List<GgmlType> types = new ArrayList<>();
        for (long i = 0; i < nTensors; i++) {
            String name = in.string("tensor name " + i);
            long nd = in.u32();
            if (nd < 1 || nd > MAX_DIMS) throw new FormatException(file, "tensor " + name + " has " + nd + " dimensions (1.." + MAX_DIMS + ")");
            long[] ne = new long[(int) nd];
            for (int d = 0; d < nd; d++) {
                ne[d] = in.u64();
                if (ne[d] <= 0 || ne[d] > (1L << 40)) throw new FormatException(file, "tensor " + name + " has dimension " + d + " = " + Long.toUnsignedString(ne[d]));
            }
            long typeId = in.u32();
            GgmlType type = GgmlType.ofId(typeId);
            if (type == null) throw new FormatException(file, "tensor " + name + " has ggml type " + typeId + ", which lora4j does not read");
            long offset = in.u64();
            names.add(name);
            types.add(type);
            long[] r = Arrays.copyOf(ne, ne.length + 1);
            r[ne.length] = offset;
            raw.add(r);
        }
        long dataStart = GgufWriter.pad(in.position, alignment);
        long dataSize = ch.size() - dataStart;
        Map<String, TensorInfo> tensors = new LinkedHashMap<>();
        for (int i = 0; i < names.size(); i++) {
            long[] r = raw.get(i);
            long[] ne = Arrays.copyOf(r, r.length - 1);
            long offset = r[r.length - 1];
            String name = names.get(i);
            GgmlType type = types.get(i);
            long bytes;
            try {
                long rows = 1;
                for (int d = 1; d < ne.length; d++) rows = Math.multiplyExact(rows, ne[d]);
                bytes = Math.multiplyExact(type.rowBytes(ne[0]), rows);
            } catch (ArithmeticException e) {
                throw new FormatException(file, "tensor " + name + " is too large");
            } catch (IllegalArgumentException e) {
                throw new FormatException(file, "tensor " + name + ": " + e.getMessage());
            }
            if (offset < 0 || offset % alignment != 0)
                throw new FormatException(file, "tensor " + name + " starts at offset " + Long.toUnsignedString(offset) + ", not a multiple of the alignment " + alignment);
            if (offset > dataSize || bytes > dataSize - offset)
                throw new FormatException(file, "tensor " + name + " (" + bytes + " bytes at offset " + offset + ") runs past the end of the file (truncated?)");
            if (tensors.put(name, new TensorInfo(name, type, ne, offset, bytes)) != null)
                throw new FormatException(file, "tensor " + name + " appears twice");
        }
        return new GgufFile(file, ch, (int) version, kv, tensors, dataStart, alignment);
    }

    private static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x & 0xff));
        return sb.toString();
    }

    private static GgufValue array(In in, String key) throws IOException {
        long etId = in.u32();
        GgufValue.Type et = GgufValue.Type.ofId(etId);
        if (et == null || et == GgufValue.Type.ARRAY)
            throw new FormatException(in.file, "metadata " + key + " is an array of unsupported element type " + etId);
        long n = in.u64();
        long minSize = et == GgufValue.Type.STRING ? 8 : size(et);
        if (n < 0 || n > in.remaining() / minSize || n > Integer.MAX_VALUE - 8)
            throw new FormatException(in.file, "metadata " + key + " claims " + Long.toUnsignedString(n) + " elements, more than the file holds");
        int len = (int) n;
        if (et == GgufValue.Type.STRING) {
            String[] s = new String[len];
            for (int i = 0; i < len; i++) s[i] = in.string(key + "[" + i + "]");
            return new GgufValue(GgufValue.Type.ARRAY, et, s);
        }
        if (et == GgufValue.Type.BOOL) {
            boolean[] b = new boolean[len];
            for (int i = 0; i < len; i++) b[i] = (Boolean) scalar(in, et, key);
            return new GgufValue(GgufValue.Type.ARRAY, et, b);
        }
        if (et == GgufValue.Type.FLOAT32 || et == GgufValue.Type.FLOAT64) {
            double[] d = new double[len];
            for (int i = 0; i < len; i++) d[i] = (Double) scalar(in, et, key);
            return new GgufValue(GgufValue.Type.ARRAY, et, d);
        }
        long[] l = new long[len];
        for (int i = 0; i < len; i++) l[i] = (Long) scalar(in, et, key);
        return new GgufValue(GgufValue.Type.ARRAY, et, l);
    }

    private static int size(GgufValue.Type t) {
        switch (t) {
            case UINT8: case INT8: case BOOL: return 1;
            case UINT16: case INT16: return 2;
            case UINT32: case INT32: case FLOAT32: return 4;
            default: return 8;
        }
    }

    private static Object scalar(In in, GgufValue.Type t, String key) throws IOException {
        switch (t) {
            case UINT8: return (long) (in.u8() & 0xff);
            case INT8: return (long) (byte) in.u8();
            case UINT16: return (long) (in.u16() & 0xffff);
            case INT16: return (long) (short) in.u16();
            case UINT32: return in.u32();
            case INT32: return (long) (int) in.u32();
            case UINT64: case INT64: return in.u64();
            case FLOAT32: return (double) Float.intBitsToFloat((int) in.u32());
            case FLOAT64: return Double.longBitsToDouble(in.u64());
            case BOOL: {
                int b = in.u8();
                if (b != 0 && b != 1) throw new FormatException(in.file, "metadata " + key + " holds bool byte " + b);
                return b == 1;
            }
            case STRING: return in.string(key);
            default: throw new FormatException(in.file, "metadata " + key + ": unexpected type " + t);
        }
    }

    public Path file() { return file; }
    public int version() { return version; }
    public int alignment() { return alignment; }
    /** File offset of the data section. */
    public long dataStart() { return dataStart; }
    /** Metadata in file order. */
    public Map<String, GgufValue> metadata() { return metadata; }
    /** Tensor infos in file order. */
    public Map<String, TensorInfo> tensors() { return tensors; }

    /** The metadata value of {@code key}, or null. */
    public GgufValue get(String key) {
        return metadata.get(key);
    }

    /**
     * The info of tensor {@code name}.
     *
     * @throws FormatException when the file has no such tensor
     */
    public TensorInfo tensor(String name) throws FormatException {
        TensorInfo t = tensors.get(name);
        if (t == null) throw new FormatException(file, "no tensor " + name);
        return t;
    }

    /** The raw bytes of a tensor (little-endian), read into a heap buffer. */
    public ByteBuffer data(TensorInfo t) throws IOException {
        if (t.bytes > Integer.MAX_VALUE - 8) throw new FormatException(file, "tensor " + t.name + " is larger than 2 GiB: read it in parts");
        ByteBuffer b = ByteBuffer.allocate((int) t.bytes).order(ByteOrder.LITTLE_ENDIAN);
        long pos = dataStart + t.offset;
        while (b.hasRemaining()) {
            int n = ch.read(b, pos);
            if (n < 0) throw new FormatException(file, "tensor " + t.name + " is truncated");
            pos += n;
        }
        return b.flip();
    }

    /** A tensor dequantized to fp32, in row-major order. */
    public float[] floats(TensorInfo t) throws IOException {
        long n = t.elements();
        if (n > Integer.MAX_VALUE - 8) throw new FormatException(file, "tensor " + t.name + " has too many elements for one array");
        float[] y = new float[(int) n];
        ByteBuffer b = data(t);
        int row = (int) t.ne[0];
        for (int off = 0; off < n; off += row) GgmlQuants.dequantizeRow(t.type, b, y, off, row);
        return y;
    }

    @Override
    public void close() throws IOException {
        ch.close();
    }

    /** A little-endian reader over the channel from position 0 that knows what remains. */
    private static final class In {
        final Path file;
        final FileChannel ch;
        final long size;
        long position;
        private final ByteBuffer buf = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
        private long bufStart;

        In(Path file, FileChannel ch) throws IOException {
            this.file = file;
            this.ch = ch;
            this.size = ch.size();
            buf.limit(0);
        }

        long remaining() {
            return size - position;
        }

        private void need(int n) throws IOException {
            if (n > remaining()) throw new FormatException(file, "truncated at byte " + position + " (needs " + n + " more bytes, file has " + size + ")");
            if (position + n <= bufStart + buf.limit() && position >= bufStart) {
                buf.position((int) (position - bufStart));
                return;
            }
            buf.clear();
            bufStart = position;
            long p = position;
            while (buf.position() < Math.min(buf.capacity(), remaining())) {
                int r = ch.read(buf, p);
                if (r < 0) break;
                p += r;
            }
            buf.flip();
        }

        int u8() throws IOException { need(1); position += 1; return buf.get() & 0xff; }
        int u16() throws IOException { need(2); position += 2; return buf.getShort() & 0xffff; }
        long u32() throws IOException { need(4); position += 4; return buf.getInt() & 0xffffffffL; }
        long u64() throws IOException { need(8); position += 8; return buf.getLong(); }

        byte[] bytes(int n) throws IOException {
            if (n > remaining()) throw new FormatException(file, "truncated at byte " + position);
            byte[] out = new byte[n];
            int done = 0;
            while (done < n) {
                int k = Math.min(n - done, buf.capacity());
                need(k);
                buf.get(out, done, k);
                position += k;
                done += k;
            }
            return out;
        }

        String string(String what) throws IOException {
            long n = u64();
            if (n < 0 || n > remaining() || n > MAX_STRING)
                throw new FormatException(file, what + ": string length " + Long.toUnsignedString(n) + " exceeds the file");
            byte[] b = bytes((int) n);
            try {
                return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(b)).toString();
            } catch (CharacterCodingException e) {
                throw new FormatException(file, what + " is not valid UTF-8");
            }
        }
    }

    /** Whether {@code p} starts with the GGUF magic. */
    public static boolean isGguf(Path p) {
        if (!Files.isRegularFile(p)) return false;
        try (FileChannel c = FileChannel.open(p, StandardOpenOption.READ)) {
            ByteBuffer b = ByteBuffer.allocate(4);
            c.read(b, 0);
            return Arrays.equals(b.array(), GgufWriter.MAGIC);
        } catch (IOException e) {
            return false;
        }
    }
}
