package io.lora4j.train;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The head that runs lm_head only on labelled rows against the head that runs it on every row, on
 * one thread and on two, token chunks only and with vocabulary slices.
 *
 * <p>Bit for bit when the ignored rows come in whole {@value ChunkedCrossEntropy#ROW_ALIGN}-row
 * spans, so that every labelled row keeps its position modulo the alignment: then the gathered
 * head does exactly the full head's arithmetic. With arbitrary masks a row moves within OpenBLAS's
 * micro-kernel block, and the kernel computes the rows of a block with different instruction
 * sequences (on Zen 3: rows 0-5 and 6-11 of each 12-row block), so the same dot product can come
 * out one ulp apart: there the two heads agree to {@link #ULPS} ulps of each value.
 */
class ChunkedCrossEntropyGatherTest {
    /** Distinct fp32 summation orders of one dot product: a few ulps of the largest partial sum. */
    private static final double ULPS = 8;

    @ParameterizedTest
    @CsvSource({
            "960, 48, 2000, 256, 4096, 1", // spans of 48 rows: labelled or not
            "960, 48, 2000, 256, 4096, 2",
            "960, 48, 2000, 256, 700, 2"})  // vocabulary slices 700, 700, 600
    void alignedMasksGiveTheFullHeadBitForBit(int t, int d, int vocab, int chunk, int slice, int threads) {
        Random r = new Random(5 + t + d);
        int[] lab = new int[t];
        for (int s0 = 0; s0 < t; s0 += ChunkedCrossEntropy.ROW_ALIGN) {
            boolean trained = r.nextInt(3) == 0;
            for (int i = s0; i < s0 + ChunkedCrossEntropy.ROW_ALIGN; i++) lab[i] = trained ? r.nextInt(vocab) : -100;
        }
        compare(t, d, vocab, chunk, slice, threads, lab, r, 0);
    }

    @ParameterizedTest
    @CsvSource({
            "600, 48, 2000, 256, 4096, 0.2, 1", // response-only-like: 1 label in 5
            "600, 48, 2000, 256, 4096, 0.2, 2",
            "600, 48, 2000, 256, 700, 0.2, 2",
            "300, 64, 1000, 128, 4096, 0.95, 2", // plain text with padding
            "480, 64, 1000, 128, 4096, 0.3, 2",
            "64, 16, 500, 256, 4096, 0.0, 2"})  // nothing labelled
    void anyMaskGivesTheFullHeadToAFewUlps(int t, int d, int vocab, int chunk, int slice, double labelled, int threads) {
        Random r = new Random(7 + t + d);
        int[] lab = new int[t];
        for (int i = 0; i < t; i++) lab[i] = r.nextDouble() < labelled ? r.nextInt(vocab) : -100;
        compare(t, d, vocab, chunk, slice, threads, lab, r, ULPS);
    }

    private static void compare(int t, int d, int vocab, int chunk, int slice, int threads, int[] lab, Random r, double ulps) {
        int before = NativeLibrary.numThreads();
        NativeLibrary.setNumThreads(threads);
        Backend be = Backends.cpu();
        float[] h = new float[t * d], w = new float[vocab * d];
        for (int i = 0; i < h.length; i++) h[i] = (float) r.nextGaussian();
        for (int i = 0; i < w.length; i++) w[i] = (float) (r.nextGaussian() * 0.1);
        try (Tensor ht = Tensor.ofFloats(h, t, d); Tensor wt = Tensor.ofFloats(w, vocab, d);
             Tensor lt = Tensor.allocate(DType.I32, MemoryCategory.WORKSPACE, t);
             Tensor dhAll = be.allocate(DType.F32, MemoryCategory.WORKSPACE, t, d);
             Tensor dhGathered = be.allocate(DType.F32, MemoryCategory.WORKSPACE, t, d)) {
            lt.buffer().asIntBuffer().put(lab);
            float scale = 1f / 37f;
            double all = ChunkedCrossEntropy.lossAndGradientAllRows(be, ht, wt, lt, lab, chunk, slice, scale, dhAll);
            double gathered = ChunkedCrossEntropy.lossAndGradient(be, ht, wt, lt, lab, chunk, slice, scale, dhGathered);
            float[] a = dhAll.toFloats(), g = dhGathered.toFloats();
            float amax = 0;
            for (float v : a) amax = Math.max(amax, Math.abs(v));
            int labelled = 0;
            for (int v : lab) if (v != -100) labelled++;
            for (int i = 0; i < a.length; i++) {
                if (lab[i / d] == -100) assertEquals(0, Float.floatToRawIntBits(g[i]), "dh row " + i / d + " of an ignored target");
                if (ulps == 0) assertEquals(Float.floatToRawIntBits(a[i]), Float.floatToRawIntBits(g[i]), "dh[" + i + "]: " + a[i] + " vs " + g[i]);
                else assertEquals(a[i], g[i], ulps * Math.ulp(amax), "dh[" + i + "]");
            }
            if (ulps == 0) assertEquals(Double.doubleToRawLongBits(all), Double.doubleToRawLongBits(gathered), "loss " + all + " vs " + gathered);
            else assertEquals(all, gathered, ulps * labelled * Math.ulp((float) (all / Math.max(1, labelled))), "loss");
            assertEquals(labelled > 0, all > 0);
        } finally {
            NativeLibrary.setNumThreads(before);
        }
    }
}
