package io.lora4j.nativeapi;

import static org.junit.jupiter.api.Assertions.*;

import java.util.Random;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.BytePointer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** liblora4j's own thread pool (native/cpu/parallel.h): sizing, results independent of the threads, errors. */
class ThreadPoolTest {
    /** fp32 epsilon-scale rounding of a K-term sum, times √K (random-walk growth of the error). */
    private static final double SGEMM_RTOL = 1e-6;
    private int before;

    @BeforeEach
    void remember() {
        before = NativeLibrary.numThreads();
    }

    @AfterEach
    void restore() {
        NativeLibrary.setNumThreads(before);
    }

    @Test
    void defaultsToAPositiveCountAndResizes() {
        assertTrue(NativeLibrary.physicalCores() >= 1);
        assertTrue(before >= 1);
        NativeLibrary.setNumThreads(3);
        assertEquals(3, NativeLibrary.numThreads());
        NativeLibrary.setNumThreads(0); // ignored
        assertEquals(3, NativeLibrary.numThreads());
        NativeLibrary.setNumThreads(1);
        assertEquals(1, NativeLibrary.numThreads());
    }

    @Test
    void splitSgemmAgreesWithOneThread() {
        // Both orientations of the split (M >= N splits rows, else columns) and both transposes.
        int[][] shapes = {{1024, 288, 768}, {96, 2000, 288}, {33, 47, 1000}};
        Random rnd = new Random(11);
        for (int[] s : shapes) {
            int m = s[0], n = s[1], k = s[2];
            float[] a = randn(rnd, m * k), b = randn(rnd, k * n);
            for (int tb = 0; tb <= 1; tb++) {
                float[] one = sgemm(1, tb, m, n, k, a, b), four = sgemm(4, tb, m, n, k, a, b);
                // OpenBLAS blocks K by the shape it is given: a split may round the sums differently.
                for (int i = 0; i < one.length; i++)
                    assertEquals(one[i], four[i], SGEMM_RTOL * Math.sqrt(k) * (1 + Math.abs(one[i])),
                            "sgemm " + m + "x" + n + "x" + k + " transB=" + tb + " at " + i);
            }
        }
    }

    @Test
    void anErrorInsideAWorkerArrivesAsAJavaException() {
        NativeLibrary.setNumThreads(2);
        int n = 1 << 20;
        float[] w = new float[n];
        w[n - 5] = Float.NaN; // in the last chunk: a worker's, not the caller's
        try (FloatPointer wp = new FloatPointer(w); BytePointer packed = new BytePointer(n / 2);
             FloatPointer absmax = new FloatPointer(n / 64)) {
            RuntimeException e = assertThrows(RuntimeException.class,
                    () -> Lora4jOpsNative.lora4j_nf4_quantize(wp, 0, n, 64, packed, absmax));
            assertTrue(e.getMessage().contains("at element " + (n - 5)), e.getMessage());
            // The pool is still usable afterwards.
            w[n - 5] = 1f;
            wp.put(w);
            Lora4jOpsNative.lora4j_nf4_quantize(wp, 0, n, 64, packed, absmax);
        }
    }

    private static float[] sgemm(int threads, int transB, int m, int n, int k, float[] a, float[] b) {
        NativeLibrary.setNumThreads(threads);
        try (FloatPointer ap = new FloatPointer(a); FloatPointer bp = new FloatPointer(b); FloatPointer cp = new FloatPointer((long) m * n)) {
            Lora4jNative.lora4j_sgemm(0, transB, m, n, k, 1f, ap, k, bp, transB == 1 ? k : n, 0f, cp, n);
            float[] c = new float[m * n];
            cp.get(c);
            return c;
        }
    }

    private static float[] randn(Random rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) rnd.nextGaussian();
        return x;
    }
}
