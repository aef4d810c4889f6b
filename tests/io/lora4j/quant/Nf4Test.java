package io.lora4j.quant;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.nativeapi.Lora4jOpsNative;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.util.Arrays;
import java.util.Random;
import org.bytedeco.javacpp.FloatPointer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * NF4 on the CPU backend against golden vectors from scripts/reference/nf4_reference.py (an
 * independent PyTorch reimplementation of bitsandbytes), plus error statistics, edge cases and
 * the 4-bit matmul against an fp64 dequantize-then-multiply.
 */
class Nf4Test {
    /**
     * Mean |w - dequant(quant(w))| / mean |w| for N(0,1) weights at blocksize 64. Measured with
     * the PyTorch reference (scripts/reference/nf4_reference.py) over 40 seeds of 64Ki elements:
     * mean 0.0912, sigma 0.00034, max 0.0922; bound = mean + 10 sigma.
     */
    static final double NF4_MEAN_REL_ERROR_BS64 = 0.095;
    /** The same statistic with double quantization: the 8-bit absmax adds well under 1 %. */
    static final double NF4_DQ_MEAN_REL_ERROR_BS64 = 0.096;
    /**
     * fp32 matmul vs fp64 of the same dequantized weight: sums of up to 700 products of
     * |x|,|w| <= ~4 in fp32 with OpenBLAS' blocked order; atol + rtol * |ref| per element.
     */
    static final double MATMUL_ATOL = 2e-4, MATMUL_RTOL = 1e-4;
    /** Offsets are fp32 means: torch's cascade sum and ours may differ in the last bits. */
    static final int OFFSET_MAX_ULPS = 8;

    static Backend cpu;
    static Nf4GoldenFile golden;

    @BeforeAll
    static void setup() throws IOException {
        cpu = Backends.cpu();
        golden = Nf4GoldenFile.load();
        assertTrue(golden.cases.size() >= 8, "golden file holds " + golden.cases.size() + " cases");
    }

    static Tensor input(Nf4GoldenFile.Case c) {
        DType dt = c.dtype.equals("f32") ? DType.F32 : c.dtype.equals("bf16") ? DType.BF16 : DType.F16;
        return Tensor.ofBytes(c.bytes("input"), dt, c.n);
    }

    @Test
    void codeTableAndDynamicMapAreBitsandbytesBitForBit() {
        try (FloatPointer code = new FloatPointer(16); FloatPointer map = new FloatPointer(256)) {
            Lora4jOpsNative.lora4j_nf4_code(code);
            Lora4jOpsNative.lora4j_dynamic_map(map);
            float[] c = new float[16], m = new float[256];
            code.get(c);
            map.get(m);
            if (golden.globals.containsKey("nf4_code"))
                assertArrayEquals(Nf4GoldenFile.floats(golden.globals.get("nf4_code")), c);
            assertArrayEquals(Nf4GoldenFile.floats(golden.globals.get("dynamic_map")), m);
        }
    }

    @Test
    void quantizeIsByteExactOnEveryGoldenCase() {
        for (Nf4GoldenFile.Case c : golden.cases) {
            try (Tensor w = input(c); Nf4Weight q = Nf4.quantize(cpu, w, c.blocksize, false)) {
                assertArrayEquals(c.bytes("packed"), q.packed().toBytes(), "packed bytes of " + c);
                assertArrayEquals(c.floats("absmax"), q.absmax().toFloats(), "absmax of " + c);
                try (Tensor d = Nf4.dequantize(cpu, q)) {
                    assertArrayEquals(c.floats("dequant"), d.toFloats(), "dequant of " + c);
                }
            }
        }
    }

    @Test
    void doubleQuantMatchesTheReference() {
        for (Nf4GoldenFile.Case c : golden.cases) {
            float refOffset = c.floats("offset")[0];
            try (Tensor w = input(c); Nf4Weight q = Nf4.quantize(cpu, w, c.blocksize, true)) {
                float offset = q.doubleQuant().offset();
                assertTrue(Math.abs(offset - refOffset) <= OFFSET_MAX_ULPS * Math.ulp(refOffset),
                        c + ": offset " + offset + " vs reference " + refOffset);
                if (Float.floatToIntBits(offset) == Float.floatToIntBits(refOffset)) {
                    assertArrayEquals(c.bytes("qabsmax"), q.doubleQuant().qabsmax().toBytes(), "qabsmax of " + c);
                    assertArrayEquals(c.floats("nested_absmax"), q.doubleQuant().nestedAbsmax().toFloats(),
                            "nested_absmax of " + c);
                    assertArrayEquals(c.floats("absmax_dq"), q.absmax().toFloats(), "dequantized absmax of " + c);
                }
            }
            // Whatever the last bit of the mean, the 8-bit codes of (absmax - offset) with the
            // reference's offset must be the reference's, and so must their dequantization.
            float[] absmax = c.floats("absmax");
            float[] centered = new float[absmax.length];
            for (int i = 0; i < absmax.length; i++) centered[i] = absmax[i] - refOffset;
            long nested = Nf4.blocks(absmax.length, Nf4Weight.NESTED_BLOCKSIZE);
            try (Tensor cen = Tensor.ofFloats(centered, absmax.length);
                 Tensor qa = Tensor.allocate(DType.U8, MemoryCategory.WORKSPACE, absmax.length);
                 Tensor na = Tensor.allocate(DType.F32, MemoryCategory.WORKSPACE, nested);
                 Tensor back = Tensor.allocate(DType.F32, MemoryCategory.WORKSPACE, absmax.length)) {
                Lora4jOpsNative.lora4j_nf4_quantize_nested(cen.floatPointer(), absmax.length, qa.bytePointer(),
                        na.floatPointer());
                assertArrayEquals(c.bytes("qabsmax"), qa.toBytes(), "nested codes of " + c);
                assertArrayEquals(c.floats("nested_absmax"), na.toFloats(), "nested absmax of " + c);
                cpu.nf4DequantAbsmax(qa, na, refOffset, back);
                assertArrayEquals(c.floats("absmax_dq"), back.toFloats(), "absmax from double quant of " + c);
            }
        }
    }

    @Test
    void blocksSpanRowsOfWidth288() {
        // stories15M rows are 288 wide: block 4 covers elements 256..319, across rows 0 and 1.
        Nf4GoldenFile.Case c = golden.cases.stream().filter(k -> k.name.startsWith("rows288")).findFirst().orElseThrow();
        try (Tensor w = input(c).reshape(4, 288); Nf4Weight q = Nf4.quantize(cpu, w, 64, false)) {
            assertArrayEquals(new long[] {4, 288}, q.shape());
            assertEquals(1152 / 64, q.absmax().numel());
            float[] x = w.toFloats();
            float m = 0;
            for (int i = 256; i < 320; i++) m = Math.max(m, Math.abs(x[i]));
            assertEquals(m, q.absmax().toFloats()[4]);
        }
    }

    @ParameterizedTest
    @CsvSource({"false", "true"})
    void roundTripErrorStaysWithinTheMeasuredBound(boolean dq) {
        int n = 1 << 16;
        Random r = new Random(42);
        float[] w = new float[n];
        for (int i = 0; i < n; i++) w[i] = (float) r.nextGaussian();
        try (Tensor t = Tensor.ofFloats(w, n); Nf4Weight q = Nf4.quantize(cpu, t, 64, dq);
             Tensor d = Nf4.dequantize(cpu, q)) {
            float[] back = d.toFloats();
            double err = 0, mag = 0;
            for (int i = 0; i < n; i++) {
                err += Math.abs(w[i] - back[i]);
                mag += Math.abs(w[i]);
            }
            double rel = err / mag;
            assertTrue(rel < (dq ? NF4_DQ_MEAN_REL_ERROR_BS64 : NF4_MEAN_REL_ERROR_BS64),
                    "mean relative error " + rel);
            assertTrue(rel > 0.05, "suspiciously small NF4 error " + rel + ": is it quantizing at all?");
        }
    }

    @Test
    void zeroBlocksDecodeToZeroAndOddTailsPadLikeBitsandbytes() {
        float[] w = new float[129];
        for (int i = 64; i < 129; i++) w[i] = (i % 7) - 3f;
        try (Tensor t = Tensor.ofFloats(w, 129); Nf4Weight q = Nf4.quantize(cpu, t, 64, false);
             Tensor d = Nf4.dequantize(cpu, q)) {
            assertEquals(65, q.packed().numel());
            assertEquals(0f, q.absmax().toFloats()[0]);
            float[] back = d.toFloats();
            for (int i = 0; i < 64; i++) assertEquals(0f, back[i], 0f, "zero block decodes to ±0");
            assertEquals(7, q.packed().toBytes()[64] & 0x0f, "odd n: the last low nibble codes bitsandbytes' 0.0 padding");
            assertEquals(w[128], back[128], 1e-6);
        }
    }

    @Test
    void nanOrInfInTheWeightIsAClearError() {
        for (float bad : new float[] {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY}) {
            float[] w = new float[200];
            Arrays.fill(w, 0.5f);
            w[137] = bad;
            try (Tensor t = Tensor.ofFloats(w, 200)) {
                RuntimeException e = assertThrows(RuntimeException.class, () -> Nf4.quantize(cpu, t, 64, true));
                assertTrue(e.getMessage().contains("137"), "message names the element: " + e.getMessage());
            }
        }
    }

    @Test
    void badArgumentsAreRejectedBeforeAnyNativeCall() {
        try (Tensor t = Tensor.ofFloats(new float[128], 2, 64)) {
            assertThrows(IllegalArgumentException.class, () -> Nf4.quantize(cpu, t, 48, false));
            assertThrows(IllegalArgumentException.class, () -> Nf4.quantize(cpu, t, 16, false));
            assertThrows(IllegalArgumentException.class, () -> Nf4.quantize(cpu, t, 8192, false));
            try (Nf4Weight q = Nf4.quantize(cpu, t, 64, false); Tensor x = Tensor.ofFloats(new float[3 * 63], 3, 63)) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Nf4.matmul(cpu, x, q));
                assertTrue(e.getMessage().contains("[T, 64]"), e.getMessage());
            }
        }
        try (Tensor i = Tensor.allocate(DType.I32, MemoryCategory.WORKSPACE, 64)) {
            assertThrows(IllegalArgumentException.class, () -> Nf4.quantize(cpu, i, 64, false));
        }
    }

    @ParameterizedTest
    @CsvSource({"1, 288, 96, 64", "7, 288, 768, 64", "16, 100, 33, 64", "33, 768, 288, 64", "64, 64, 130, 64",
            "5, 4096, 64, 64",
            // T = 1 on the ISA-dispatched GEMV: a partial last chunk (40, 72, 200), 1-4 blocks per chunk
            // (bs 128, 64, 32), blocks larger than a row (2048), in % 8 != 0 (the general kernel)
            "1, 40, 11, 32", "1, 72, 5, 32", "1, 1024, 6, 128", "1, 2816, 5, 64", "1, 768, 13, 32", "1, 384, 8, 2048",
            "1, 200, 5, 4096", "1, 100, 7, 64",
            // the AVX-512 kernel's 4 row streams a quarter of the rows apart (q = 4 and 2) with rows left over,
            // for each chunk layout: 2 blocks per chunk (bs 64), 1 (bs 256, a block spanning 2 rows), any (bs 32)
            "1, 1024, 19, 64", "1, 128, 10, 256", "1, 512, 9, 32"})
    void matmulForwardAndBackwardMatchFp64OfTheDequantizedWeight(int tokens, int in, int out, int blocksize) {
        Random r = new Random(tokens * 31L + in);
        float[] w = new float[in * out], x = new float[tokens * in], dy = new float[tokens * out];
        for (int i = 0; i < w.length; i++) w[i] = (float) r.nextGaussian() * 0.05f;
        for (int i = 0; i < x.length; i++) x[i] = (float) r.nextGaussian();
        for (int i = 0; i < dy.length; i++) dy[i] = (float) r.nextGaussian();
        try (Tensor wt = Tensor.ofFloats(w, out, in); Nf4Weight q = Nf4.quantize(cpu, wt, blocksize, true);
             Tensor wd = Nf4.dequantize(cpu, q); Tensor xt = Tensor.ofFloats(x, tokens, in);
             Tensor dyt = Tensor.ofFloats(dy, tokens, out);
             Tensor y = Nf4.matmul(cpu, xt, q); Tensor dx = Nf4.matmulBackwardInput(cpu, dyt, q)) {
            float[] deq = wd.toFloats(), ys = y.toFloats(), dxs = dx.toFloats();
            for (int t = 0; t < tokens; t++) {
                for (int o = 0; o < out; o++) {
                    double s = 0;
                    for (int i = 0; i < in; i++) s += (double) x[t * in + i] * deq[o * in + i];
                    assertClose(s, ys[t * out + o], "y[" + t + "," + o + "]");
                }
                for (int i = 0; i < in; i++) {
                    double s = 0;
                    for (int o = 0; o < out; o++) s += (double) dy[t * out + o] * deq[o * in + i];
                    assertClose(s, dxs[t * in + i], "dx[" + t + "," + i + "]");
                }
            }
        }
    }

    static void assertClose(double ref, float got, String what) {
        double tol = MATMUL_ATOL + MATMUL_RTOL * Math.abs(ref);
        if (!(Math.abs(ref - got) <= tol)) fail(what + ": " + got + " vs fp64 " + ref + " (tol " + tol + ")");
    }
}
