package io.lora4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.io.SafeTensors.StDType;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafeTensorsTest {
    @TempDir
    Path dir;

    @Test
    void roundTripKeepsBytesShapesMetadataAndAlignment() throws IOException {
        float[] f = {1f, -2.5f, 3.25f, Float.MIN_VALUE, -0f, 6f};
        byte[] bf16 = {1, 2, 3, 4, 5, 6};
        byte[] u8 = {7, 8, 9};
        byte[] i64 = new byte[16];
        ByteBuffer.wrap(i64).order(ByteOrder.LITTLE_ENDIAN).putLong(-5).putLong(Long.MAX_VALUE);
        Path file = dir.resolve("a.safetensors");
        long size;
        try (Tensor t = Tensor.ofFloats(f, 2, 3)) {
            size = new SafeTensorsWriter().metadata("format", "pt").metadata("note", "ä \"quoted\"")
                    .add("u8", StDType.U8, new long[] {3}, u8)          // added first, placed last (alignment)
                    .add("w", t)
                    .add("h", DType.BF16, new long[] {3}, bf16)
                    .add("empty", StDType.F32, new long[] {0, 4}, new byte[0])
                    .add("ids", StDType.I64, new long[] {2}, i64)
                    .write(file);
        }
        assertEquals(Files.size(file), size);
        SafeTensors st = SafeTensors.open(file);
        assertEquals(0, st.headerLength() % 8, "header padded to 8 bytes");
        assertEquals(List.of("format", "note"), List.copyOf(st.metadata().keySet()));
        assertEquals("ä \"quoted\"", st.metadata().get("note"));
        assertEquals(5, st.entries().size());
        assertTrue(st.notes().isEmpty(), st.notes().toString());
        for (SafeTensors.Entry e : st.entries().values())
            assertEquals(0, e.begin() % e.dtype().size, e.name() + " aligned to its element size");
        Tensor w = st.tensor("w");
        assertEquals(DType.F32, w.dtype());
        assertArrayEquals(new long[] {2, 3}, w.shape());
        assertArrayEquals(f, w.toFloats());
        assertArrayEquals(bf16, st.bytes("h"));
        assertEquals(DType.BF16, st.tensor("h").dtype());
        assertArrayEquals(u8, st.tensor("u8").toBytes());
        assertArrayEquals(i64, st.bytes("ids"));
        assertEquals(DType.I64, st.tensor("ids").dtype());
        assertEquals(0, st.tensor("empty").numel());
        assertThrows(FormatException.class, () -> st.tensor("nope"));
        try (Stream<Path> s = Files.list(dir)) {
            assertEquals(List.of("a.safetensors"), s.map(p -> p.getFileName().toString()).collect(Collectors.toList()),
                    "no temporary file left behind");
        }
    }

    @Test
    void headerIsCompactJsonPaddedWithSpaces() throws IOException {
        Path file = dir.resolve("b.safetensors");
        new SafeTensorsWriter().add("x", StDType.U8, new long[] {1}, new byte[] {42}).write(file);
        byte[] all = Files.readAllBytes(file);
        long n = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
        String header = new String(all, 8, (int) n, StandardCharsets.UTF_8);
        assertEquals("{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", header.stripTrailing());
        assertTrue(header.length() % 8 == 0 && header.endsWith(" "));
        assertEquals(42, all[all.length - 1]);
    }

    @Test
    void overwritesAtomically() throws IOException {
        Path file = dir.resolve("c.safetensors");
        new SafeTensorsWriter().add("x", StDType.U8, new long[] {1}, new byte[] {1}).write(file);
        new SafeTensorsWriter().add("y", StDType.U8, new long[] {2}, new byte[] {2, 3}).write(file);
        SafeTensors st = SafeTensors.open(file);
        assertEquals(List.of("y"), List.copyOf(st.entries().keySet()));
    }

    @Test
    void writerRejectsDuplicatesAndWrongSizes() {
        SafeTensorsWriter w = new SafeTensorsWriter().add("x", StDType.U8, new long[] {1}, new byte[1]);
        assertThrows(IllegalArgumentException.class, () -> w.add("x", StDType.U8, new long[] {1}, new byte[1]));
        assertThrows(IllegalArgumentException.class, () -> w.add("y", StDType.F32, new long[] {2}, new byte[4]));
        assertThrows(IllegalArgumentException.class, () -> w.add("__metadata__", StDType.U8, new long[] {1}, new byte[1]));
    }

    // ---- malformed files -----------------------------------------------------------------------

    /** A file with a raw header string and {@code dataBytes} zero bytes of data. */
    private Path craft(String name, String header, int dataBytes) throws IOException {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        Path p = dir.resolve(name);
        Files.write(p, b.array());
        return p;
    }

    private String fails(Path p, String expectedFragment) {
        FormatException e = assertThrows(FormatException.class, () -> SafeTensors.open(p));
        String m = e.getMessage();
        assertTrue(m.startsWith(p.toString() + ": "), "names the file: " + m);
        assertFalse(m.contains("\n"), "one line: " + m);
        assertTrue(m.contains(expectedFragment), "'" + expectedFragment + "' in: " + m);
        return m;
    }

    private static String entry(String name, String dtype, String shape, long b, long e) {
        return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" + b + "," + e + "]}";
    }

    @Test
    void truncatedFile() throws IOException {
        Path good = dir.resolve("good.safetensors");
        try (Tensor t = Tensor.ofFloats(new float[64], 8, 8)) {
            new SafeTensorsWriter().add("w", t).write(good);
        }
        byte[] all = Files.readAllBytes(good);
        Path cut = dir.resolve("cut.safetensors");
        Files.write(cut, java.util.Arrays.copyOf(all, all.length - 10));
        fails(cut, "past the end of the data section");
        Path cutHeader = dir.resolve("cuthdr.safetensors");
        Files.write(cutHeader, java.util.Arrays.copyOf(all, 20));
        fails(cutHeader, "runs past the end of the file");
        Path tiny = dir.resolve("tiny.safetensors");
        Files.write(tiny, new byte[] {1, 2, 3});
        fails(tiny, "too short");
    }

    @Test
    void offsetsPastTheEnd() throws IOException {
        fails(craft("past.safetensors", "{" + entry("a", "F32", "[4]", 0, 16) + "}", 8), "past the end of the data section");
    }

    @Test
    void overlappingTensors() throws IOException {
        fails(craft("ovl.safetensors", "{" + entry("a", "F32", "[4]", 0, 16) + "," + entry("b", "F32", "[2]", 8, 16) + "}", 16),
                "overlap");
    }

    @Test
    void badDtype() throws IOException {
        fails(craft("dt.safetensors", "{" + entry("a", "F33", "[4]", 0, 16) + "}", 16), "unknown dtype 'F33'");
    }

    @Test
    void hugeHeaderClaimed() throws IOException {
        ByteBuffer b = ByteBuffer.allocate(64).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(200_000_000L).put("{}".getBytes(StandardCharsets.UTF_8));
        Path p = dir.resolve("huge.safetensors");
        Files.write(p, b.array());
        fails(p, "exceeds the limit");
        b.putLong(0, -1L);
        Files.write(p, b.array());
        fails(p, "exceeds the limit");
    }

    @Test
    void nonJsonHeaders() throws IOException {
        fails(craft("nj.safetensors", "not json at all!", 0), "not valid JSON");
        fails(craft("arr.safetensors", "[1, 2, 3]", 0), "not a JSON object");
        fails(craft("trail.safetensors", "{}{}", 0), "after its JSON object");
        fails(craft("unterminated.safetensors", "{\"a\":{\"dtype\":\"F32\"", 0), "not valid JSON");
        byte[] bad = {'{', '"', (byte) 0xff, '"', ':', '1', '}', ' '};
        ByteBuffer b = ByteBuffer.allocate(8 + bad.length).order(ByteOrder.LITTLE_ENDIAN).putLong(bad.length).put(bad);
        Path p = dir.resolve("utf.safetensors");
        Files.write(p, b.array());
        fails(p, "UTF-8");
    }

    @Test
    void badEntries() throws IOException {
        fails(craft("neg.safetensors", "{" + entry("a", "F32", "[-1]", 0, 0) + "}", 0), "negative dimension");
        fails(craft("ovf.safetensors", "{" + entry("a", "F32", "[4294967296,4294967296]", 0, 0) + "}", 0), "overflows");
        fails(craft("ovf2.safetensors", "{" + entry("a", "F32", "[2305843009213693952,4]", 0, 0) + "}", 0), "overflows");
        fails(craft("size.safetensors", "{" + entry("a", "F32", "[3]", 0, 16) + "}", 16), "needs 12");
        fails(craft("rev.safetensors", "{" + entry("a", "F32", "[0]", 8, 4) + "}", 16), "bad data_offsets");
        fails(craft("frac.safetensors", "{" + entry("a", "F32", "[1.5]", 0, 6) + "}", 16), "not a 64-bit integer");
        fails(craft("dup.safetensors", "{" + entry("a", "U8", "[1]", 0, 1) + "," + entry("a", "U8", "[1]", 1, 2) + "}", 2), "twice");
        fails(craft("miss.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1), "lacks data_offsets");
        fails(craft("md.safetensors", "{\"__metadata__\":{\"k\":1}}", 0), "not a string");
        fails(craft("three.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 2), "[begin, end]");
    }

    @Test
    void holesAndTrailingBytesAreToleratedAndNoted() throws IOException {
        Path p = craft("hole.safetensors", "{" + entry("a", "U8", "[2]", 0, 2) + "," + entry("b", "U8", "[2]", 4, 6) + "}", 8);
        SafeTensors st = SafeTensors.open(p);
        assertEquals(2, st.notes().size(), st.notes().toString());
        assertTrue(st.notes().get(0).contains("hole of 2 bytes before 'b'"));
        assertTrue(st.notes().get(1).contains("2 unused bytes"));
        // unknown but valid safetensors dtypes parse; they just do not load as tensors
        Path q = craft("i8.safetensors", "{" + entry("a", "I8", "[2]", 0, 2) + "," + entry("b", "BOOL", "[1]", 2, 3) + ","
                + entry("c", "F64", "[1]", 8, 16) + "}", 16);
        SafeTensors s2 = SafeTensors.open(q);
        assertEquals(StDType.F64, s2.entry("c").dtype());
        assertThrows(FormatException.class, () -> s2.tensor("a"));
        assertEquals(2, s2.bytes("a").length);
    }

    @Test
    void filesOver2GiBMapPerTensor() throws IOException {
        // a sparse file: the data section spans 2.5 GiB but takes no disk space
        long big = 2_684_354_560L; // 2.5 GiB of U8
        String header = "{" + entry("big", "U8", "[" + big + "]", 0, big) + "," + entry("tail", "F32", "[2]", big, big + 8) + "}";
        Path p = craft("sparse.safetensors", header, 0);
        long dataStart = Files.size(p);
        try (java.io.RandomAccessFile raf = new java.io.RandomAccessFile(p.toFile(), "rw")) {
            raf.setLength(dataStart + big + 8);
            raf.seek(dataStart + big);
            raf.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putFloat(1.5f).putFloat(-2f).array());
        }
        SafeTensors st = SafeTensors.open(p);
        assertArrayEquals(new float[] {1.5f, -2f}, st.tensor("tail").toFloats());
        FormatException e = assertThrows(FormatException.class, () -> st.tensor("big"));
        assertTrue(e.getMessage().contains("over 2 GiB"), e.getMessage());
    }

    // ---- sharded ------------------------------------------------------------------------------

    private void writeShard(Path p, String name, byte value) throws IOException {
        new SafeTensorsWriter().add(name, StDType.U8, new long[] {1}, new byte[] {value}).write(p);
    }

    @Test
    void shardedIndexResolvesEveryTensor() throws IOException {
        Path m = Files.createDirectories(dir.resolve("m"));
        writeShard(m.resolve("model-00001-of-00002.safetensors"), "a", (byte) 1);
        writeShard(m.resolve("model-00002-of-00002.safetensors"), "b", (byte) 2);
        Files.writeString(m.resolve(SafeTensorsDir.INDEX), "{\"metadata\":{\"total_size\":2},\"weight_map\":{"
                + "\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00002-of-00002.safetensors\"}}");
        SafeTensorsDir sd = SafeTensorsDir.open(m);
        assertEquals(List.of("a", "b"), sd.names());
        assertEquals(2, sd.files().size());
        assertArrayEquals(new byte[] {2}, sd.bytes("b"));
        assertEquals("model-00002-of-00002.safetensors", sd.fileOf("b").path().getFileName().toString());
    }

    @Test
    void shardNamesMayNotEscapeTheDirectory() throws IOException {
        Path m = Files.createDirectories(dir.resolve("m2"));
        Path outside = dir.resolve("outside.safetensors");
        writeShard(outside, "a", (byte) 1);
        Path index = m.resolve(SafeTensorsDir.INDEX);
        for (String[] c : new String[][] {{"../outside.safetensors", "escapes"}, {outside.toString(), "absolute"},
            {"missing.safetensors", "does not exist"}}) {
            Files.writeString(index, "{\"weight_map\":{\"a\":\"" + c[0] + "\"}}");
            FormatException e = assertThrows(FormatException.class, () -> SafeTensorsDir.open(m));
            assertTrue(e.getMessage().startsWith(index + ": ") && e.getMessage().contains(c[1]), e.getMessage());
        }
        Files.createSymbolicLink(m.resolve("link.safetensors"), outside);
        Files.writeString(index, "{\"weight_map\":{\"a\":\"link.safetensors\"}}");
        FormatException e = assertThrows(FormatException.class, () -> SafeTensorsDir.open(m));
        assertTrue(e.getMessage().contains("outside the model directory"), e.getMessage());
        Files.writeString(index, "{\"weights\":{}}");
        assertTrue(assertThrows(FormatException.class, () -> SafeTensorsDir.open(m)).getMessage().contains("weight_map"));
        writeShard(m.resolve("s.safetensors"), "x", (byte) 1);
        Files.writeString(index, "{\"weight_map\":{\"a\":\"s.safetensors\"}}");
        e = assertThrows(FormatException.class, () -> SafeTensorsDir.open(m));
        assertTrue(e.getMessage().contains("no tensor 'a'"), e.getMessage());
    }

    @Test
    void atomicDirectoryLeavesNothingOnFailure() throws IOException {
        Path out = dir.resolve("out");
        assertThrows(IOException.class, () -> AtomicFiles.writeDirectory(out, false, tmp -> {
            Files.writeString(tmp.resolve("half"), "x");
            throw new IOException("disk full");
        }));
        try (Stream<Path> s = Files.list(dir)) {
            assertEquals(List.of(), s.collect(Collectors.toList()), "no output and no temporary directory");
        }
        AtomicFiles.writeDirectory(out, false, tmp -> Files.writeString(tmp.resolve("f"), "1"));
        assertThrows(FormatException.class, () -> AtomicFiles.writeDirectory(out, false, tmp -> {}));
        assertThrows(IOException.class, () -> AtomicFiles.writeDirectory(out, true, tmp -> {
            throw new IOException("fail");
        }));
        assertEquals("1", Files.readString(out.resolve("f")), "a failed overwrite keeps the old directory");
        AtomicFiles.writeDirectory(out, true, tmp -> Files.writeString(tmp.resolve("g"), "2"));
        try (Stream<Path> s = Files.list(dir)) {
            assertEquals(List.of("out"), s.map(p -> p.getFileName().toString()).collect(Collectors.toList()));
        }
        assertFalse(Files.exists(out.resolve("f")));
        assertEquals("2", Files.readString(out.resolve("g")));
    }
}
