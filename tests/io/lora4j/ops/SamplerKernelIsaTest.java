package io.lora4j.ops;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.FloatBuffer;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The sampler's probabilities are the same bits on every ISA path (sample.cpp: one fp32 exp, the
 * same operations and FMAs per lane, z summed in the same lanes and tree), so a seed picks the
 * same tokens on every CPU: each forced path's probabilities, sums and draws, printed exactly,
 * must equal the scalar path's.
 */
class SamplerKernelIsaTest {
    @Test
    void everyPathGivesTheSameBits() throws Exception {
        List<String> base = IsaProbe.sameOnEveryPath(Probe.class);
        assertEquals(8 * 3, base.size());
    }

    /** Child JVM: the path's name, then per case a hash of p's bits, z's bits and 16 draws. */
    public static final class Probe {
        public static void main(String[] args) {
            SamplerKernel k = new SamplerKernel();
            Random r = new Random(9);
            StringBuilder sb = new StringBuilder();
            // Lengths around the 16-lane and 32-element steps and the tails, real vocabularies.
            int[] sizes = {1, 7, 16, 31, 33, 1000, 32_000, 151_936};
            for (int n : sizes) {
                float[] l = new float[n];
                for (int i = 0; i < n; i++) l[i] = (float) (r.nextGaussian() * (1 + r.nextInt(20)));
                if (n > 10) {
                    l[5] = Float.NEGATIVE_INFINITY;
                    l[6] = Float.NaN;
                    l[9] = -200f; // below e^-86 of the top
                }
                float[] p = new float[n];
                double z = k.probabilities(FloatBuffer.wrap(l), 0.7f, p);
                long h = 1;
                for (float v : p) h = h * 1_000_003 + Float.floatToRawIntBits(v);
                sb.append(Long.toHexString(h)).append('\n').append(Long.toHexString(Double.doubleToRawLongBits(z))).append('\n');
                for (int d = 0; d < 16; d++) sb.append(k.sample(FloatBuffer.wrap(l), 0.7f, d % 2 == 0 ? 0.9f : 1f, r.nextDouble())).append(' ');
                sb.append('\n');
            }
            System.out.println(CpuBackend.decodeIsa());
            System.out.print(sb);
        }
    }
}
