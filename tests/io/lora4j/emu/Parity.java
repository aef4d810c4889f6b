package io.lora4j.emu;

import static org.junit.jupiter.api.Assertions.fail;

import java.util.Locale;

/**
 * Element-wise comparison of a CUDA result with its CPU twin: |cuda - cpu| <= atol + rtol·|cpu|,
 * with an extra per-element allowance for dot products (the native parity harness's rule,
 * native/tests/ops/cuda_parity.cpp, so the Java and C++ checks agree). A non-finite value on
 * either side where the other is finite always fails: outputs start as NaN on the emulator, so an
 * element a kernel never wrote shows up here.
 */
final class Parity {
    /** Elementwise ops (SwiGLU, RoPE, axpy, AdamW): a few fp32 ulps, and the device exp/sin differ by ~2 ulp. */
    static final double ELEM_ATOL = 1e-6, ELEM_RTOL = 1e-5;
    /** Row reductions (RMSNorm, softmax, attention, cross-entropy): summation order differs per thread. */
    static final double RED_ATOL = 1e-5, RED_RTOL = 1e-4;
    /** fp32 dot products of length K: the order of K roundings differs; 2e-6 per 16 terms of unit size. */
    static final double DOT_ATOL_PER_16 = 2e-6;
    /**
     * The NF4 matmul runs on bf16 tensor cores: x and the dequantized w are each rounded to bf16
     * (2^-9 relative each), so a product is off by < 3.91e-3·|x·w| (native/tests/harness_cuda.cpp).
     */
    static final double BF16_DOT = 4.0e-3;

    private Parity() {}

    static double dotAtol(long k) {
        return DOT_ATOL_PER_16 * Math.max(1.0, k / 16.0);
    }

    static void close(String what, float[] cpu, float[] cuda, double atol, double rtol) {
        close(what, cpu, cuda, atol, rtol, null);
    }

    /** As above, plus {@code perElement[i]} (may be null) added to element i's allowance. */
    static void close(String what, float[] cpu, float[] cuda, double atol, double rtol, double[] perElement) {
        if (cpu.length != cuda.length) fail(what + ": " + cpu.length + " CPU values, " + cuda.length + " CUDA values");
        int worst = -1;
        double worstRatio = 0;
        int bad = 0;
        for (int i = 0; i < cpu.length; i++) {
            double ref = cpu[i], got = cuda[i];
            if (!Double.isFinite(ref) || !Double.isFinite(got)) {
                if (Double.compare(ref, got) == 0) continue;
                bad++;
                if (worst < 0 || Double.isFinite(worstRatio)) {
                    worst = i;
                    worstRatio = Double.POSITIVE_INFINITY;
                }
                continue;
            }
            double tol = atol + rtol * Math.abs(ref) + (perElement == null ? 0 : perElement[i]);
            double ratio = Math.abs(got - ref) / tol;
            if (ratio > 1) bad++;
            if (ratio > worstRatio) {
                worstRatio = ratio;
                worst = i;
            }
        }
        if (bad > 0) {
            fail(String.format(Locale.ROOT, "%s: %d of %d elements differ; worst at %d: cpu %s, cuda %s (err/tol %.3g)",
                    what, bad, cpu.length, worst, cpu[worst], cuda[worst], worstRatio));
        }
    }

    static void same(String what, byte[] cpu, byte[] cuda) {
        if (cpu.length != cuda.length) fail(what + ": " + cpu.length + " CPU bytes, " + cuda.length + " CUDA bytes");
        for (int i = 0; i < cpu.length; i++)
            if (cpu[i] != cuda[i]) fail(what + ": first difference at byte " + i + ": cpu " + cpu[i] + ", cuda " + cuda[i]);
    }
}
