package io.lora4j.gguf;

import io.lora4j.io.AtomicFiles;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes a GGUF v3 file (ggml docs/gguf.md): little-endian; the magic "GGUF", u32 version 3, u64
 * tensor count, u64 metadata count; metadata key/value pairs (strings are u64 length + UTF-8 bytes);
 * tensor infos (name, u32 n_dims, u64 ne[n_dims] with ne[0] the row length, u32 ggml type, u64
 * offset into the data section); zero padding to {@code general.alignment} (default 32); then the
 * tensor data, each tensor starting at a multiple of the alignment.
 *
 * <p>Tensor data is produced while writing ({@link Payload}), so a model is quantized one tensor at
 * a time. The file appears atomically: a temporary file beside it, fsync, rename; on any failure
 * nothing is left behind.
 */
public final class GgufWriter {
    public static final int VERSION = 3;
    public static final int DEFAULT_ALIGNMENT = 32;
    /** "GGUF" as the first four bytes. */
    static final byte[] MAGIC = {'G', 'G', 'U', 'F'};
    public static final String ALIGNMENT_KEY = "general.alignment";

    /** Produces a tensor's bytes, in order, into a sink. */
    @FunctionalInterface
    public interface Payload {
        void writeTo(ByteSink sink) throws IOException;
    }

    /** Accepts the bytes of a tensor (its remaining bytes are consumed). */
    @FunctionalInterface
    public interface ByteSink {
        void write(ByteBuffer bytes) throws IOException;
    }

    private record Entry(String name, GgmlType type, long[] ne, long bytes, Payload payload) {}

    private final Map<String, GgufValue> metadata = new LinkedHashMap<>();
    private final Map<String, Entry> tensors = new LinkedHashMap<>();

    /** Sets a metadata value (insertion order is file order; setting a key again replaces it in place). */
    public GgufWriter put(String key, GgufValue value) {
        if (key.isEmpty()) throw new IllegalArgumentException("empty metadata key");
        metadata.put(key, value);
        return this;
    }

    public Map<String, GgufValue> metadata() {
        return java.util.Collections.unmodifiableMap(metadata);
    }

    /**
     * Adds a tensor.
     *
     * @param ne dimensions in ggml order: ne[0] is the row length (the innermost, contiguous one);
     *           a row-major [rows, cols] matrix is {@code {cols, rows}}
     * @throws IllegalArgumentException for a duplicate name, bad dimensions or a row length that is
     *                                  not a multiple of the type's block size
     */
    public GgufWriter addTensor(String name, GgmlType type, long[] ne, Payload payload) {
        if (tensors.containsKey(name)) throw new IllegalArgumentException("tensor " + name + " added twice");
        if (ne.length < 1 || ne.length > 4) throw new IllegalArgumentException(name + ": " + ne.length + " dimensions (1..4)");
        long rows = 1;
        for (int i = 1; i < ne.length; i++) {
            if (ne[i] <= 0) throw new IllegalArgumentException(name + ": dimension " + i + " is " + ne[i]);
            rows = Math.multiplyExact(rows, ne[i]);
        }
        if (ne[0] <= 0) throw new IllegalArgumentException(name + ": dimension 0 is " + ne[0]);
        long bytes = Math.multiplyExact(type.rowBytes(ne[0]), rows);
        tensors.put(name, new Entry(name, type, ne.clone(), bytes, payload));
        return this;
    }

    /** Adds a tensor whose bytes are given. */
    public GgufWriter addTensor(String name, GgmlType type, long[] ne, byte[] data) {
        return addTensor(name, type, ne, sink -> sink.write(ByteBuffer.wrap(data)));
    }

    /** The alignment the file will use. */
    public int alignment() {
        GgufValue v = metadata.get(ALIGNMENT_KEY);
        return v == null ? DEFAULT_ALIGNMENT : (int) v.asLong();
    }

    /**
     * Writes the file atomically.
     *
     * @return the file size in bytes
     * @throws IOException when writing fails or a payload gives a wrong number of bytes (nothing is left behind)
     */
    public long write(Path file) throws IOException {
        int align = alignment();
        if (align <= 0 || Integer.bitCount(align) != 1) throw new IllegalArgumentException(ALIGNMENT_KEY + " must be a power of two, got " + align);
        Path dir = file.toAbsolutePath().getParent();
        Path tmp = AtomicFiles.tempFile(dir, "." + file.getFileName() + ".", ".tmp");
        try {
            long size;
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                Out out = new Out(ch);
                out.bytes(MAGIC);
                out.u32(VERSION);
                out.u64(tensors.size());
                out.u64(metadata.size());
                for (Map.Entry<String, GgufValue> e : metadata.entrySet()) {
                    out.string(e.getKey());
                    out.u32(e.getValue().type().id);
                    value(out, e.getValue());
                }
                long offset = 0;
                for (Entry t : tensors.values()) {
                    out.string(t.name);
                    out.u32(t.ne.length);
                    for (long d : t.ne) out.u64(d);
                    out.u32(t.type.id);
                    out.u64(offset);
                    offset = pad(offset + t.bytes, align);
                }
                out.zeros(pad(out.position, align) - out.position);
                for (Entry t : tensors.values()) {
                    long start = out.position;
                    t.payload.writeTo(out::buffer);
                    long got = out.position - start;
                    if (got != t.bytes)
                        throw new IllegalStateException("tensor " + t.name + " produced " + got + " bytes, its type and shape need " + t.bytes);
                    out.zeros(pad(out.position, align) - out.position);
                }
                out.flush();
                ch.force(true);
                size = out.position;
            }
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            AtomicFiles.syncDirectory(dir);
            return size;
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    static long pad(long n, long align) {
        return (n + align - 1) / align * align;
    }

    private static void value(Out out, GgufValue v) throws IOException {
        if (v.type() != GgufValue.Type.ARRAY) {
            scalar(out, v.type(), v.value());
            return;
        }
        GgufValue.Type et = v.elementType();
        out.u32(et.id);
        out.u64(v.length());
        Object a = v.value();
        if (a instanceof long[] l) for (long x : l) scalar(out, et, x);
        else if (a instanceof double[] d) for (double x : d) scalar(out, et, x);
        else if (a instanceof boolean[] b) for (boolean x : b) scalar(out, et, x);
        else for (String s : (String[]) a) out.string(s);
    }

    private static void scalar(Out out, GgufValue.Type t, Object v) throws IOException {
        switch (t) {
            case UINT8: case INT8: out.u8((int) (long) (Long) v); break;
            case UINT16: case INT16: out.u16((int) (long) (Long) v); break;
            case UINT32: case INT32: out.u32((long) (Long) v); break;
            case UINT64: case INT64: out.u64((Long) v); break;
            case FLOAT32: out.f32((float) (double) (Double) v); break;
            case FLOAT64: out.f64((Double) v); break;
            case BOOL: out.u8((Boolean) v ? 1 : 0); break;
            case STRING: out.string((String) v); break;
            default: throw new IllegalArgumentException("not a scalar: " + t);
        }
    }

    /** A little-endian buffered writer over a channel that counts its position. */
    private static final class Out {
        private final FileChannel ch;
        private final ByteBuffer buf = ByteBuffer.allocateDirect(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
        long position;

        Out(FileChannel ch) {
            this.ch = ch;
        }

        private void room(int n) throws IOException {
            if (buf.remaining() < n) flush();
        }

        void flush() throws IOException {
            buf.flip();
            while (buf.hasRemaining()) ch.write(buf);
            buf.clear();
        }

        void u8(int v) throws IOException { room(1); buf.put((byte) v); position += 1; }
        void u16(int v) throws IOException { room(2); buf.putShort((short) v); position += 2; }
        void u32(long v) throws IOException { room(4); buf.putInt((int) v); position += 4; }
        void u64(long v) throws IOException { room(8); buf.putLong(v); position += 8; }
        void f32(float v) throws IOException { room(4); buf.putFloat(v); position += 4; }
        void f64(double v) throws IOException { room(8); buf.putDouble(v); position += 8; }

        void string(String s) throws IOException {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            u64(b.length);
            bytes(b);
        }

        void bytes(byte[] b) throws IOException {
            buffer(ByteBuffer.wrap(b));
        }

        void zeros(long n) throws IOException {
            byte[] z = new byte[(int) n];
            bytes(z);
        }

        void buffer(ByteBuffer b) throws IOException {
            while (b.hasRemaining()) {
                if (!buf.hasRemaining()) flush();
                int n = Math.min(buf.remaining(), b.remaining());
                ByteBuffer slice = b.slice();
                slice.limit(n);
                buf.put(slice);
                b.position(b.position() + n);
                position += n;
            }
        }
    }

    @Override
    public String toString() {
        return "GGUF writer: " + metadata.size() + " metadata keys, " + tensors.size() + " tensors " + Arrays.toString(tensors.keySet().toArray());
    }

    /** The names of the tensors added, in order. */
    public List<String> tensorNames() {
        return new ArrayList<>(tensors.keySet());
    }
}
