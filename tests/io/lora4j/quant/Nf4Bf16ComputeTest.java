package io.lora4j.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.ops.CpuBackend;
import io.lora4j.ops.IsaProbe;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Tensor;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The NF4 forward product with bnb_4bit_compute_dtype = bfloat16 (nf4.h
 * lora4j_nf4_matmul_fwd_bf16): bit for bit the arithmetic its header states (restated here in
 * Java, whose float arithmetic and {@link Math#fma} are IEEE), within fp32 summation error of the
 * same bf16 operands multiplied in double, within the bf16 rounding bound of the fp32 product, and
 * the same bits on every ISA path (AVX512_BF16's vdpbf16ps, AVX-512 and AVX2 emulation, scalar).
 */
class Nf4Bf16ComputeTest {
    /** [T, out, in, blocksize]: tails of the 32-element step, odd rows (blocks and bytes straddle rows), T past the 4-token tile; T = 1 with in % 32 == 0 takes the panel-free GEMV. */
    static final int[][] SHAPES = {{1, 19, 288, 64}, {3, 7, 40, 32}, {5, 33, 45, 32}, {16, 21, 768, 64}, {37, 9, 1024, 2048},
        {2, 5, 1, 32}, {6, 17, 130, 4096}, {1, 6, 40, 32}, {1, 13, 1024, 64}};
    /**
     * Against exact products of the same bf16 operands summed in double: fp32 sums of at most
     * in/16 + 4 terms per lane and tree, each rounding 2^-24 of the running |sum| at most.
     */
    static final double SUM_RTOL = 0x1p-24;

    static float bf16(float v) {
        int u = Float.floatToRawIntBits(v);
        if ((u & 0x7f800000) == 0) return Float.intBitsToFloat(u & 0x80000000);
        return Float.intBitsToFloat(((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16);
    }

    /** The header's arithmetic: 16 lanes of (odd, even) FMAs over 32-element chunks, then the fixed tree. */
    static float[] contract(float[] x, int T, int in, float[] w, int out) {
        int kp = (in + 31) / 32 * 32;
        float[] y = new float[T * out];
        for (int t = 0; t < T; t++)
            for (int o = 0; o < out; o++) {
                float[] l = new float[16];
                for (int c = 0; c < kp; c += 32)
                    for (int j = 0; j < 16; j++) {
                        int i = c + 2 * j;
                        l[j] = Math.fma(at(x, t * in, i + 1, in), bf16(at(w, o * in, i + 1, in)), l[j]);
                        l[j] = Math.fma(at(x, t * in, i, in), bf16(at(w, o * in, i, in)), l[j]);
                    }
                float[] s8 = new float[8], s4 = new float[4];
                for (int j = 0; j < 8; j++) s8[j] = l[j] + l[j + 8];
                for (int j = 0; j < 4; j++) s4[j] = s8[j] + s8[j + 4];
                y[t * out + o] = (s4[0] + s4[2]) + (s4[1] + s4[3]);
            }
        return y;
    }

    private static float at(float[] a, int row, int i, int in) {
        return i < in ? bf16(a[row + i]) : 0f;
    }

    static float[] gaussian(Random r, int n, double sd) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) (r.nextGaussian() * sd);
        return v;
    }

    /** y (bf16 compute), the fp32-compute y, the dequantized weight and x, for one shape. */
    static float[][] products(Backend b, Random r, int[] s) {
        int T = s[0], out = s[1], in = s[2];
        float[] xv = gaussian(r, T * in, 1.5);
        try (Tensor w = Tensor.ofFloats(gaussian(r, out * in, 0.05), out, in); Nf4Weight q32 = Nf4.quantize(b, w, s[3], false);
             Tensor x = Tensor.ofFloats(xv, T, in); Tensor deq = Nf4.dequantize(b, q32)) {
            Nf4Weight q = q32.withComputeDtype(DType.BF16);
            try (Tensor y = Nf4.matmul(b, x, q); Tensor y32 = Nf4.matmul(b, x, q32)) {
                return new float[][] {y.toFloats(), y32.toFloats(), deq.toFloats(), xv};
            }
        }
    }

    @Test
    void theStatedArithmeticBitForBitAndWithinItsBounds() {
        Backend b = Backends.cpu();
        Random r = new Random(15);
        double worstVs32 = 0;
        for (int[] s : SHAPES) {
            int T = s[0], out = s[1], in = s[2];
            float[][] p = products(b, r, s);
            float[] y = p[0], y32 = p[1], w = p[2], x = p[3];
            float[] want = contract(x, T, in, w, out);
            for (int k = 0; k < y.length; k++) {
                int t = k / out, o = k % out;
                assertEquals(Float.floatToRawIntBits(want[k]), Float.floatToRawIntBits(y[k]),
                        "shape " + java.util.Arrays.toString(s) + " y[" + t + "," + o + "] on " + CpuBackend.nf4Bf16Path() + ": " + y[k] + " vs " + want[k]);
                double exact = 0, abs = 0, abs32 = 0;
                for (int i = 0; i < in; i++) {
                    double pr = (double) bf16(x[t * in + i]) * bf16(w[o * in + i]);
                    exact += pr;
                    abs += Math.abs(pr);
                    abs32 += Math.abs((double) x[t * in + i] * w[o * in + i]);
                }
                assertTrue(Math.abs(y[k] - exact) <= SUM_RTOL * (in / 16 + 5) * abs + 1e-30, "fp32 sums of bf16 products: " + y[k] + " vs " + exact);
                // bf16 rounding of x and w: 2^-8 relative each (8-bit significand, round to nearest), so
                // 2^-7 + 2^-16 per product, plus both sides' fp32 sums.
                double d = Math.abs(y[k] - y32[k]);
                assertTrue(d <= (0x1p-7 + 0x1p-16) * abs32 + 2 * SUM_RTOL * in * abs32 + 1e-30,
                        "bf16 vs fp32 compute: " + y[k] + " vs " + y32[k]);
                worstVs32 = Math.max(worstVs32, d / (abs32 + 1e-30));
            }
        }
        System.out.printf("NF4 bf16 compute (%s): worst |y - y_fp32| / sum|x w| = %.3g%n", CpuBackend.nf4Bf16Path(), worstVs32);
    }

    /**
     * Each path in a child JVM: scalar, AVX2 (emulation), AVX-512 with vdpbf16ps where the CPU has
     * AVX512_BF16 and, with it turned off (LORA4J_AVX512_BF16=0), the AVX-512 emulation.
     */
    @Test
    void everyPathGivesTheSameBits() throws Exception {
        List<String> base = null;
        for (String isa : IsaProbe.paths()) {
            for (boolean bf16dp : isa.equals("avx512") ? new boolean[] {true, false} : new boolean[] {true}) {
                ProcessBuilder pb = IsaProbe.command(Probe.class, isa);
                if (!bf16dp) pb.environment().put("LORA4J_AVX512_BF16", "0");
                Process p = pb.start();
                String outText = new String(p.getInputStream().readAllBytes());
                assertEquals(0, p.waitFor(), outText);
                List<String> lines = List.of(outText.strip().split("\n"));
                String path = lines.get(lines.size() - 2).strip();
                assertTrue(path.startsWith(isa), "the forced path was taken: " + path + " for " + isa);
                List<String> got = lines.subList(lines.size() - 1, lines.size());
                if (base == null) base = got;
                else assertEquals(base, got, "path " + path + " against scalar");
            }
        }
    }

    /** Child JVM: the bf16 path's name, then every product's bits. */
    public static final class Probe {
        public static void main(String[] args) {
            Backend b = Backends.cpu();
            Random r = new Random(16);
            StringBuilder sb = new StringBuilder();
            for (int[] s : SHAPES) for (float v : products(b, r, s)[0]) sb.append(Integer.toHexString(Float.floatToRawIntBits(v))).append(',');
            System.out.println(CpuBackend.nf4Bf16Path());
            System.out.println(sb);
        }
    }
}
