package io.lora4j.ops;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The training head's cross-entropy gives the same bits on every ISA path: ops.cpp's exp512 is
 * exp256's operations lane for lane and exp_sub_sum adds each 16 outputs into the AVX2 loop's 8
 * accumulators in the AVX2 order, so the sum of exp, the log-sum-exp, the loss and dz = scale·(softmax − onehot)
 * of each forced path (the scalar one runs the AVX2 baseline here) must equal the AVX2 path's;
 * so must SwiGLU's outputs (ops.cpp exp_scaled, the same exp512).
 */
class ExpKernelsIsaTest {
    @Test
    void everyPathGivesTheSameBits() throws Exception {
        List<String> base = IsaProbe.sameOnEveryPath(Probe.class);
        assertEquals(5 * 4 + 3, base.size());
    }

    /** Child JVM: the path's name, then per width the hashes of the exp sums' (whose last bits the log-sum-exp
     * may round away), lse's, the loss's and dz's bits. */
    public static final class Probe {
        public static void main(String[] args) {
            Backend cpu = Backends.cpu();
            Random r = new Random(11);
            StringBuilder sb = new StringBuilder();
            // Widths around the 8- and 16-lane steps and their tails, and a real vocabulary.
            int[] widths = {7, 16, 31, 1001, 32_000};
            int n = 6;
            for (int v : widths) {
                float[] z = new float[n * v];
                // Flat rows (many comparable terms, so the order of the sum shows in its bits), then peaked ones.
                for (int i = 0; i < z.length; i++) z[i] = (float) (r.nextGaussian() * (i / v < 3 ? 1 : 1 + r.nextInt(12)));
                if (v > 100) {
                    z[3] = -200f; // exp underflows to 0
                    z[v + 40] = 90f; // the row's max far above the rest
                }
                int[] labels = new int[n];
                for (int t = 0; t < n; t++) labels[t] = t == 2 ? -100 : r.nextInt(v);
                try (Tensor lg = Tensor.ofFloats(z, n, v); Tensor lab = Tensor.allocate(DType.I32, MemoryCategory.WORKSPACE, n);
                     Tensor rm = f32(cpu, n); Tensor rs = f32(cpu, n); Tensor ty = f32(cpu, n); Tensor lse = f32(cpu, n);
                     Tensor loss = f32(cpu, n); Tensor sum = f32(cpu, 1)) {
                    lab.buffer().asIntBuffer().put(labels);
                    cpu.crossEntropyChunkStats(lg, lab, 0, true, rm, rs, ty);
                    cpu.crossEntropyChunkFinalize(lab, rm, rs, ty, lse, loss, sum);
                    cpu.crossEntropyChunkGrad(lg, lab, 0, lse, 1f / 3);
                    sb.append(hash(rs.toFloats())).append('\n').append(hash(lse.toFloats())).append('\n').append(hash(loss.toFloats())).append('\n')
                            .append(hash(lg.toFloats())).append('\n');
                }
            }
            // SwiGLU (ops.cpp exp_scaled): its fp32 outputs, lengths around the lanes and the 512-element chunks.
            for (int len : new int[] {15, 1000, 4099}) {
                float[] g = new float[len], u = new float[len];
                for (int i = 0; i < len; i++) {
                    g[i] = (float) (r.nextGaussian() * 6);
                    u[i] = (float) r.nextGaussian();
                }
                try (Tensor gt = Tensor.ofFloats(g, len); Tensor ut = Tensor.ofFloats(u, len); Tensor h = f32(cpu, len)) {
                    cpu.swigluFwd(gt, ut, h);
                    sb.append(hash(h.toFloats())).append('\n');
                }
            }
            System.out.println(CpuBackend.decodeIsa());
            System.out.print(sb);
        }

        private static Tensor f32(Backend b, long n) {
            return b.allocate(DType.F32, MemoryCategory.WORKSPACE, n);
        }

        private static String hash(float[] values) {
            long h = 1;
            for (float x : values) h = h * 1_000_003 + Float.floatToRawIntBits(x);
            return Long.toHexString(h);
        }
    }
}
