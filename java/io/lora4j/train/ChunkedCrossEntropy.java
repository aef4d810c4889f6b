package io.lora4j.train;

import io.lora4j.data.Example;
import io.lora4j.ops.Backend;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.Arrays;
import org.bytedeco.javacpp.FloatPointer;

/**
 * lm_head + cross-entropy (forward and backward) that never materialises the [T, V] logits:
 * chunked over tokens ({@code tokenChunk} rows at a time) and, when the vocabulary is wider than
 * {@code vocabSlice}, over the vocabulary too. The training head of {@link LoraTrainingModel} and
 * the cross-entropy benchmark run this same code.
 *
 * <p>Token chunks only (V <= vocabSlice), per chunk hc [n, d]: z = hc·Wᵀ [n, V]; the forward
 * keeps each row's log-sum-exp (fp32, in the per-row statistics below) and the backward reuses it:
 * loss = lse − z_y, then dz = lossScale·(exp(z − lse) − onehot(y)) in place in one pass over z
 * (ops.h lora4j_ce_chunk_* with the whole vocabulary as one slice); dh = dz·W.
 *
 * <p>Vocabulary slices W[v0, v1) of at most vocabSlice rows (ops.h lora4j_ce_chunk_*):
 * <pre>
 *   pass 1, per slice: z = hc·W[v0:v1]ᵀ [n, vc];  (m, S) ← online log-sum-exp of (m, S) and z;
 *                      z_y picked up when v0 <= y < v1
 *   lse = m + log S;   loss = lse − z_y   (0 for ignored rows)
 *   pass 2, per slice: z recomputed;  z ← lossScale·(exp(z − lse) − onehot(y − v0));
 *                      dh += z·W[v0:v1]   [n, d]
 * </pre>
 * Equal to the token-chunked head up to fp32 rounding of the sums; pass 2 costs a third lm_head
 * matmul (the price of never holding [n, V]).
 *
 * <p>With a final-logit soft cap c > 0 (Gemma 2's final_logit_softcapping) the loss is taken over
 * y = c·tanh(z / c) instead of z, and the gradient is carried back through the cap:
 * dz = dy·(1 − tanh²(z / c)). The capped logits of a slice go into a second buffer of the logits'
 * size (category {@link MemoryCategory#LOGITS}), so that z survives for that backward. Rows of a chunk without any target are skipped and
 * their dh rows left as they are (the caller passes zeroed dh). The logits buffer is one tensor of
 * category {@link MemoryCategory#LOGITS}: [min(T, tokenChunk), min(V, vocabSlice)] fp32.
 *
 * <p>Head work only where something is trained: with response-only masking, padding or packing
 * many targets are −100, and their rows contribute neither loss nor gradient. {@link #lossAndGradient}
 * runs the head on the n labelled rows alone; {@link #lossAndGradientAllRows} (the reference) on
 * every row. Both gather their rows, {@value #ROW_ALIGN}·k at a time, into hc [m, d] (an
 * embedding lookup by row number; a short last chunk is padded with ignored rows up to a multiple
 * of {@value #ROW_ALIGN}), and write dhc into dhg [n_pad + 1, d], which is scattered back as
 * dh = dhg[map] (map[t] = the rank of row t, or the never-written zero row for a row not run).
 * Why the alignment: OpenBLAS computes a short last block of M with other micro-kernels than the
 * full ones, so with M a multiple of {@value #ROW_ALIGN} (a multiple of the M-unrolls 4-24 of its
 * sgemm kernels) and lora4j_sgemm splitting threads at multiples of 48, a row's result depends
 * only on its position within a 48-row group. Rows that keep that position (ignored rows in whole
 * 48-row spans) get the full head's loss and dL/dh bit for bit. A row that moves within a
 * micro-kernel block may come out an ulp apart: the kernel computes the rows of a block with
 * different instruction sequences (Zen 3: rows 0-5 and 6-11 of each 12-row block).
 * The buffers: logits [min(T', tokenChunk'), min(V, vocabSlice)] fp32 of category
 * {@link MemoryCategory#LOGITS}, with T' = T rounded up and tokenChunk' = tokenChunk rounded down
 * to a multiple of {@value #ROW_ALIGN}; hc, dhg and the per-row statistics are ACTIVATIONS.
 */
public final class ChunkedCrossEntropy {
    /** Row alignment of every head GEMM (a multiple of OpenBLAS's sgemm M-unrolls 4, 8, 12, 16, 24). */
    public static final int ROW_ALIGN = 48;

    private ChunkedCrossEntropy() {}

    /** Rows per token chunk: tokenChunk rounded down to a multiple of {@link #ROW_ALIGN} (at least one). */
    public static long chunkRows(long tokenChunk) {
        return Math.max(ROW_ALIGN, tokenChunk / ROW_ALIGN * ROW_ALIGN);
    }

    /** n rounded up to a multiple of {@link #ROW_ALIGN}. */
    public static long aligned(long n) {
        return (n + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
    }

    /** Rows of the logits buffer for T rows to run: min(aligned(T), chunkRows(tokenChunk)). */
    public static long bufferRows(long t, long tokenChunk) {
        return Math.min(aligned(t), chunkRows(tokenChunk));
    }

    /**
     * lm_head + cross-entropy on the rows whose target is not −100 only.
     *
     * @param h          [T, d] F32 final-norm output, on the backend's device
     * @param lmHead     [V, d] F32, frozen
     * @param labels     [T] I32 targets on the device (−100 = ignored), already shifted
     * @param hostLabels the same targets on the host (to pick the rows)
     * @param tokenChunk rows per chunk, >= 1 (rounded down to a multiple of {@link #ROW_ALIGN}, at least one)
     * @param vocabSlice vocabulary columns per slice, >= 1 (>= V: token chunks only)
     * @param lossScale  multiplies the gradient (1/N of the accumulation window)
     * @param dh         [T, d] F32, receives dL/dh (rows of ignored targets 0); null = loss only
     * @return Σ CE (nats) over the non-ignored targets
     */
    public static double lossAndGradient(Backend backend, Tensor h, Tensor lmHead, Tensor labels, int[] hostLabels,
            long tokenChunk, long vocabSlice, float lossScale, Tensor dh) {
        return lossAndGradient(backend, h, lmHead, labels, hostLabels, tokenChunk, vocabSlice, lossScale, 0f, dh);
    }

    /** {@link #lossAndGradient} over logits soft-capped at {@code softcap} (> 0; 0 = no cap). */
    public static double lossAndGradient(Backend backend, Tensor h, Tensor lmHead, Tensor labels, int[] hostLabels,
            long tokenChunk, long vocabSlice, float lossScale, float softcap, Tensor dh) {
        check(h, lmHead, labels, hostLabels, tokenChunk, vocabSlice, dh);
        int n = 0;
        int[] rows = new int[hostLabels.length];
        for (int i = 0; i < hostLabels.length; i++) if (hostLabels[i] != Example.IGNORE_INDEX) rows[n++] = i;
        return run(backend, h, lmHead, hostLabels, Arrays.copyOf(rows, n), tokenChunk, vocabSlice, lossScale, softcap, dh);
    }

    /**
     * The same as {@link #lossAndGradient} with lm_head run on every row, ignored ones included
     * (token chunks without any target are skipped): the reference the gathered head is tested
     * against bit for bit.
     */
    public static double lossAndGradientAllRows(Backend backend, Tensor h, Tensor lmHead, Tensor labels, int[] hostLabels,
            long tokenChunk, long vocabSlice, float lossScale, Tensor dh) {
        check(h, lmHead, labels, hostLabels, tokenChunk, vocabSlice, dh);
        int[] rows = new int[hostLabels.length];
        for (int i = 0; i < rows.length; i++) rows[i] = i;
        return run(backend, h, lmHead, hostLabels, rows, tokenChunk, vocabSlice, lossScale, 0f, dh);
    }

    /** The head on h's rows {@code rows} (ascending), in aligned chunks; see the class comment. */
    private static double run(Backend backend, Tensor h, Tensor lmHead, int[] hostLabels, int[] rows, long tokenChunk,
            long vocabSlice, float lossScale, float softcap, Tensor dh) {
        if (!(softcap >= 0) || Float.isInfinite(softcap))
            throw new IllegalArgumentException("final logit softcap must be finite and >= 0, got " + softcap);
        int n = rows.length, t = hostLabels.length;
        if (n == 0) return 0; // dh stays as the caller passed it: zeros
        long d = h.dim(1), vocab = lmHead.dim(0);
        long step = chunkRows(tokenChunk), chunk = bufferRows(n, tokenChunk), vc = Math.min(vocab, vocabSlice);
        long padded = (n / step) * step + aligned(n % step); // rows of dhg the chunks write
        double total = 0;
        int[] ids = new int[(int) chunk], lab = new int[(int) chunk];
        // logits and cappedBuf are overwritten (sgemm beta 0, softcapFwd) and hc (embeddingFwd) before each read
        try (Tensor logits = backend.empty(DType.F32, MemoryCategory.LOGITS, chunk, vc);
             Tensor cappedBuf = softcap > 0 ? backend.empty(DType.F32, MemoryCategory.LOGITS, chunk, vc) : null;
             Tensor hc = backend.empty(DType.F32, MemoryCategory.ACTIVATIONS, chunk, d);
             Tensor dhg = dh == null ? null : act(backend, padded + 1, d);
             Tensor rowMax = act(backend, chunk); Tensor rowSum = act(backend, chunk); Tensor zy = act(backend, chunk);
             Tensor lse = act(backend, chunk); Tensor loss = act(backend, chunk); Tensor sum = act(backend, 1)) {
            for (int c0 = 0; c0 < n; c0 += (int) step) {
                int k = (int) Math.min(step, n - c0);
                int m = (int) aligned(k);
                boolean any = false;
                for (int i = 0; i < m; i++) {
                    ids[i] = i < k ? rows[c0 + i] : rows[c0]; // padding rows: any valid row, target ignored
                    lab[i] = i < k ? hostLabels[rows[c0 + i]] : Example.IGNORE_INDEX;
                    any |= lab[i] != Example.IGNORE_INDEX;
                }
                if (!any) continue; // dhg rows stay 0: no loss there
                try (Tensor idc = ints(backend, ids, m); Tensor lb = ints(backend, lab, m); Tensor hcm = hc.slice(0, m, d);
                     Tensor lo = loss.slice(0, m); Tensor dhc = dhg == null ? null : dhg.slice((long) c0 * d, m, d)) {
                    backend.embeddingFwd(idc, h, hcm);
                    head(backend, hcm, lmHead, lb, lo, m, d, vocab, vc, lossScale, softcap, dhc, logits, cappedBuf, rowMax, rowSum,
                            zy, lse, sum);
                    total = addRows(backend, lo, k, total);
                }
            }
            if (dh != null) {
                int[] map = new int[t];
                Arrays.fill(map, (int) padded); // the zero row
                for (int i = 0; i < n; i++) map[rows[i]] = i;
                try (Tensor mapT = ints(backend, map, t); Tensor out = dh.slice(0, t, d)) {
                    backend.embeddingFwd(mapT, dhg, out);
                }
            }
        }
        return total;
    }

    /**
     * One chunk of m rows: the per-row loss into lo, dL/dhc into dhc. With a soft cap the capped
     * logits y live in {@code cappedBuf}, the raw z in {@code logits}, and dz ends in {@code logits}.
     */
    private static void head(Backend backend, Tensor hc, Tensor lmHead, Tensor lab, Tensor lo, long m, long d, long vocab,
            long vc, float lossScale, float softcap, Tensor dhc, Tensor logits, Tensor cappedBuf, Tensor rowMax, Tensor rowSum,
            Tensor zy, Tensor lse, Tensor sum) {
        try (Tensor rm = rowMax.slice(0, m); Tensor rs = rowSum.slice(0, m); Tensor ty = zy.slice(0, m);
             Tensor ls = lse.slice(0, m)) {
            if (vc == vocab) {
                // One slice: the log-sum-exp of the forward (finalize) serves the backward, no second pass over z for it.
                try (Tensor lg = logits.slice(0, m, vocab); Tensor y = softcap > 0 ? cappedBuf.slice(0, m, vocab) : null) {
                    backend.sgemm(false, true, m, vocab, d, 1f, hc, d, lmHead, d, 0f, lg, vocab);
                    Tensor capped = y == null ? lg : y;
                    if (y != null) backend.softcapFwd(lg, softcap, y);
                    backend.crossEntropyChunkStats(capped, lab, 0, true, rm, rs, ty);
                    backend.crossEntropyChunkFinalize(lab, rm, rs, ty, ls, lo, sum);
                    if (dhc != null) {
                        backend.crossEntropyChunkGrad(capped, lab, 0, ls, lossScale);
                        if (y != null) backend.softcapBwd(y, lg, softcap, lg);
                        backend.sgemm(false, false, m, d, vocab, 1f, lg, vocab, lmHead, d, 0f, dhc, d);
                    }
                }
                return;
            }
            for (long v0 = 0; v0 < vocab; v0 += vc) {
                long w = Math.min(vc, vocab - v0);
                try (Tensor lg = logits.slice(0, m, w); Tensor wv = lmHead.slice(v0 * d, w, d)) {
                    backend.sgemm(false, true, m, w, d, 1f, hc, d, wv, d, 0f, lg, w);
                    if (softcap > 0) backend.softcapFwd(lg, softcap, lg); // z itself is not needed in pass 1
                    backend.crossEntropyChunkStats(lg, lab, v0, v0 == 0, rm, rs, ty);
                }
            }
            backend.crossEntropyChunkFinalize(lab, rm, rs, ty, ls, lo, sum);
            if (dhc != null) {
                for (long v0 = 0; v0 < vocab; v0 += vc) {
                    long w = Math.min(vc, vocab - v0);
                    try (Tensor lg = logits.slice(0, m, w); Tensor wv = lmHead.slice(v0 * d, w, d);
                         Tensor y = softcap > 0 ? cappedBuf.slice(0, m, w) : null) {
                        backend.sgemm(false, true, m, w, d, 1f, hc, d, wv, d, 0f, lg, w);
                        if (y == null) backend.crossEntropyChunkGrad(lg, lab, v0, ls, lossScale);
                        else {
                            backend.softcapFwd(lg, softcap, y);
                            backend.crossEntropyChunkGrad(y, lab, v0, ls, lossScale);
                            backend.softcapBwd(y, lg, softcap, lg);
                        }
                        backend.sgemm(false, false, m, d, w, 1f, lg, w, wv, d, v0 == 0 ? 0f : 1f, dhc, d);
                    }
                }
            }
        }
    }

    private static void check(Tensor h, Tensor lmHead, Tensor labels, int[] hostLabels, long tokenChunk, long vocabSlice, Tensor dh) {
        if (tokenChunk < 1 || vocabSlice < 1)
            throw new IllegalArgumentException("token chunk " + tokenChunk + " and vocab slice " + vocabSlice + " must be >= 1");
        long t = h.dim(0), d = h.dim(1);
        if (lmHead.dim(1) != d || labels.numel() != t || hostLabels.length != t || (dh != null && dh.numel() != t * d))
            throw new IllegalArgumentException("shapes disagree: h " + h + ", lm_head " + lmHead + ", labels " + labels
                    + ", host labels " + hostLabels.length + ", dh " + dh);
    }

    private static Tensor act(Backend backend, long... shape) {
        return backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, shape);
    }

    /** values[0, n) as an I32 [n] tensor on the backend's device (on the CPU: the host tensor itself). */
    private static Tensor ints(Backend backend, int[] values, int n) {
        Tensor host = Tensor.allocate(DType.I32, MemoryCategory.ACTIVATIONS, n);
        host.buffer().asIntBuffer().put(values, 0, n);
        Tensor dev = backend.upload(host, MemoryCategory.ACTIVATIONS);
        if (dev != host) host.close();
        return dev;
    }

    /**
     * total + the first k per-row losses, one at a time in row order, in double: the same sum
     * whichever rows the chunks hold (ignored rows add exact zeros), so the gathered head's total is
     * bit-identical to the full one.
     */
    private static double addRows(Backend backend, Tensor loss, int k, double total) {
        Tensor h = backend.download(loss);
        try {
            FloatPointer p = h.floatPointer();
            double s = total;
            for (int i = 0; i < k; i++) s += p.get(i);
            return s;
        } finally {
            if (h != loss) h.close();
        }
    }
}
