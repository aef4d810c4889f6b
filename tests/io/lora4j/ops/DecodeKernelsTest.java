package io.lora4j.ops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The single-token decode kernels (infer.h lora4j_decode_*) against the general ops they replace
 * at T = 1: sgemm, swiglu, rope + attention_decode, embedding. Both sides are fp32 with different
 * summation orders (the GEMV's 4×8-lane chains, OpenBLAS's blocking; an online vs a two-pass
 * softmax), so elements agree to {@link #ATOL} + {@link #RTOL}·|ref|.
 */
class DecodeKernelsTest {
    /** fp32 dot products of ≤ 1000 terms of magnitude ≤ 1, reordered: a few ulps of the sum. */
    static final double ATOL = 2e-5, RTOL = 2e-5;

    private final Backend cpu = Backends.cpu();

    static Tensor rand(Random r, long... shape) {
        float[] v = new float[(int) Tensor.numel(shape)];
        for (int i = 0; i < v.length; i++) v[i] = (float) r.nextGaussian() * 0.5f;
        return Tensor.ofFloats(v, shape);
    }

    /** w rounded to bf16 (truncated mantissa) as a BF16 tensor, and the same values as F32. */
    static Tensor[] bf16(Tensor w) {
        float[] f = w.toFloats();
        ByteBuffer b = ByteBuffer.allocate(2 * f.length).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < f.length; i++) {
            short h = (short) (Float.floatToRawIntBits(f[i]) >>> 16);
            b.putShort(h);
            f[i] = Float.intBitsToFloat((h & 0xffff) << 16);
        }
        return new Tensor[] {Tensor.ofBytes(b.array(), DType.BF16, w.shape()), Tensor.ofFloats(f, w.shape())};
    }

    static void assertClose(float[] ref, float[] got, String what) {
        assertEquals(ref.length, got.length, what);
        for (int i = 0; i < ref.length; i++)
            assertTrue(Math.abs(ref[i] - got[i]) <= ATOL + RTOL * Math.abs(ref[i]),
                    what + " [" + i + "]: " + got[i] + " vs " + ref[i]);
    }

    /** y = x·Wᵀ (+ y0) by sgemm. */
    private float[] reference(Tensor x, Tensor w, float[] y0) {
        long out = w.dim(0), in = w.dim(1);
        try (Tensor y = y0 == null ? Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, out) : Tensor.ofFloats(y0, 1, out)) {
            cpu.sgemm(false, true, 1, out, in, 1f, x, in, w, in, y0 == null ? 0f : 1f, y, out);
            return y.toFloats();
        }
    }

    @ParameterizedTest
    @CsvSource({"1, 1", "7, 13", "288, 288", "288, 768", "768, 288", "1000, 33"})
    void matvecMatchesSgemmForF32AndBf16(int in, int out) {
        Random r = new Random(in * 31L + out);
        try (Tensor x = rand(r, 1, in); Tensor w = rand(r, out, in); Tensor y = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, out)) {
            cpu.decodeMatvec(x, w, false, y);
            assertClose(reference(x, w, null), y.toFloats(), "f32 y = Wx");
            float[] y0 = y.toFloats();
            cpu.decodeMatvec(x, w, true, y);
            assertClose(reference(x, w, y0), y.toFloats(), "f32 y += Wx");
            Tensor[] b = bf16(w);
            try (Tensor wb = b[0]; Tensor wf = b[1]) {
                cpu.decodeMatvec(x, wb, false, y);
                assertClose(reference(x, wf, null), y.toFloats(), "bf16 y = Wx");
            }
        }
    }

    /**
     * The GEMVs read several rows per pass (decode.cpp: 4 streams a quarter of the slice apart),
     * each row in the chains of a one-row pass: y[r] must be bit for bit what a matvec of row r
     * alone gives (out = 1 reads it by itself), whatever rows shared its pass. Sizes: tails of
     * every vector width (1000 = 15·64 + 40, 301), out not a multiple of 4 (leftover rows).
     */
    @ParameterizedTest
    @CsvSource({"1000, 37", "301, 19", "64, 8", "1024, 9"})
    void aRowsResultDoesNotDependOnTheRowsReadWithIt(int in, int out) {
        Random r = new Random(in * 7L + out);
        try (Tensor x = rand(r, 1, in); Tensor w = rand(r, out, in); Tensor wu = rand(r, out, in);
             Tensor y = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, out);
             Tensor y1 = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, 1)) {
            Tensor[] wb = bf16(w), wub = bf16(wu);
            try (Tensor bw = wb[0]; Tensor bwf = wb[1]; Tensor bwu = wub[0]; Tensor bwuf = wub[1]) {
                for (Tensor[] gu : new Tensor[][] {{w, wu}, {bw, bwu}}) {
                    cpu.decodeMatvec(x, gu[0], false, y);
                    float[] mv = y.toFloats();
                    cpu.decodeGateUp(x, gu[0], gu[1], y);
                    float[] s = y.toFloats();
                    for (int row = 0; row < out; row++) {
                        String what = gu[0].dtype() + " row " + row + " of " + out;
                        try (Tensor g1 = rowOf(gu[0], row); Tensor u1 = rowOf(gu[1], row)) {
                            cpu.decodeMatvec(x, g1, false, y1);
                            assertEquals(Float.floatToRawIntBits(mv[row]), Float.floatToRawIntBits(y1.toFloats()[0]), "matvec " + what);
                            cpu.decodeGateUp(x, g1, u1, y1);
                            assertEquals(Float.floatToRawIntBits(s[row]), Float.floatToRawIntBits(y1.toFloats()[0]), "gate/up " + what);
                        }
                    }
                }
            }
        }
    }

    /**
     * fp32 weights at each of the 16 float offsets of a cache line (weights mapped from a file sit
     * wherever the file puts them; the AVX-512 path then reads whole cache lines and shifts them
     * into place): y is the same bits at every offset, for rows that share one offset (in a
     * multiple of 16) and rows whose offsets differ, above and below the row length that path needs.
     */
    @ParameterizedTest
    @CsvSource({"1024, 9", "1000, 13", "301, 7", "80, 5", "79, 5", "2816, 4"})
    void fp32WeightsGiveTheSameBitsAtAnyAlignment(int in, int out) {
        Random r = new Random(in * 31L + out);
        long numel = (long) out * in;
        try (Tensor x = rand(r, 1, in); Tensor w = rand(r, out, in); Tensor wu = rand(r, out, in);
             Tensor gBuf = Tensor.allocate(DType.F32, MemoryCategory.WEIGHTS, numel + 16);
             Tensor uBuf = Tensor.allocate(DType.F32, MemoryCategory.WEIGHTS, numel + 16);
             Tensor y = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, out)) {
            float[] wv = w.toFloats(), wuv = wu.toFloats(), mv0 = null, s0 = null;
            for (int off = 0; off < 16; off++) {
                gBuf.buffer().asFloatBuffer().position(off).put(wv);
                uBuf.buffer().asFloatBuffer().position(15 - off).put(wuv);
                try (Tensor g = gBuf.slice(off, out, in); Tensor u = uBuf.slice(15 - off, out, in)) {
                    cpu.decodeMatvec(x, g, false, y);
                    float[] mv = y.toFloats();
                    cpu.decodeGateUp(x, g, u, y);
                    float[] s = y.toFloats();
                    if (off == 0) {
                        mv0 = mv;
                        s0 = s;
                        continue;
                    }
                    for (int row = 0; row < out; row++) {
                        assertEquals(Float.floatToRawIntBits(mv0[row]), Float.floatToRawIntBits(mv[row]), "matvec row " + row + " at offset " + off);
                        assertEquals(Float.floatToRawIntBits(s0[row]), Float.floatToRawIntBits(s[row]), "gate/up row " + row + " at offset " + off);
                    }
                }
            }
        }
    }

    /** Row {@code row} of a 2-D tensor as its own [1, cols] tensor (a copy). */
    static Tensor rowOf(Tensor m, int row) {
        int rowBytes = (int) (m.bytes() / m.dim(0));
        byte[] b = new byte[rowBytes];
        m.buffer().position(row * rowBytes).get(b);
        return Tensor.ofBytes(b, m.dtype(), 1, m.dim(1));
    }

    @ParameterizedTest
    @CsvSource({"5, 3", "288, 768", "64, 96"})
    void gateUpIsTwoProjectionsAndSwiglu(int in, int inter) {
        Random r = new Random(in + 7L * inter);
        try (Tensor x = rand(r, 1, in); Tensor wg = rand(r, inter, in); Tensor wu = rand(r, inter, in);
             Tensor s = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, inter);
             Tensor g = Tensor.ofFloats(reference(x, wg, null), 1, inter); Tensor u = Tensor.ofFloats(reference(x, wu, null), 1, inter);
             Tensor ref = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, inter)) {
            cpu.swigluFwd(g, u, ref);
            cpu.decodeGateUp(x, wg, wu, s);
            assertClose(ref.toFloats(), s.toFloats(), "silu(Wg x)·(Wu x)");
            Tensor[] gb = bf16(wg), ub = bf16(wu);
            try (Tensor a = gb[0]; Tensor af = gb[1]; Tensor b = ub[0]; Tensor bf = ub[1];
                 Tensor g2 = Tensor.ofFloats(reference(x, af, null), 1, inter); Tensor u2 = Tensor.ofFloats(reference(x, bf, null), 1, inter)) {
                cpu.swigluFwd(g2, u2, ref);
                cpu.decodeGateUp(x, a, b, s);
                assertClose(ref.toFloats(), s.toFloats(), "bf16 gate/up");
            }
        }
    }

    /**
     * decodeAttention at position p of a cache whose rows 0..p-1 hold earlier roped keys equals
     * rope (the general op) of q and k, the new row written, then attention_decode over
     * start..p; q comes back roped, k untouched.
     */
    @ParameterizedTest
    @CsvSource({"4, 2, 16, 0, 0", "4, 2, 16, 9, 0", "6, 6, 48, 30, 0", "4, 1, 8, 12, 5", "2, 2, 64, 200, 180"})
    void attentionStepIsRopeCacheWriteAndAttention(int hq, int hkv, int hd, int pos, int start) {
        Random r = new Random(hq * 1000L + pos);
        int cap = pos + 3, kvDim = hkv * hd;
        float[] invFreq = new float[hd / 2];
        for (int i = 0; i < invFreq.length; i++) invFreq[i] = (float) Math.pow(10000, -2.0 * i / hd);
        try (Tensor q = rand(r, 1, (long) hq * hd); Tensor k = rand(r, 1, kvDim); Tensor v = rand(r, 1, kvDim);
             Tensor kc = rand(r, cap, kvDim); Tensor vc = rand(r, cap, kvDim); Tensor inv = Tensor.ofFloats(invFreq, invFreq.length);
             Tensor out = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, (long) hq * hd);
             Tensor posT = Tensor.ofBytes(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(pos).array(), DType.I32, 1)) {
            float[] q0 = q.toFloats(), k0 = k.toFloats(), kc0 = kc.toFloats(), vc0 = vc.toFloats();
            // The reference: the general ops on copies.
            try (Tensor qr = Tensor.ofFloats(q0, 1, (long) hq * hd); Tensor kr = Tensor.ofFloats(k0, 1, kvDim);
                 Tensor kcr = Tensor.ofFloats(kc0, cap, kvDim); Tensor vcr = Tensor.ofFloats(vc0, cap, kvDim);
                 Tensor ref = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, (long) hq * hd)) {
                cpu.ropeFwd(qr, qr, posT, inv, hq, hd);
                cpu.ropeFwd(kr, kr, posT, inv, hkv, hd);
                float[] kcArr = kcr.toFloats(), vcArr = vcr.toFloats();
                System.arraycopy(kr.toFloats(), 0, kcArr, pos * kvDim, kvDim);
                System.arraycopy(v.toFloats(), 0, vcArr, pos * kvDim, kvDim);
                int len = pos + 1 - start;
                try (Tensor ks = Tensor.ofFloats(Arrays.copyOfRange(kcArr, start * kvDim, (pos + 1) * kvDim), len, kvDim);
                     Tensor vs = Tensor.ofFloats(Arrays.copyOfRange(vcArr, start * kvDim, (pos + 1) * kvDim), len, kvDim)) {
                    cpu.attentionDecode(qr, ks, vs, 1, len, len, hq, hkv, hd, ref);
                }
                cpu.decodeAttention(q, k, v, pos, inv, kc, vc, start, hq, hkv, hd, out);
                assertClose(ref.toFloats(), out.toFloats(), "attention output");
                assertArrayEquals(qr.toFloats(), q.toFloats(), "q roped in place exactly as ropeFwd");
                assertArrayEquals(k0, k.toFloats(), "k left as given");
                assertArrayEquals(kcArr, kc.toFloats(), "k cache: row pos = roped k, other rows untouched");
                assertArrayEquals(vcArr, vc.toFloats(), "v cache: row pos = v, other rows untouched");
            }
        }
    }

    @Test
    void embeddingIsTheTableRow() {
        Random r = new Random(3);
        try (Tensor table = rand(r, 50, 12); Tensor out = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, 12)) {
            cpu.decodeEmbedding(table, 37, out);
            assertArrayEquals(Arrays.copyOfRange(table.toFloats(), 37 * 12, 38 * 12), out.toFloats());
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> cpu.decodeEmbedding(table, 50, out));
            assertTrue(e.getMessage().contains("50"), e.getMessage());
        }
    }

    @Test
    void checkedBackendRejectsMismatchedShapes() {
        Random r = new Random(4);
        try (Tensor x = rand(r, 1, 10); Tensor w = rand(r, 6, 11); Tensor y = rand(r, 1, 6); Tensor wu = rand(r, 7, 11);
             Tensor kc = rand(r, 4, 16); Tensor q = rand(r, 1, 32); Tensor inv = rand(r, 4); Tensor ints = Tensor.allocate(DType.I32,
                     MemoryCategory.WORKSPACE, 6, 11)) {
            assertThrows(IllegalArgumentException.class, () -> cpu.decodeMatvec(x, w, false, y), "x shorter than in");
            assertThrows(IllegalArgumentException.class, () -> cpu.decodeMatvec(rand(r, 1, 11), ints, false, y), "I32 weight");
            assertThrows(IllegalArgumentException.class, () -> cpu.decodeGateUp(rand(r, 1, 11), w, wu, rand(r, 1, 7)), "gate/up shapes");
            assertThrows(IllegalArgumentException.class,
                    () -> cpu.decodeAttention(q, rand(r, 1, 16), rand(r, 1, 16), 4, inv, kc, rand(r, 4, 16), 0, 4, 2, 8, q),
                    "position past the cache");
            assertThrows(IllegalArgumentException.class,
                    () -> cpu.decodeAttention(q, rand(r, 1, 16), rand(r, 1, 16), 2, inv, kc, rand(r, 4, 16), 3, 4, 2, 8, q),
                    "window start after the position");
        }
    }

    /**
     * Every ISA path the CPU has gives the same numbers as the default one: LORA4J_DECODE_ISA is
     * read once per process, so each forced path runs in a child JVM ({@link Probe}).
     */
    @Test
    void forcedIsaPathsAgree() throws Exception {
        float[] base = null;
        for (String isa : IsaProbe.paths()) {
            float[] got = Probe.run(isa);
            if (base == null) base = got;
            else assertClose(base, got, "LORA4J_DECODE_ISA=" + isa + " vs scalar");
        }
        ProcessBuilder pb = Probe.command("sse9");
        Process p = pb.start();
        String err = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor() != 0 && err.contains("LORA4J_DECODE_ISA must be scalar, avx2 or avx512"), "unknown ISA is an error: " + err);
    }

    /**
     * Child JVM: prints the forced ISA's name, then a matvec, gate_up and attention step, NF4 T = 1
     * products and NF4 dequantizations (nf4.cpp dispatches its single-token GEMV and its dequantize
     * on the same variable) as floats.
     */
    public static final class Probe {
        static ProcessBuilder command(String isa) {
            return IsaProbe.command(Probe.class, isa);
        }

        static float[] run(String isa) throws Exception {
            List<String> lines = IsaProbe.run(Probe.class, isa);
            String[] f = lines.get(lines.size() - 1).strip().split(",");
            float[] v = new float[f.length];
            for (int i = 0; i < f.length; i++) v[i] = Float.parseFloat(f[i]);
            return v;
        }

        public static void main(String[] args) {
            Backend b = Backends.cpu();
            Random r = new Random(11);
            StringBuilder sb = new StringBuilder();
            try (Tensor x = rand(r, 1, 301); Tensor w = rand(r, 19, 301); Tensor wu = rand(r, 19, 301);
                 Tensor y = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, 19);
                 Tensor s = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, 19);
                 Tensor q = rand(r, 1, 32); Tensor k = rand(r, 1, 16); Tensor v = rand(r, 1, 16); Tensor kc = rand(r, 9, 16);
                 Tensor vc = rand(r, 9, 16); Tensor inv = rand(r, 4); Tensor o = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, 32)) {
                b.decodeMatvec(x, w, false, y);
                b.decodeGateUp(x, w, wu, s);
                b.decodeAttention(q, k, v, 7, inv, kc, vc, 0, 4, 2, 8, o);
                Tensor[] wb = bf16(w);
                try (Tensor bw = wb[0]; Tensor bf = wb[1]) {
                    Tensor yb = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, 19);
                    b.decodeMatvec(x, bw, false, yb);
                    for (Tensor t : new Tensor[] {y, s, o, yb}) for (float f : t.toFloats()) sb.append(sb.length() == 0 ? "" : ",").append(f);
                }
                // NF4 [out, in, blocksize]: rows straddling blocks (288/64), a partial last chunk (40, 200),
                // 4 blocks per chunk (768/32), one block per several rows (384/2048), 1152 = 9 full chunks.
                for (int[] c : new int[][] {{17, 288, 64}, {11, 40, 32}, {13, 768, 32}, {8, 384, 2048}, {5, 200, 4096},
                        {6, 1152, 64}}) {
                    try (Tensor wn = rand(r, c[0], c[1]); Nf4Weight nq = Nf4.quantize(b, wn, c[2], false);
                         Tensor xn = rand(r, 1, c[1]); Tensor yn = Nf4.matmul(b, xn, nq); Tensor dq = Nf4.dequantize(b, nq)) {
                        for (float f : yn.toFloats()) sb.append(',').append(f);
                        for (float f : dq.toFloats()) sb.append(',').append(f);
                    }
                }
            }
            System.out.println(CpuBackend.decodeIsa());
            System.out.println(sb);
        }
    }
}
