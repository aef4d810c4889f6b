package io.lora4j.train;

import io.lora4j.data.Example;
import io.lora4j.ops.Backend;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;

/**
 * lm_head + cross-entropy (forward and backward) that never materialises the [T, V] logits:
 * chunked over tokens ({@code tokenChunk} rows at a time) and, when the vocabulary is wider than
 * {@code vocabSlice}, over the vocabulary too. The training head of {@link LoraTrainingModel} and
 * the cross-entropy benchmark run this same code.
 *
 * <p>Token chunks only (V <= vocabSlice), per chunk hc [n, d]: z = hc·Wᵀ [n, V]; loss and
 * dz = lossScale·(softmax(z) − onehot(y)) in place (ops.h lora4j_ce_fwd/bwd); dh = dz·W.
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
 * matmul (the price of never holding [n, V]). Rows of a chunk without any target are skipped and
 * their dh rows left as they are (the caller passes zeroed dh). The logits buffer is one tensor of
 * category {@link MemoryCategory#LOGITS}: [min(T, tokenChunk), min(V, vocabSlice)] fp32.
 */
public final class ChunkedCrossEntropy {
    private ChunkedCrossEntropy() {}

    /**
     * @param h          [T, d] F32 final-norm output, on the backend's device
     * @param lmHead     [V, d] F32, frozen
     * @param labels     [T] I32 targets on the device (−100 = ignored), already shifted
     * @param hostLabels the same targets on the host (to skip chunks without any)
     * @param tokenChunk rows per chunk, >= 1
     * @param vocabSlice vocabulary columns per slice, >= 1 (>= V: token chunks only)
     * @param lossScale  multiplies the gradient (1/N of the accumulation window)
     * @param dh         [T, d] F32, zeroed by the caller, receives dL/dh; null = loss only
     * @return Σ CE (nats) over the non-ignored targets
     */
    public static double lossAndGradient(Backend backend, Tensor h, Tensor lmHead, Tensor labels, int[] hostLabels,
            long tokenChunk, long vocabSlice, float lossScale, Tensor dh) {
        if (tokenChunk < 1 || vocabSlice < 1)
            throw new IllegalArgumentException("token chunk " + tokenChunk + " and vocab slice " + vocabSlice + " must be >= 1");
        long t = h.dim(0), d = h.dim(1), vocab = lmHead.dim(0);
        if (lmHead.dim(1) != d || labels.numel() != t || hostLabels.length != t || (dh != null && dh.numel() != t * d))
            throw new IllegalArgumentException("shapes disagree: h " + h + ", lm_head " + lmHead + ", labels " + labels
                    + ", host labels " + hostLabels.length + ", dh " + dh);
        long chunk = Math.min(t, tokenChunk), vc = Math.min(vocab, vocabSlice);
        double total = 0;
        try (Tensor logits = backend.allocate(DType.F32, MemoryCategory.LOGITS, chunk, vc);
             Tensor rowMax = act(backend, chunk); Tensor rowSum = act(backend, chunk); Tensor zy = act(backend, chunk);
             Tensor lse = act(backend, chunk); Tensor loss = act(backend, chunk); Tensor sum = act(backend, 1)) {
            for (long t0 = 0; t0 < t; t0 += chunk) {
                long n = Math.min(chunk, t - t0);
                if (!anyTarget(hostLabels, t0, n)) continue; // dh rows stay 0: no loss there
                try (Tensor hc = h.slice(t0 * d, n, d); Tensor lab = labels.slice(t0, n);
                     Tensor lo = loss.slice(0, n); Tensor dhc = dh == null ? null : dh.slice(t0 * d, n, d)) {
                    if (vc == vocab) {
                        try (Tensor lg = logits.slice(0, n, vocab)) {
                            backend.sgemm(false, true, n, vocab, d, 1f, hc, d, lmHead, d, 0f, lg, vocab);
                            backend.crossEntropyFwd(lg, lab, lo, sum);
                            total += hostFloat(backend, sum);
                            if (dhc == null) continue;
                            backend.crossEntropyBwd(lg, lab, lossScale, lg);
                            backend.sgemm(false, false, n, d, vocab, 1f, lg, vocab, lmHead, d, 0f, dhc, d);
                        }
                        continue;
                    }
                    try (Tensor rm = rowMax.slice(0, n); Tensor rs = rowSum.slice(0, n); Tensor ty = zy.slice(0, n);
                         Tensor ls = lse.slice(0, n)) {
                        for (long v0 = 0; v0 < vocab; v0 += vc) {
                            long w = Math.min(vc, vocab - v0);
                            try (Tensor lg = logits.slice(0, n, w); Tensor wv = lmHead.slice(v0 * d, w, d)) {
                                backend.sgemm(false, true, n, w, d, 1f, hc, d, wv, d, 0f, lg, w);
                                backend.crossEntropyChunkStats(lg, lab, v0, v0 == 0, rm, rs, ty);
                            }
                        }
                        backend.crossEntropyChunkFinalize(lab, rm, rs, ty, ls, lo, sum);
                        total += hostFloat(backend, sum);
                        if (dhc == null) continue;
                        for (long v0 = 0; v0 < vocab; v0 += vc) {
                            long w = Math.min(vc, vocab - v0);
                            try (Tensor lg = logits.slice(0, n, w); Tensor wv = lmHead.slice(v0 * d, w, d)) {
                                backend.sgemm(false, true, n, w, d, 1f, hc, d, wv, d, 0f, lg, w);
                                backend.crossEntropyChunkGrad(lg, lab, v0, ls, lossScale);
                                backend.sgemm(false, false, n, d, w, 1f, lg, w, wv, d, v0 == 0 ? 0f : 1f, dhc, d);
                            }
                        }
                    }
                }
            }
        }
        return total;
    }

    private static Tensor act(Backend backend, long n) {
        return backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, n);
    }

    private static boolean anyTarget(int[] labels, long t0, long n) {
        for (long i = t0; i < t0 + n; i++) if (labels[(int) i] != Example.IGNORE_INDEX) return true;
        return false;
    }

    private static float hostFloat(Backend backend, Tensor t) {
        Tensor h = backend.download(t);
        try {
            return h.floatPointer().get(0);
        } finally {
            if (h != t) h.close();
        }
    }
}
