package io.lora4j.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.lora4j.tensor.Halfs;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The quantizers against ggml's published block layouts (ggml-common.h) on blocks whose bytes
 * follow by hand from the layout, and against ggml's own reference quantizers and dequantizers
 * (the libggml-base.so that node-llama-cpp ships, through scripts/llamacpp/ggml_oracle.c) on random
 * and adversarial rows, byte for byte.
 */
class GgmlQuantsTest {

    private static byte lo(short h) { return (byte) h; }
    private static byte hi(short h) { return (byte) (h >> 8); }

    @Test
    void q8_0HandBlock() {
        // amax 127 -> d = 1 (f16 0x3C00), q = x
        float[] x = new float[32];
        for (int j = 0; j < 32; j++) x[j] = j == 0 ? -127 : j == 1 ? 127 : j - 16;
        byte[] want = new byte[34];
        want[0] = 0x00;
        want[1] = 0x3C;
        for (int j = 0; j < 32; j++) want[2 + j] = (byte) (int) x[j];
        assertArrayEquals(want, GgmlQuants.quantize(GgmlType.Q8_0, x));
    }

    @Test
    void q4_0HandBlock() {
        // the largest magnitude is -8 -> d = -8/-8 = 1; q = x + 8; element j low nibble, j+16 high nibble
        float[] x = new float[32];
        for (int j = 0; j < 32; j++) x[j] = j == 0 ? -8 : (j % 16) - 8;
        byte[] want = new byte[18];
        want[0] = 0x00;
        want[1] = 0x3C;
        for (int j = 0; j < 16; j++) want[2 + j] = (byte) (((int) x[j] + 8) | (((int) x[j + 16] + 8) << 4));
        assertArrayEquals(want, GgmlQuants.quantize(GgmlType.Q4_0, x));
        float[] back = new float[32];
        GgmlQuants.dequantizeRow(GgmlType.Q4_0, ByteBuffer.wrap(want), back, 0, 32);
        assertArrayEquals(x, back);
    }

    @Test
    void q5_0HandBlock() {
        // largest magnitude -16 -> d = 1; q = x + 16 in 0..31: low nibbles as q4_0, fifth bits in the u32 qh (bit j = element j)
        float[] x = new float[32];
        for (int j = 0; j < 32; j++) x[j] = j == 0 ? -16 : j - 16;
        byte[] want = new byte[22];
        want[0] = 0x00;
        want[1] = 0x3C;
        int qh = 0;
        for (int j = 0; j < 32; j++) if ((((int) x[j] + 16) & 16) != 0) qh |= 1 << j;
        ByteBuffer.wrap(want, 2, 4).order(ByteOrder.LITTLE_ENDIAN).putInt(qh);
        for (int j = 0; j < 16; j++) want[6 + j] = (byte) ((((int) x[j] + 16) & 15) | ((((int) x[j + 16] + 16) & 15) << 4));
        assertArrayEquals(want, GgmlQuants.quantize(GgmlType.Q5_0, x));
    }

    @Test
    void q4_KHandBlocks() {
        assertArrayEquals(new byte[144], GgmlQuants.quantize(GgmlType.Q4_K, new float[256]), "an all-zero block is all zero bytes");
        // a constant block of 1: every sub-block has min 0 and scale 1/15 (levels 15; the search never beats it,
        // its determinant is 0 for constant levels), so the 6-bit scales are all 63 and the mins 0:
        // bytes 0..3 = 63 | (63>>4)<<6, bytes 4..7 = 0 | (0>>4)<<6, bytes 8..11 = (63&15) | (0&15)<<4
        float[] x = new float[256];
        java.util.Arrays.fill(x, 1f);
        short d = Halfs.fromFloat((1f / 15f) / 63f);
        byte[] want = new byte[144];
        want[0] = lo(d);
        want[1] = hi(d);
        for (int i = 0; i < 4; i++) want[4 + i] = (byte) 255;
        for (int i = 8; i < 12; i++) want[4 + i] = 15;
        for (int i = 16; i < 144; i++) want[i] = (byte) 0xFF;
        assertArrayEquals(want, GgmlQuants.quantize(GgmlType.Q4_K, x));
    }

    @Test
    void q6_KHandBlock() {
        // a constant block of 1: each 16-group's scale is -1/32 (level -32 for x = 1), so d = 1/4096 (f16 0x0C00),
        // every int8 scale -128, every 6-bit level 0: ql and qh all zero; dequantized 2^-12 * -128 * (0 - 32) = 1
        float[] x = new float[256];
        java.util.Arrays.fill(x, 1f);
        byte[] want = new byte[210];
        for (int i = 192; i < 208; i++) want[i] = (byte) 0x80;
        want[208] = 0x00;
        want[209] = 0x0C;
        assertArrayEquals(want, GgmlQuants.quantize(GgmlType.Q6_K, x));
        float[] back = new float[256];
        GgmlQuants.dequantizeRow(GgmlType.Q6_K, ByteBuffer.wrap(want), back, 0, 256);
        assertArrayEquals(x, back);
    }

    @Test
    void roundingHelpersAreCs() {
        assertEquals(-3f, GgmlQuants.roundf(-2.5f)); // roundf: half away from zero
        assertEquals(3f, GgmlQuants.roundf(2.5f));
        assertEquals(0f, GgmlQuants.roundf(0.49999997f));
        assertEquals(2, GgmlQuants.nearestInt(2.5f)); // nearest_int: half to even
        assertEquals(-2, GgmlQuants.nearestInt(-2.5f));
        assertEquals(4, GgmlQuants.nearestInt(3.5f));
    }

    /** Rows that exercise the rounding and search paths: gaussian, outliers, ties, tiny, constant, zero, sign flips. */
    static float[] adversarialRows(int rows, int n, long seed) {
        Random r = new Random(seed);
        float[] x = new float[rows * n];
        for (int row = 0; row < rows; row++) {
            int kind = row % 8;
            for (int j = 0; j < n; j++) {
                float v;
                switch (kind) {
                    case 0: v = (float) r.nextGaussian(); break;
                    case 1: v = (float) r.nextGaussian() * (j % 37 == 0 ? 40 : 1); break;
                    case 2: v = (r.nextInt(33) - 16) * 0.25f; break; // exact halves: rounding ties
                    case 3: v = (float) r.nextGaussian() * 1e-6f; break;
                    case 4: v = j % 64 < 32 ? 0.5f : -0.75f; break;
                    case 5: v = 0f; break;
                    case 6: v = (float) Math.abs(r.nextGaussian()) + 0.1f; break; // all positive: min clamps to 0
                    default: v = (float) (r.nextGaussian() * 0.02); break; // weight-like scale
                }
                x[row * n + j] = v;
            }
        }
        return x;
    }

    @Test
    void bitExactWithGgmlReferenceQuantizers(@TempDir Path dir) throws Exception {
        String why = LlamaCpp.unavailable();
        assumeTrue(why == null, why);
        int n = 768;
        float[] x = adversarialRows(64, n, 3407);
        ByteBuffer in = ByteBuffer.allocate(4 * x.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : x) in.putFloat(v);
        Path src = dir.resolve("x.f32");
        Files.write(src, in.array());
        for (GgmlType t : new GgmlType[] {GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q5_0, GgmlType.Q4_K, GgmlType.Q6_K}) {
            Path ref = dir.resolve("x." + t.ggmlName());
            LlamaCpp.oracle("rows", t.ggmlName(), Integer.toString(n), src.toString(), ref.toString());
            byte[] want = Files.readAllBytes(ref);
            ByteBuffer got = ByteBuffer.allocate(want.length);
            for (int row = 0; row < 64; row++) GgmlQuants.quantizeRow(t, x, row * n, n, got);
            for (int i = 0; i < want.length; i++)
                if (want[i] != got.array()[i])
                    throw new AssertionError(t + ": byte " + i + " (row " + i / t.rowBytes(n) + ") is " + got.array()[i] + ", ggml writes " + want[i]);
            // and our dequantizer reads ggml's bytes as ggml does
            Path deq = dir.resolve("x." + t.ggmlName() + ".f32");
            LlamaCpp.oracle("dequant", t.ggmlName(), Integer.toString(n), ref.toString(), deq.toString());
            ByteBuffer d = ByteBuffer.wrap(Files.readAllBytes(deq)).order(ByteOrder.LITTLE_ENDIAN);
            float[] mine = new float[x.length];
            ByteBuffer w = ByteBuffer.wrap(want);
            for (int row = 0; row < 64; row++) GgmlQuants.dequantizeRow(t, w, mine, row * n, n);
            for (int i = 0; i < x.length; i++) assertEquals(d.getFloat(), mine[i], 0f, t + " dequantized element " + i);
        }
    }
}
