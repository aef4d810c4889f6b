package io.lora4j.ops;

import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;

/**
 * The compute backend: one implementation per device, same semantics. Arguments are validated by
 * the callers in {@code io.lora4j.quant} and {@code io.lora4j.ops} before they arrive here, so
 * implementations only move pointers to the native kernels. Tensors passed in live on
 * {@link #device()}.
 */
public interface Backend {
    Device device();

    /** A line for logs: device name and what the kernels run on. */
    String description();

    /** A zero-filled tensor on this backend's device. */
    Tensor allocate(DType dtype, MemoryCategory category, long... shape);

    /**
     * A tensor on this backend's device whose contents are unspecified (torch.empty), for an op's
     * output that the op overwrites completely before anything reads it ("overwritten" in
     * native/include/lora4j); never for an accumulated (+=) output. Saves {@link #allocate}'s
     * zero-fill where the backend can (the CPU's {@link Tensor#empty}); zero-filled otherwise.
     */
    default Tensor empty(DType dtype, MemoryCategory category, long... shape) {
        return allocate(dtype, category, shape);
    }

    /** A copy of a host tensor on this device (the same tensor's copy on the CPU backend). */
    Tensor upload(Tensor host, MemoryCategory category);

    /** A host copy of a tensor of this device. */
    Tensor download(Tensor t);

    /**
     * Copies tensor {@code t} of this device into the host tensor {@code host} (same dtype, at least
     * as many elements), after the work queued before it: a download without allocating.
     */
    void downloadInto(Tensor t, Tensor host);

    /** Waits until all queued work is done. */
    void synchronize();

    // ---- NF4 (see native/include/lora4j/nf4.h for the exact format) ----

    /** packed [(n+1)/2] U8 and absmax [ceil(n/blocksize)] F32 from w (F32, BF16 or F16). */
    void nf4Quantize(Tensor w, int blocksize, Tensor packed, Tensor absmax);

    /** out [n] F32 from packed NF4 and fp32 absmax. */
    void nf4Dequantize(Tensor packed, Tensor absmax, long n, int blocksize, Tensor out);

    /** qabsmax [nblocks] U8 and nested [ceil(nblocks/256)] F32 from absmax; returns the offset. */
    float nf4DoubleQuant(Tensor absmax, Tensor qabsmax, Tensor nestedAbsmax);

    /** absmax [nblocks] F32 from the double-quantized form. */
    void nf4DequantAbsmax(Tensor qabsmax, Tensor nestedAbsmax, float offset, Tensor absmax);

    /** y [T, out] = x [T, in] · dequant(w)ᵀ for an NF4 weight w of shape [out, in]. */
    void nf4MatmulFwd(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y);

    /**
     * {@link #nf4MatmulFwd} with bitsandbytes' {@code bnb_4bit_compute_dtype: bfloat16}: x and the
     * dequantized weight rounded to bf16, products accumulated in fp32 (nf4.h
     * lora4j_nf4_matmul_fwd_bf16). CUDA's NF4 product already computes this way.
     */
    void nf4MatmulFwdBf16(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y);

    /** dx [T, in] = dy [T, out] · dequant(w) for an NF4 weight w of shape [out, in]. */
    void nf4MatmulBwdInput(Tensor dy, Tensor packed, Tensor absmax, int blocksize, long in, Tensor dx);

    /**
     * {@link #nf4MatmulFwd} with bitsandbytes' double-quantized scales (storage.h): absmax[b] =
     * dynamicMap[qabsmax[b]]·nested[b/256] + offset, computed by the kernel (no fp32 absmax).
     * qabsmax U8 [nblocks], nested F32 [ceil(nblocks/256)].
     */
    void nf4DqMatmulFwd(Tensor x, Tensor packed, Tensor qabsmax, Tensor nested, float offset, int blocksize, long out, Tensor y);

    /** {@link #nf4MatmulBwdInput} with double-quantized scales (see {@link #nf4DqMatmulFwd}). */
    void nf4DqMatmulBwdInput(Tensor dy, Tensor packed, Tensor qabsmax, Tensor nested, float offset, int blocksize, long in, Tensor dx);

    // ---- dense and transformer ops (native/include/lora4j/{runtime,ops,lora,infer}.h) ----
    // Shapes are the native API's; io.lora4j.ops.Ops checks them before calling these.

    /**
     * C[M,N] = alpha·op(A)·op(B) + beta·C, row-major with row strides lda, ldb, ldc; A and C F32, B
     * F32 or a BF16 weight (widened exactly to fp32 as it is read; storage.h lora4j_gemm_w).
     */
    void sgemm(boolean transA, boolean transB, long m, long n, long k, float alpha, Tensor a, long lda,
            Tensor b, long ldb, float beta, Tensor c, long ldc);

    /**
     * Mixed precision (storage.h {@code lora4j_round_bf16}): out [n] BF16 = x [n] F32 rounded to nearest
     * even, and x rounded in place to that value, so the kept bf16 copy and the fp32 value the forward
     * goes on with are the same number.
     */
    void roundBf16(Tensor x, Tensor out);

    /** out [n] F32 = x [n] BF16 widened (exact; storage.h {@code lora4j_widen_f32}). */
    void widenBf16(Tensor x, Tensor out);

    /** y += alpha·x over x.numel() elements. */
    void axpy(float alpha, Tensor x, Tensor y);

    /** y = rmsnorm(x [T, dim]) · w, rstd [T] saved. */
    void rmsnormFwd(Tensor x, Tensor w, float eps, Tensor y, Tensor rstd);

    /** dx from dy; dw accumulated (null: skip). */
    void rmsnormBwd(Tensor dy, Tensor x, Tensor w, Tensor rstd, Tensor dx, Tensor dw);

    /** HF rotate_half RoPE of x [T, heads, headDim] into y (may be x), positions I32 [T]. */
    void ropeFwd(Tensor x, Tensor y, Tensor pos, Tensor invFreq, long heads, long headDim);

    void ropeBwd(Tensor dy, Tensor dx, Tensor pos, Tensor invFreq, long heads, long headDim);

    /**
     * Causal GQA attention over B sequences of S tokens; seg may be null; lse [B, Hq, S]. With
     * {@code softcap} > 0 each score s becomes softcap·tanh(s / softcap) before the softmax
     * (Gemma 2's attn_logit_softcapping); 0 = off.
     */
    void attentionFwd(Tensor q, Tensor k, Tensor v, Tensor seg, long batch, long seq, long hq, long hkv,
            long headDim, float softcap, Tensor out, Tensor lse);

    /** Without a soft cap. */
    default void attentionFwd(Tensor q, Tensor k, Tensor v, Tensor seg, long batch, long seq, long hq, long hkv,
            long headDim, Tensor out, Tensor lse) {
        attentionFwd(q, k, v, seg, batch, seq, hq, hkv, headDim, 0f, out, lse);
    }

    /** The backward of {@link #attentionFwd} with the same {@code softcap}. */
    void attentionBwd(Tensor q, Tensor k, Tensor v, Tensor out, Tensor dout, Tensor lse, Tensor seg, long batch,
            long seq, long hq, long hkv, long headDim, float softcap, Tensor dq, Tensor dk, Tensor dv);

    /** Without a soft cap. */
    default void attentionBwd(Tensor q, Tensor k, Tensor v, Tensor out, Tensor dout, Tensor lse, Tensor seg, long batch,
            long seq, long hq, long hkv, long headDim, Tensor dq, Tensor dk, Tensor dv) {
        attentionBwd(q, k, v, out, dout, lse, seg, batch, seq, hq, hkv, headDim, 0f, dq, dk, dv);
    }

    /** One query token per sequence against L cached positions (KV-cache decoding); softcap as in attentionFwd. */
    void attentionDecode(Tensor q, Tensor kCache, Tensor vCache, long batch, long len, long cacheLen, long hq,
            long hkv, long headDim, float softcap, Tensor out);

    /** Without a soft cap. */
    default void attentionDecode(Tensor q, Tensor kCache, Tensor vCache, long batch, long len, long cacheLen, long hq,
            long hkv, long headDim, Tensor out) {
        attentionDecode(q, kCache, vCache, batch, len, cacheLen, hq, hkv, headDim, 0f, out);
    }

    // ---- single-token decode (infer.h lora4j_decode_*: T = 1, nothing allocated) ----

    /**
     * y [out] (= or += when {@code accumulate}) w [out, in] · x [in] for a dense F32 or BF16 weight
     * (out and in are w's dims): a T = 1 projection, optionally straight into the residual.
     */
    void decodeMatvec(Tensor x, Tensor w, boolean accumulate, Tensor y);

    /** s [inter] = silu(wGate · x)·(wUp · x) for dense F32 or BF16 weights [inter, in] of one type. */
    void decodeGateUp(Tensor x, Tensor wGate, Tensor wUp, Tensor s);

    /**
     * One layer's attention for one new token at {@code position}: q [hq·hd] is roped in place, the
     * roped k [hkv·hd] and v go to row {@code position} of kCache/vCache [capacity, hkv·hd], and
     * out [hq·hd] attends to rows start..position.
     */
    void decodeAttention(Tensor q, Tensor k, Tensor v, int position, Tensor invFreq, Tensor kCache, Tensor vCache,
            long start, long hq, long hkv, long headDim, Tensor out);

    /** out [dim] = row {@code token} of table [vocab, dim] (F32 or BF16, widened). */
    void decodeEmbedding(Tensor table, int token, Tensor out);

    /** h = silu(gate)·up, elementwise; gate and up F32, or both BF16 (kept by mixed precision; storage.h), h F32. */
    void swigluFwd(Tensor gate, Tensor up, Tensor h);

    void swigluBwd(Tensor dh, Tensor gate, Tensor up, Tensor dgate, Tensor dup);

    /** h = gelu_tanh(gate)·up over gate.numel() elements (Gemma's GeGLU; h may alias gate or up). */
    void gegluFwd(Tensor gate, Tensor up, Tensor h);

    void gegluBwd(Tensor dh, Tensor gate, Tensor up, Tensor dgate, Tensor dup);

    /** out [T, dim] F32 = table [vocab, dim] (F32 or BF16, widened) rows of ids I32 [T]. */
    void embeddingFwd(Tensor ids, Tensor table, Tensor out);

    /** Per-token loss [T] and its sum [1] (may be null) over logits [T, V], labels I32 [T] (-100 ignored). */
    void crossEntropyFwd(Tensor logits, Tensor labels, Tensor loss, Tensor lossSum);

    /** dlogits = scale·(softmax - onehot), 0 rows where ignored. */
    void crossEntropyBwd(Tensor logits, Tensor labels, float scale, Tensor dlogits);

    /** y = cap·tanh(x / cap) elementwise (Gemma 2's final_logit_softcapping); y may be x; cap > 0. */
    void softcapFwd(Tensor x, float cap, Tensor y);

    /** dx = dy·(1 − tanh²(x / cap)), x the forward's input; dx may be dy. */
    void softcapBwd(Tensor dy, Tensor x, float cap, Tensor dx);

    // ---- vocabulary-chunked cross-entropy (ops.h lora4j_ce_chunk_*: online log-sum-exp) ----

    /**
     * Folds one vocabulary slice into per-row running statistics. {@code logits} [n, vc] F32 holds
     * columns [v0, v0+vc) of the rows' logits (row stride vc); labels I32 [n] in [0, V) or -100;
     * rowMax, rowSum, targetLogit F32 [n] are overwritten when {@code first}, else folded into.
     */
    void crossEntropyChunkStats(Tensor logits, Tensor labels, long v0, boolean first, Tensor rowMax, Tensor rowSum,
            Tensor targetLogit);

    /**
     * After the last slice: lse [n] = rowMax + log rowSum, loss [n] = lse − targetLogit (both 0 for
     * ignored rows), lossSum [1] = Σ loss (may be null). All F32, labels I32 [n].
     */
    void crossEntropyChunkFinalize(Tensor labels, Tensor rowMax, Tensor rowSum, Tensor targetLogit, Tensor lse,
            Tensor loss, Tensor lossSum);

    /**
     * In place on the slice's logits [n, vc] (columns [v0, v0+vc)): scale·(exp(z − lse) − onehot),
     * 0 rows where ignored; lse F32 [n] from {@link #crossEntropyChunkFinalize}.
     */
    void crossEntropyChunkGrad(Tensor logits, Tensor labels, long v0, Tensor lse, float scale);

    /**
     * Y (=|+=) X·Wᵀ + s·drop(X)·Aᵀ·Bᵀ; w null adds only the LoRA term; xa [T, r] saved. w may be a
     * BF16 weight: its product then runs as {@link #sgemm} and the fused op adds the LoRA term.
     */
    void loraFwd(Tensor x, Tensor w, Tensor a, Tensor b, Tensor dropMask, float scale, Tensor y, Tensor xa);

    /** The fused LoRA backward (lora.h): dA, dB accumulate; dX overwritten or accumulated; w F32, BF16 (as in {@link #loraFwd}) or null. */
    void loraBwd(Tensor dy, Tensor x, Tensor w, Tensor a, Tensor b, Tensor dropMask, Tensor xa, float scale,
            Tensor dx, boolean accumulateDx, Tensor da, Tensor db, Tensor workspace);

    /** Inverted-dropout mask, identical on every backend for the same seed. */
    void dropoutMask(long seed, float p, Tensor mask);

    /** One AdamW step (torch semantics) over a flat parameter vector. */
    void adamwStep(Tensor p, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps,
            float weightDecay, long step, float gradScale);

    /** Σ x², accumulated in double. */
    double sumOfSquares(Tensor x);

    // ---- offload of checkpointed layer inputs ("unsloth" gradient checkpointing, DESIGN.md §4) ----

    /**
     * A layer input parked in host memory by {@link #offloadAsync}. {@link #host()} is the host copy
     * (category {@link MemoryCategory#OFFLOADED}, pinned on CUDA); its contents are only complete
     * once {@link Backend#await} returned. The caller owns {@code host()} and closes it once the
     * tensor from {@code await} is no longer needed; {@link #close()} releases the rest (events, a
     * source or prefetched device copy nobody claimed) and is idempotent.
     */
    interface Offloaded extends AutoCloseable {
        Tensor host();

        @Override
        void close();
    }

    /**
     * Starts copying {@code x} (a tensor of this device, ownership passes to the backend) to host
     * memory. On the CPU the copy is immediate and {@code x} is closed; on CUDA it runs on a side
     * stream after the work already queued, and the device source is freed once the copy is done.
     */
    Offloaded offloadAsync(Tensor x);

    /** Starts copying {@code h}'s host copy back to the device ahead of need (no-op on the CPU; idempotent). */
    void prefetch(Offloaded h);

    /**
     * The layer input on this device, ordered before any work queued after this call: on CUDA a new
     * tensor (category CHECKPOINTS) that the caller owns; on the CPU {@code h.host()} itself.
     */
    Tensor await(Offloaded h);
}
