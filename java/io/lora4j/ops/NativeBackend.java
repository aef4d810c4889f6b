package io.lora4j.ops;

import io.lora4j.ops.OpShapes.Lora;
import io.lora4j.ops.OpShapes.Matvec;
import io.lora4j.ops.OpShapes.Nf4Matmul;
import io.lora4j.ops.OpShapes.Rows;
import io.lora4j.ops.OpShapes.Table;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Tensor;
import java.util.function.Consumer;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;

/**
 * The ops of both native backends, each marshalled once: tensors become pointers, the dimensions come
 * from {@link OpShapes}, and the call goes to {@link KernelEntries}, liblora4j's CPU kernels
 * ({@link CpuBackend}) or its CUDA twins queued on the backend's stream ({@link CudaBackend}). What
 * differs between the devices lives in those two: memory, copies, synchronisation, offload, and how
 * a kernel's scalar result reaches the host. Nothing is validated here: {@link Backends} hands these
 * out wrapped in a {@link CheckedBackend}.
 */
public abstract sealed class NativeBackend implements Backend permits CpuBackend, CudaBackend {
    private final KernelEntries kernels;

    NativeBackend(KernelEntries kernels) {
        this.kernels = kernels;
    }

    /**
     * Runs {@code kernel} on a zeroed buffer of {@code bytes} on this device and, once it is done,
     * copies the buffer into {@code host}: the ops whose result is a scalar (the double-quant offset,
     * the sum of squares).
     */
    abstract void resultToHost(long bytes, Consumer<Pointer> kernel, Pointer host);

    private static Pointer p(Tensor t) {
        return t == null ? null : t.pointer();
    }

    private static int flag(boolean b) {
        return b ? 1 : 0;
    }

    /** The decode kernels' weight type code (infer.h LORA4J_DECODE_*). */
    private static int decodeWeightType(DType t) {
        return t == DType.BF16 ? 1 : 0;
    }

    // ---- NF4 ----

    @Override
    public void nf4Quantize(Tensor w, int blocksize, Tensor packed, Tensor absmax) {
        kernels.nf4Quantize(w.pointer(), NativeDTypes.code(w.dtype()), w.numel(), blocksize, packed.pointer(), absmax.pointer());
    }

    @Override
    public void nf4Dequantize(Tensor packed, Tensor absmax, long n, int blocksize, Tensor out) {
        kernels.nf4Dequantize(packed.pointer(), absmax.pointer(), n, blocksize, out.pointer());
    }

    @Override
    public float nf4DoubleQuant(Tensor absmax, Tensor qabsmax, Tensor nestedAbsmax) {
        try (FloatPointer offset = new FloatPointer(1)) {
            resultToHost(Float.BYTES, result -> kernels.nf4DoubleQuant(absmax.pointer(), absmax.numel(), qabsmax.pointer(),
                    nestedAbsmax.pointer(), result), offset);
            return offset.get();
        }
    }

    @Override
    public void nf4DequantAbsmax(Tensor qabsmax, Tensor nestedAbsmax, float offset, Tensor absmax) {
        kernels.nf4DequantAbsmax(qabsmax.pointer(), nestedAbsmax.pointer(), offset, qabsmax.numel(), absmax.pointer());
    }

    @Override
    public void nf4MatmulFwd(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y) {
        Nf4Matmul s = Nf4Matmul.forward(x, out);
        kernels.nf4MatmulFwd(x.pointer(), s.t(), s.in(), s.out(), packed.pointer(), absmax.pointer(), blocksize, y.pointer());
    }

    @Override
    public void nf4MatmulBwdInput(Tensor dy, Tensor packed, Tensor absmax, int blocksize, long in, Tensor dx) {
        Nf4Matmul s = Nf4Matmul.backwardInput(dy, in);
        kernels.nf4MatmulBwdInput(dy.pointer(), s.t(), s.in(), s.out(), packed.pointer(), absmax.pointer(), blocksize,
                dx.pointer());
    }

    @Override
    public void nf4DqMatmulFwd(Tensor x, Tensor packed, Tensor qabsmax, Tensor nested, float offset, int blocksize, long out,
            Tensor y) {
        Nf4Matmul s = Nf4Matmul.forward(x, out);
        kernels.nf4DqMatmulFwd(x.pointer(), s.t(), s.in(), s.out(), packed.pointer(), qabsmax.pointer(), nested.pointer(),
                offset, blocksize, y.pointer());
    }

    @Override
    public void nf4DqMatmulBwdInput(Tensor dy, Tensor packed, Tensor qabsmax, Tensor nested, float offset, int blocksize, long in,
            Tensor dx) {
        Nf4Matmul s = Nf4Matmul.backwardInput(dy, in);
        kernels.nf4DqMatmulBwdInput(dy.pointer(), s.t(), s.in(), s.out(), packed.pointer(), qabsmax.pointer(),
                nested.pointer(), offset, blocksize, dx.pointer());
    }

    // ---- dense and transformer ops ----

    /** Both devices take B in its storage dtype (storage.h gemm_w); an F32 B on the CPU goes to OpenBLAS's sgemm. */
    @Override
    public void sgemm(boolean transA, boolean transB, long m, long n, long k, float alpha, Tensor a, long lda,
            Tensor b, long ldb, float beta, Tensor c, long ldc) {
        kernels.gemmW(flag(transA), flag(transB), m, n, k, alpha, a.pointer(), lda, b.pointer(), NativeDTypes.code(b.dtype()),
                ldb, beta, c.pointer(), ldc);
    }

    @Override
    public void axpy(float alpha, Tensor x, Tensor y) {
        kernels.axpy(x.numel(), alpha, x.pointer(), y.pointer());
    }

    @Override
    public void rmsnormFwd(Tensor x, Tensor w, float eps, Tensor y, Tensor rstd) {
        Rows s = Rows.of(x);
        kernels.rmsnormFwd(x.pointer(), w.pointer(), s.rows(), s.cols(), eps, y.pointer(), rstd.pointer());
    }

    @Override
    public void rmsnormBwd(Tensor dy, Tensor x, Tensor w, Tensor rstd, Tensor dx, Tensor dw) {
        Rows s = Rows.of(x);
        kernels.rmsnormBwd(dy.pointer(), x.pointer(), w.pointer(), rstd.pointer(), s.rows(), s.cols(), dx.pointer(), p(dw));
    }

    @Override
    public void ropeFwd(Tensor x, Tensor y, Tensor pos, Tensor invFreq, long heads, long headDim) {
        kernels.ropeFwd(x.pointer(), y.pointer(), pos.pointer(), invFreq.pointer(), pos.numel(), heads, headDim);
    }

    @Override
    public void ropeBwd(Tensor dy, Tensor dx, Tensor pos, Tensor invFreq, long heads, long headDim) {
        kernels.ropeBwd(dy.pointer(), dx.pointer(), pos.pointer(), invFreq.pointer(), pos.numel(), heads, headDim);
    }

    @Override
    public void attentionFwd(Tensor q, Tensor k, Tensor v, Tensor seg, long batch, long seq, long hq, long hkv,
            long headDim, float softcap, Tensor out, Tensor lse) {
        kernels.attentionFwd(q.pointer(), k.pointer(), v.pointer(), p(seg), batch, seq, hq, hkv, headDim, softcap,
                out.pointer(), lse.pointer());
    }

    @Override
    public void attentionBwd(Tensor q, Tensor k, Tensor v, Tensor out, Tensor dout, Tensor lse, Tensor seg,
            long batch, long seq, long hq, long hkv, long headDim, float softcap, Tensor dq, Tensor dk, Tensor dv) {
        kernels.attentionBwd(q.pointer(), k.pointer(), v.pointer(), out.pointer(), dout.pointer(), lse.pointer(), p(seg),
                batch, seq, hq, hkv, headDim, softcap, dq.pointer(), dk.pointer(), dv.pointer());
    }

    @Override
    public void attentionDecode(Tensor q, Tensor kCache, Tensor vCache, long batch, long len, long cacheLen,
            long hq, long hkv, long headDim, float softcap, Tensor out) {
        kernels.attentionDecode(q.pointer(), kCache.pointer(), vCache.pointer(), batch, len, cacheLen, hq, hkv, headDim,
                softcap, out.pointer());
    }

    @Override
    public void softcapFwd(Tensor x, float cap, Tensor y) {
        kernels.softcapFwd(x.pointer(), x.numel(), cap, y.pointer());
    }

    @Override
    public void softcapBwd(Tensor dy, Tensor x, float cap, Tensor dx) {
        kernels.softcapBwd(dy.pointer(), x.pointer(), x.numel(), cap, dx.pointer());
    }

    // ---- single-token decode ----

    @Override
    public void decodeMatvec(Tensor x, Tensor w, boolean accumulate, Tensor y) {
        Matvec s = Matvec.of(w);
        kernels.decodeMatvec(x.pointer(), s.in(), w.pointer(), decodeWeightType(w.dtype()), s.out(), flag(accumulate),
                y.pointer());
    }

    @Override
    public void decodeGateUp(Tensor x, Tensor wGate, Tensor wUp, Tensor s) {
        Matvec g = Matvec.of(wGate);
        kernels.decodeGateUp(x.pointer(), g.in(), wGate.pointer(), wUp.pointer(), decodeWeightType(wGate.dtype()), g.out(),
                s.pointer());
    }

    @Override
    public void decodeAttention(Tensor q, Tensor k, Tensor v, int position, Tensor invFreq, Tensor kCache, Tensor vCache,
            long start, long hq, long hkv, long headDim, Tensor out) {
        kernels.decodeAttention(q.pointer(), k.pointer(), v.pointer(), position, invFreq.pointer(), kCache.pointer(),
                vCache.pointer(), kCache.dim(0), start, hq, hkv, headDim, out.pointer());
    }

    @Override
    public void decodeEmbedding(Tensor table, int token, Tensor out) {
        Table s = Table.of(table);
        if (table.dtype() == DType.BF16) { // the row, widened: the decode kernel reads fp32 tables
            try (Tensor row = table.slice(token * s.dim(), s.dim())) {
                kernels.widenF32(row.pointer(), NativeDTypes.code(DType.BF16), row.numel(), out.pointer());
            }
        }
        else kernels.decodeEmbedding(table.pointer(), s.vocab(), s.dim(), token, out.pointer());
    }

    // ---- MLP activations, embedding, cross-entropy ----

    // a bf16 gate (mixed precision keeps gate and up in bf16) selects the kernels that read bf16 pairs

    @Override
    public void swigluFwd(Tensor gate, Tensor up, Tensor h) {
        if (gate.dtype() == DType.BF16) kernels.swigluBf16Fwd(gate.pointer(), up.pointer(), gate.numel(), h.pointer());
        else kernels.swigluFwd(gate.pointer(), up.pointer(), gate.numel(), h.pointer());
    }

    @Override
    public void swigluBwd(Tensor dh, Tensor gate, Tensor up, Tensor dgate, Tensor dup) {
        if (gate.dtype() == DType.BF16)
            kernels.swigluBf16Bwd(dh.pointer(), gate.pointer(), up.pointer(), gate.numel(), dgate.pointer(), dup.pointer());
        else kernels.swigluBwd(dh.pointer(), gate.pointer(), up.pointer(), gate.numel(), dgate.pointer(), dup.pointer());
    }

    @Override
    public void gegluFwd(Tensor gate, Tensor up, Tensor h) {
        if (gate.dtype() == DType.BF16) kernels.gegluBf16Fwd(gate.pointer(), up.pointer(), gate.numel(), h.pointer());
        else kernels.gegluFwd(gate.pointer(), up.pointer(), gate.numel(), h.pointer());
    }

    @Override
    public void gegluBwd(Tensor dh, Tensor gate, Tensor up, Tensor dgate, Tensor dup) {
        if (gate.dtype() == DType.BF16)
            kernels.gegluBf16Bwd(dh.pointer(), gate.pointer(), up.pointer(), gate.numel(), dgate.pointer(), dup.pointer());
        else kernels.gegluBwd(dh.pointer(), gate.pointer(), up.pointer(), gate.numel(), dgate.pointer(), dup.pointer());
    }

    // ---- mixed precision: kept activations in bf16 ----

    @Override
    public void roundBf16(Tensor x, Tensor out) {
        kernels.roundBf16(x.pointer(), x.numel(), out.pointer());
    }

    @Override
    public void widenBf16(Tensor x, Tensor out) {
        kernels.widenF32(x.pointer(), NativeDTypes.code(DType.BF16), x.numel(), out.pointer());
    }

    @Override
    public void embeddingFwd(Tensor ids, Tensor table, Tensor out) {
        Table s = Table.of(table);
        kernels.embeddingWFwd(ids.pointer(), table.pointer(), NativeDTypes.code(table.dtype()), ids.numel(), s.dim(),
                s.vocab(), out.pointer());
    }

    @Override
    public void crossEntropyFwd(Tensor logits, Tensor labels, Tensor loss, Tensor lossSum) {
        Rows s = Rows.of(logits);
        kernels.ceFwd(logits.pointer(), labels.pointer(), s.rows(), s.cols(), loss.pointer(), p(lossSum));
    }

    @Override
    public void crossEntropyBwd(Tensor logits, Tensor labels, float scale, Tensor dlogits) {
        Rows s = Rows.of(logits);
        kernels.ceBwd(logits.pointer(), labels.pointer(), s.rows(), s.cols(), scale, dlogits.pointer());
    }

    @Override
    public void crossEntropyChunkStats(Tensor logits, Tensor labels, long v0, boolean first, Tensor rowMax,
            Tensor rowSum, Tensor targetLogit) {
        Rows s = Rows.of(logits);
        kernels.ceChunkStats(logits.pointer(), labels.pointer(), s.rows(), s.cols(), v0, flag(first), rowMax.pointer(),
                rowSum.pointer(), targetLogit.pointer());
    }

    @Override
    public void crossEntropyChunkFinalize(Tensor labels, Tensor rowMax, Tensor rowSum, Tensor targetLogit, Tensor lse,
            Tensor loss, Tensor lossSum) {
        kernels.ceChunkFinalize(labels.pointer(), rowMax.pointer(), rowSum.pointer(), targetLogit.pointer(), labels.numel(),
                lse.pointer(), loss.pointer(), p(lossSum));
    }

    @Override
    public void crossEntropyChunkGrad(Tensor logits, Tensor labels, long v0, Tensor lse, float scale) {
        Rows s = Rows.of(logits);
        kernels.ceChunkGrad(logits.pointer(), labels.pointer(), s.rows(), s.cols(), v0, lse.pointer(), scale);
    }

    // ---- LoRA and the optimizer ----

    @Override
    public void loraFwd(Tensor x, Tensor w, Tensor a, Tensor b, Tensor dropMask, float scale, Tensor y, Tensor xa) {
        Lora s = Lora.of(x, a, b);
        if (w != null && w.dtype() == DType.BF16) { // the base product on the bf16 weight, then the LoRA term added
            sgemm(false, true, s.t(), s.out(), s.in(), 1f, x, s.in(), w, s.in(), 0f, y, s.out());
            w = null;
        }
        kernels.loraFwd(x.pointer(), p(w), a.pointer(), b.pointer(), p(dropMask), s.t(), s.in(), s.out(), s.r(), scale,
                y.pointer(), xa.pointer());
    }

    @Override
    public void loraBwd(Tensor dy, Tensor x, Tensor w, Tensor a, Tensor b, Tensor dropMask, Tensor xa, float scale,
            Tensor dx, boolean accumulateDx, Tensor da, Tensor db, Tensor workspace) {
        Lora s = Lora.of(x, a, b);
        if (w != null && w.dtype() == DType.BF16) { // dX = [dX +] dY·W on the bf16 weight; the fused op adds the LoRA part
            if (dx != null) sgemm(false, false, s.t(), s.in(), s.out(), 1f, dy, s.out(), w, s.in(), accumulateDx ? 1f : 0f, dx, s.in());
            w = null;
            accumulateDx = true;
        }
        kernels.loraBwd(dy.pointer(), x.pointer(), p(w), a.pointer(), b.pointer(), p(dropMask), xa.pointer(), s.t(), s.in(),
                s.out(), s.r(), scale, p(dx), flag(accumulateDx), p(da), p(db), workspace.pointer());
    }

    @Override
    public void dropoutMask(long seed, float prob, Tensor mask) {
        kernels.dropoutMask(seed, mask.numel(), prob, mask.pointer());
    }

    @Override
    public void adamwStep(Tensor p, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps,
            float weightDecay, long step, float gradScale) {
        kernels.adamwStep(p.pointer(), grad.pointer(), m.pointer(), v.pointer(), p.numel(), lr, beta1, beta2, eps,
                weightDecay, step, gradScale);
    }

    @Override
    public double sumOfSquares(Tensor x) {
        try (DoublePointer sum = new DoublePointer(1)) {
            resultToHost(Double.BYTES, result -> kernels.sumsq(x.pointer(), x.numel(), result), sum);
            return sum.get();
        }
    }
}
