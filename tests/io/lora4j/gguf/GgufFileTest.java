package io.lora4j.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.io.FormatException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** GGUF v3 writer and reader: round trips, the byte layout of ggml's docs/gguf.md, and malformed files. */
class GgufFileTest {

    private static GgufWriter sample() {
        float[] w = new float[64 * 3];
        for (int i = 0; i < w.length; i++) w[i] = (float) Math.sin(i * 0.37) * 0.1f;
        return new GgufWriter()
                .put("general.architecture", GgufValue.string("llama"))
                .put("u8", new GgufValue(GgufValue.Type.UINT8, null, 200L))
                .put("i8", new GgufValue(GgufValue.Type.INT8, null, -5L))
                .put("u16", new GgufValue(GgufValue.Type.UINT16, null, 65000L))
                .put("i16", new GgufValue(GgufValue.Type.INT16, null, -30000L))
                .put("u32", GgufValue.u32(4000000000L))
                .put("i32", GgufValue.i32(-7))
                .put("u64", GgufValue.u64(1L << 40))
                .put("i64", new GgufValue(GgufValue.Type.INT64, null, -(1L << 40)))
                .put("f32", GgufValue.f32(1e-5))
                .put("f64", new GgufValue(GgufValue.Type.FLOAT64, null, Math.PI))
                .put("bool", GgufValue.bool(true))
                .put("text", GgufValue.string("héllo ▁wörld \u2581 <|eot_id|>"))
                .put("strings", GgufValue.strings(List.of("a", "", "ü b")))
                .put("floats", GgufValue.f32s(new float[] {1.5f, -0f, Float.MIN_VALUE}))
                .put("ints", GgufValue.i32s(new int[] {3, -1, Integer.MAX_VALUE}))
                .put("bools", new GgufValue(GgufValue.Type.ARRAY, GgufValue.Type.BOOL, new boolean[] {true, false}))
                .addTensor("vec", GgmlType.F32, new long[] {5}, sink -> {
                    ByteBuffer b = ByteBuffer.allocate(20).order(ByteOrder.LITTLE_ENDIAN);
                    for (int i = 0; i < 5; i++) b.putFloat(i + 0.5f);
                    sink.write(b.flip());
                })
                .addTensor("mat.q8", GgmlType.Q8_0, new long[] {64, 3}, sink -> {
                    ByteBuffer b = ByteBuffer.allocate(3 * 68);
                    for (int r = 0; r < 3; r++) GgmlQuants.quantizeRow(GgmlType.Q8_0, w, r * 64, 64, b);
                    sink.write(b.flip());
                })
                .addTensor("mat.f16", GgmlType.F16, new long[] {3, 2}, new byte[12]);
    }

    @Test
    void roundTrip(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("m.gguf");
        GgufWriter w = sample();
        long size = w.write(f);
        assertEquals(Files.size(f), size);
        try (GgufFile g = GgufFile.open(f)) {
            assertEquals(3, g.version());
            assertEquals(32, g.alignment());
            assertEquals(w.metadata(), g.metadata());
            assertEquals(List.of("general.architecture", "u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "bool", "text",
                    "strings", "floats", "ints", "bools"), List.copyOf(g.metadata().keySet()));
            assertEquals(List.of("vec", "mat.q8", "mat.f16"), List.copyOf(g.tensors().keySet()));
            assertArrayEquals(new float[] {0.5f, 1.5f, 2.5f, 3.5f, 4.5f}, g.floats(g.tensor("vec")));
            GgufFile.TensorInfo q = g.tensor("mat.q8");
            assertArrayEquals(new long[] {3, 64}, q.shape());
            assertEquals(GgmlType.Q8_0, q.type());
            assertEquals(0, (g.dataStart() + q.offset()) % 32, "tensor data aligned to general.alignment");
            assertEquals(32, q.offset(), "the 20-byte vec is padded to 32");
            float[] back = g.floats(q);
            for (int i = 0; i < back.length; i++) assertEquals((float) Math.sin(i * 0.37) * 0.1f, back[i], 0.1f / 127 + 1e-6f);
        }
    }

    @Test
    void headerBytesFollowTheSpec(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("h.gguf");
        new GgufWriter().put("k", GgufValue.u32(7)).addTensor("t", GgmlType.F32, new long[] {1}, new byte[4]).write(f);
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(f)).order(ByteOrder.LITTLE_ENDIAN);
        byte[] magic = new byte[4];
        b.get(magic);
        assertEquals("GGUF", new String(magic, StandardCharsets.US_ASCII));
        assertEquals(3, b.getInt());           // version
        assertEquals(1, b.getLong());          // tensor count
        assertEquals(1, b.getLong());          // kv count
        assertEquals(1, b.getLong());          // key length
        assertEquals('k', b.get());
        assertEquals(4, b.getInt());           // UINT32
        assertEquals(7, b.getInt());
        assertEquals(1, b.getLong());          // name length
        assertEquals('t', b.get());
        assertEquals(1, b.getInt());           // n_dims
        assertEquals(1, b.getLong());          // ne[0]
        assertEquals(0, b.getInt());           // GGML_TYPE_F32
        assertEquals(0, b.getLong());          // offset
        assertEquals(128, b.capacity(), "74 header bytes padded to 96, then 4 data bytes padded to 32 as ggml pads every tensor");
    }

    @Test
    void malformedFilesAreOneLineErrors(@TempDir Path dir) throws IOException {
        Path good = dir.resolve("good.gguf");
        sample().write(good);
        byte[] bytes = Files.readAllBytes(good);
        Path bad = dir.resolve("bad.gguf");
        // truncations of the header and of the data (the last 20 bytes are the last tensor's padding) are refused
        for (int cut : new int[] {0, 3, 4, 8, 23, 30, 100, 300, bytes.length - 25}) {
            Files.write(bad, Arrays.copyOf(bytes, cut));
            FormatException e = assertThrows(FormatException.class, () -> GgufFile.open(bad).close(), "cut at " + cut);
            assertFalse(e.getMessage().contains("\n"));
            assertTrue(e.getMessage().contains(bad.toString()));
        }
        byte[] m = bytes.clone();
        m[0] = 'X';
        Files.write(bad, m);
        assertTrue(assertThrows(FormatException.class, () -> GgufFile.open(bad)).getMessage().contains("not a GGUF file"));
        m = bytes.clone();
        m[4] = 9;
        Files.write(bad, m);
        assertTrue(assertThrows(FormatException.class, () -> GgufFile.open(bad)).getMessage().contains("version 9"));
        m = bytes.clone();
        ByteBuffer.wrap(m).order(ByteOrder.LITTLE_ENDIAN).putLong(16, Long.MAX_VALUE); // kv count
        Files.write(bad, m);
        assertTrue(assertThrows(FormatException.class, () -> GgufFile.open(bad)).getMessage().contains("exceeds the file"));
        assertThrows(FormatException.class, () -> GgufFile.open(dir.resolve("absent.gguf")));
    }

    @Test
    void aFailingPayloadLeavesNothing(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("x.gguf");
        GgufWriter w = new GgufWriter().addTensor("t", GgmlType.F32, new long[] {4}, sink -> sink.write(ByteBuffer.allocate(8)));
        assertThrows(IllegalStateException.class, () -> w.write(f), "8 bytes for a 16-byte tensor");
        GgufWriter boom = new GgufWriter().addTensor("t", GgmlType.F32, new long[] {4}, sink -> {
            throw new IOException("disk full");
        });
        assertThrows(IOException.class, () -> boom.write(f));
        try (Stream<Path> s = Files.list(dir)) {
            assertEquals(List.of(), s.toList(), "no file and no temporary file left");
        }
        assertThrows(IllegalArgumentException.class, () -> new GgufWriter().addTensor("q", GgmlType.Q4_K, new long[] {288, 2}, new byte[0]),
                "288 is not a multiple of q4_K's 256");
    }
}
