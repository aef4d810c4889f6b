package io.lora4j.io;

import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.io.StringReader;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
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
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A read-only safetensors file: the header is parsed and validated strictly when the file is
 * opened, tensors come out as zero-copy {@link Tensor#view} views of a memory mapping.
 *
 * <p>Format: u64 little-endian header length N, N bytes of UTF-8 JSON
 * ({@code {"name": {"dtype", "shape", "data_offsets": [b, e]}, "__metadata__": {str: str}}},
 * offsets relative to the start of the data section, end exclusive), then the data. Checked:
 * N &le; {@value #MAX_HEADER_BYTES} and within the file; a strict JSON object without duplicate
 * keys; every dtype a safetensors dtype; shapes of non-negative integers whose element and byte
 * counts do not overflow; {@code e - b == numel * element size}; every range inside the data
 * section; no two ranges overlapping. Gaps between ranges and trailing bytes are tolerated and
 * reported by {@link #notes()}.
 *
 * <p>Files up to 2 GiB are mapped once; larger files map each tensor's region on demand (a single
 * tensor must then fit in 2 GiB). Mappings stay valid until garbage-collected, so views may
 * outlive this object. Every problem is a {@link FormatException} naming the file.
 */
public final class SafeTensors {
    /** The largest header accepted (the Python library's limit). */
    public static final long MAX_HEADER_BYTES = 100_000_000L;
    /** The reserved key of the string-to-string metadata map. */
    public static final String METADATA_KEY = "__metadata__";

    /** The element types of the safetensors format, with their sizes and our {@link DType}. */
    public enum StDType {
        BOOL(1, null), U8(1, DType.U8), I8(1, null), F8_E4M3(1, null), F8_E5M2(1, null),
        I16(2, null), U16(2, null), F16(2, DType.F16), BF16(2, DType.BF16),
        I32(4, DType.I32), U32(4, null), F32(4, DType.F32),
        I64(8, DType.I64), U64(8, null), F64(8, null);

        /** Bytes per element. */
        public final int size;
        /** The tensor dtype it loads as, or null when lora4j does not compute with it. */
        public final DType dtype;

        StDType(int size, DType dtype) {
            this.size = size;
            this.dtype = dtype;
        }

        /** The format's name for {@code d} (NF4 is stored as U8 bytes). */
        public static StDType of(DType d) {
            return valueOf(d.safetensorsName);
        }

        static StDType parse(String name) {
            for (StDType t : values()) if (t.name().equals(name)) return t;
            return null;
        }
    }

    /**
     * One tensor of the header.
     *
     * @param name  the tensor's key
     * @param dtype its element type
     * @param shape dimensions (a copy)
     * @param begin first byte, relative to the data section
     * @param end   one past the last byte, relative to the data section
     */
    public record Entry(String name, StDType dtype, long[] shape, long begin, long end) {
        public Entry {
            shape = shape.clone();
        }

        @Override
        public long[] shape() {
            return shape.clone();
        }

        public long numel() {
            return Tensor.numel(shape);
        }

        public long bytes() {
            return end - begin;
        }

        @Override
        public String toString() {
            return name + " " + dtype + Arrays.toString(shape);
        }
    }

    private final Path path;
    private final long fileSize;
    private final long headerLength;
    private final Map<String, Entry> entries;
    private final Map<String, String> metadata;
    private final List<String> notes;
    private MappedByteBuffer whole; // the whole file, when it fits one mapping

    private SafeTensors(Path path, long fileSize, long headerLength, Map<String, Entry> entries,
            Map<String, String> metadata, List<String> notes) {
        this.path = path;
        this.fileSize = fileSize;
        this.headerLength = headerLength;
        this.entries = Collections.unmodifiableMap(entries);
        this.metadata = Collections.unmodifiableMap(metadata);
        this.notes = Collections.unmodifiableList(notes);
    }

    /**
     * Opens and validates {@code file}.
     *
     * @throws FormatException when the file is missing, malformed or inconsistent
     * @throws IOException     when it cannot be read
     */
    public static SafeTensors open(Path file) throws IOException {
        if (!Files.isRegularFile(file)) throw new FormatException(file, Files.exists(file) ? "not a regular file" : "no such file");
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) throw new FormatException(file, "too short for a safetensors file (" + size + " bytes, the header length alone needs 8)");
            ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            readFully(ch, lenBuf, 0);
            long n = lenBuf.getLong(0);
            if (n < 0 || n > MAX_HEADER_BYTES)
                throw new FormatException(file, "header length " + Long.toUnsignedString(n) + " exceeds the limit of " + MAX_HEADER_BYTES + " bytes");
            if (n > size - 8)
                throw new FormatException(file, "header length " + n + " runs past the end of the file (" + size + " bytes): truncated or not safetensors");
            if (n < 2) throw new FormatException(file, "header of " + n + " bytes cannot hold a JSON object");
            ByteBuffer hb = ByteBuffer.allocate((int) n);
            readFully(ch, hb, 8);
            String json;
            try {
                json = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT).decode(hb.flip()).toString();
            } catch (CharacterCodingException e) {
                throw new FormatException(file, "header is not valid UTF-8");
            }
            Map<String, Entry> entries = new LinkedHashMap<>();
            Map<String, String> metadata = new LinkedHashMap<>();
            parseHeader(file, json, entries, metadata);
            List<String> notes = new ArrayList<>();
            checkLayout(file, entries, size - 8 - n, notes);
            return new SafeTensors(file, size, n, entries, metadata, notes);
        } catch (NoSuchFileException e) {
            throw new FormatException(file, "no such file");
        }
    }

    private static void readFully(FileChannel ch, ByteBuffer b, long pos) throws IOException {
        while (b.hasRemaining()) {
            int r = ch.read(b, pos);
            if (r < 0) throw new IOException("unexpected end of file");
            pos += r;
        }
    }

    private static void parseHeader(Path file, String json, Map<String, Entry> entries, Map<String, String> metadata)
            throws FormatException {
        JsonReader r = new JsonReader(new StringReader(json));
        r.setStrictness(Strictness.STRICT);
        String current = null;
        try {
            if (r.peek() != JsonToken.BEGIN_OBJECT) throw new FormatException(file, "header is not a JSON object");
            r.beginObject();
            Set<String> seen = new HashSet<>();
            boolean sawMetadata = false;
            while (r.hasNext()) {
                String name = r.nextName();
                current = name;
                if (name.equals(METADATA_KEY)) {
                    if (sawMetadata) throw new FormatException(file, "header has two " + METADATA_KEY + " entries");
                    sawMetadata = true;
                    parseMetadata(file, r, metadata);
                    continue;
                }
                if (!seen.add(name)) throw new FormatException(file, "tensor '" + name + "' appears twice in the header");
                entries.put(name, parseEntry(file, name, r));
            }
            r.endObject();
            boolean trailing;
            try {
                trailing = r.peek() != JsonToken.END_DOCUMENT;
            } catch (IOException e) {
                trailing = true; // strict mode refuses a second top-level value
            }
            if (trailing) throw new FormatException(file, "header has data after its JSON object");
        } catch (FormatException e) {
            throw e;
        } catch (IOException | IllegalStateException | NumberFormatException e) {
            String where = current == null ? "" : " (at '" + current + "')";
            throw new FormatException(file, "header is not valid JSON" + where + ": " + firstSentence(e.getMessage()));
        }
    }

    private static String firstSentence(String m) {
        if (m == null) return "malformed";
        int i = m.indexOf("\nSee ");
        if (i < 0) i = m.indexOf(" See https://");
        return FormatException.oneLine(i >= 0 ? m.substring(0, i) : m);
    }

    private static void parseMetadata(Path file, JsonReader r, Map<String, String> metadata) throws IOException {
        if (r.peek() != JsonToken.BEGIN_OBJECT) throw new FormatException(file, METADATA_KEY + " is not a JSON object");
        r.beginObject();
        while (r.hasNext()) {
            String k = r.nextName();
            if (r.peek() != JsonToken.STRING)
                throw new FormatException(file, METADATA_KEY + " value of '" + k + "' is not a string (" + r.peek() + ")");
            metadata.put(k, r.nextString());
        }
        r.endObject();
    }

    private static Entry parseEntry(Path file, String name, JsonReader r) throws IOException {
        if (r.peek() != JsonToken.BEGIN_OBJECT) throw new FormatException(file, "tensor '" + name + "': entry is not a JSON object");
        String dtypeName = null;
        long[] shape = null;
        long[] offsets = null;
        r.beginObject();
        while (r.hasNext()) {
            String k = r.nextName();
            switch (k) {
                case "dtype":
                    if (r.peek() != JsonToken.STRING) throw new FormatException(file, "tensor '" + name + "': dtype is not a string");
                    dtypeName = r.nextString();
                    break;
                case "shape":
                    shape = longArray(file, name, "shape", r);
                    break;
                case "data_offsets":
                    offsets = longArray(file, name, "data_offsets", r);
                    break;
                default:
                    r.skipValue(); // the Python library ignores unknown fields too
            }
        }
        r.endObject();
        if (dtypeName == null || shape == null || offsets == null)
            throw new FormatException(file, "tensor '" + name + "': entry lacks "
                    + (dtypeName == null ? "dtype" : shape == null ? "shape" : "data_offsets"));
        StDType dtype = StDType.parse(dtypeName);
        if (dtype == null) throw new FormatException(file, "tensor '" + name + "': unknown dtype '" + dtypeName + "'");
        if (offsets.length != 2)
            throw new FormatException(file, "tensor '" + name + "': data_offsets must be [begin, end], got " + Arrays.toString(offsets));
        long numel = 1;
        for (long d : shape) {
            if (d < 0) throw new FormatException(file, "tensor '" + name + "': negative dimension in shape " + Arrays.toString(shape));
            try {
                numel = Math.multiplyExact(numel, d);
            } catch (ArithmeticException e) {
                throw new FormatException(file, "tensor '" + name + "': shape " + Arrays.toString(shape) + " overflows 64 bits");
            }
        }
        long bytes;
        try {
            bytes = Math.multiplyExact(numel, (long) dtype.size);
        } catch (ArithmeticException e) {
            throw new FormatException(file, "tensor '" + name + "': byte size of shape " + Arrays.toString(shape) + " overflows 64 bits");
        }
        long b = offsets[0], e = offsets[1];
        if (b < 0 || e < b)
            throw new FormatException(file, "tensor '" + name + "': bad data_offsets [" + b + ", " + e + "]");
        if (e - b != bytes)
            throw new FormatException(file, "tensor '" + name + "': data_offsets [" + b + ", " + e + "] span " + (e - b)
                    + " bytes, " + dtype + Arrays.toString(shape) + " needs " + bytes);
        return new Entry(name, dtype, shape, b, e);
    }

    private static long[] longArray(Path file, String name, String field, JsonReader r) throws IOException {
        if (r.peek() != JsonToken.BEGIN_ARRAY) throw new FormatException(file, "tensor '" + name + "': " + field + " is not an array");
        List<Long> values = new ArrayList<>();
        r.beginArray();
        while (r.hasNext()) {
            if (r.peek() != JsonToken.NUMBER) throw new FormatException(file, "tensor '" + name + "': " + field + " holds a non-number");
            String s = r.nextString();
            try {
                values.add(Long.parseLong(s));
            } catch (NumberFormatException e) {
                throw new FormatException(file, "tensor '" + name + "': " + field + " value " + s + " is not a 64-bit integer");
            }
        }
        r.endArray();
        long[] out = new long[values.size()];
        for (int i = 0; i < out.length; i++) out[i] = values.get(i);
        return out;
    }

    private static void checkLayout(Path file, Map<String, Entry> entries, long dataSize, List<String> notes)
            throws FormatException {
        List<Entry> sorted = new ArrayList<>(entries.values());
        sorted.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end));
        long pos = 0;
        Entry prev = null;
        for (Entry e : sorted) {
            if (e.end > dataSize)
                throw new FormatException(file, "tensor '" + e.name + "': data_offsets [" + e.begin + ", " + e.end
                        + "] run past the end of the data section (" + dataSize + " bytes): truncated file or lying header");
            if (e.begin < pos && e.bytes() > 0)
                throw new FormatException(file, "tensors '" + prev.name + "' and '" + e.name + "' overlap (bytes "
                        + e.begin + ".." + Math.min(pos, e.end) + ")");
            if (e.begin > pos) notes.add("hole of " + (e.begin - pos) + " bytes before '" + e.name + "'");
            if (e.bytes() > 0 || prev == null) prev = e;
            pos = Math.max(pos, e.end);
        }
        if (pos < dataSize) notes.add((dataSize - pos) + " unused bytes after the last tensor");
    }

    /** The file. */
    public Path path() {
        return path;
    }

    public long fileSize() {
        return fileSize;
    }

    /** The JSON header's length N in bytes. */
    public long headerLength() {
        return headerLength;
    }

    /** File offset of the data section (8 + N). */
    public long dataStart() {
        return 8 + headerLength;
    }

    /** Tensors in header order. */
    public Map<String, Entry> entries() {
        return entries;
    }

    /** The tensor named {@code name}, or null. */
    public Entry entry(String name) {
        return entries.get(name);
    }

    public boolean contains(String name) {
        return entries.containsKey(name);
    }

    /** The {@code __metadata__} map (empty when absent). */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** Tolerated irregularities (gaps between tensors, trailing bytes), one line each. */
    public List<String> notes() {
        return notes;
    }

    /**
     * A zero-copy host view of tensor {@code name} (not counted by the memory tracker).
     *
     * @throws FormatException when there is no such tensor or its dtype has no {@link DType}
     */
    public Tensor tensor(String name) throws IOException {
        Entry e = require(name);
        if (e.dtype.dtype == null)
            throw new FormatException(path, "tensor '" + name + "' has dtype " + e.dtype + ", which lora4j does not load");
        return Tensor.view(region(e), e.dtype.dtype, e.shape);
    }

    /** A copy of tensor {@code name}'s raw bytes (e.g. a quant_state JSON). */
    public byte[] bytes(String name) throws IOException {
        Entry e = require(name);
        if (e.bytes() > Integer.MAX_VALUE) throw new FormatException(path, "tensor '" + name + "' is too large to copy into a byte array");
        byte[] out = new byte[(int) e.bytes()];
        region(e).get(out);
        return out;
    }

    /** The bytes of {@code e} as a little-endian buffer at position 0 (a slice of the mapping). */
    public ByteBuffer region(Entry e) throws IOException {
        long start = dataStart() + e.begin;
        if (e.bytes() == 0) return ByteBuffer.allocateDirect(8).limit(0).slice().order(ByteOrder.LITTLE_ENDIAN);
        if (fileSize <= Integer.MAX_VALUE) {
            ByteBuffer all = mapWhole();
            return all.duplicate().position((int) start).limit((int) (start + e.bytes())).slice().order(ByteOrder.LITTLE_ENDIAN);
        }
        if (e.bytes() > Integer.MAX_VALUE)
            throw new FormatException(path, "tensor '" + e.name + "' holds " + e.bytes() + " bytes; tensors over 2 GiB are not supported");
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            return ch.map(FileChannel.MapMode.READ_ONLY, start, e.bytes()).order(ByteOrder.LITTLE_ENDIAN);
        }
    }

    private synchronized MappedByteBuffer mapWhole() throws IOException {
        if (whole == null) {
            try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
                if (ch.size() != fileSize) throw new FormatException(path, "file changed size while open");
                whole = ch.map(FileChannel.MapMode.READ_ONLY, 0, fileSize);
            }
        }
        return whole;
    }

    private Entry require(String name) throws FormatException {
        Entry e = entries.get(name);
        if (e == null) throw new FormatException(path, "no tensor '" + name + "'");
        return e;
    }
}
