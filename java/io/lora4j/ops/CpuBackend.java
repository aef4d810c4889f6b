package io.lora4j.ops;

import static io.lora4j.nativeapi.Lora4jNative.*;
import static io.lora4j.nativeapi.Lora4jOpsNative.*;

import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;

/** The CPU backend: AVX2/FMA kernels of liblora4j on its own thread pool, sgemm from OpenBLAS. */
public final class CpuBackend implements Backend {
    public CpuBackend() {
        NativeLibrary.load();
    }

    @Override public Device device() { return Device.CPU; }

    @Override
    public String description() {
        String blas = NativeLibrary.blasName();
        // "openblas:/long/cache/path/libopenblas_nolapack.so.0" -> "openblas (libopenblas_nolapack.so.0)"
        int slash = blas.lastIndexOf('/');
        if (blas.startsWith("openblas:") && slash >= 0) blas = "openblas (" + blas.substring(slash + 1) + ")";
        return "cpu, " + NativeLibrary.numThreads() + " threads (" + NativeLibrary.buildInfo() + "; sgemm " + blas + ")";
    }

    @Override
    public Tensor allocate(DType dtype, MemoryCategory category, long... shape) {
        return Tensor.allocate(dtype, category, shape);
    }

    @Override
    public Tensor upload(Tensor host, MemoryCategory category) {
        host.requireHost();
        return host;
    }

    @Override
    public Tensor download(Tensor t) {
        t.requireHost();
        return t;
    }

    @Override
    public void downloadInto(Tensor t, Tensor host) {
        if (t.pointer().address() != host.pointer().address()) Pointer.memcpy(host.pointer(), t.pointer(), t.bytes());
    }

    @Override public void synchronize() {}

    @Override
    public void nf4Quantize(Tensor w, int blocksize, Tensor packed, Tensor absmax) {
        lora4j_nf4_quantize(w.pointer(), NativeDTypes.code(w.dtype()), w.numel(), blocksize,
                packed.bytePointer(), absmax.floatPointer());
    }

    @Override
    public void nf4Dequantize(Tensor packed, Tensor absmax, long n, int blocksize, Tensor out) {
        lora4j_nf4_dequantize(packed.bytePointer(), absmax.floatPointer(), n, blocksize, out.floatPointer());
    }

    @Override
    public float nf4DoubleQuant(Tensor absmax, Tensor qabsmax, Tensor nestedAbsmax) {
        try (FloatPointer offset = new FloatPointer(1)) {
            lora4j_nf4_double_quant(absmax.floatPointer(), absmax.numel(), qabsmax.bytePointer(),
                    nestedAbsmax.floatPointer(), offset);
            return offset.get();
        }
    }

    @Override
    public void nf4DequantAbsmax(Tensor qabsmax, Tensor nestedAbsmax, float offset, Tensor absmax) {
        lora4j_nf4_dequant_absmax(qabsmax.bytePointer(), nestedAbsmax.floatPointer(), offset,
                qabsmax.numel(), absmax.floatPointer());
    }

    @Override
    public void nf4MatmulFwd(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y) {
        lora4j_nf4_matmul_fwd(x.floatPointer(), x.dim(0), x.dim(1), out, packed.bytePointer(),
                absmax.floatPointer(), blocksize, y.floatPointer());
    }

    @Override
    public void nf4MatmulFwdBf16(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y) {
        lora4j_nf4_matmul_fwd_bf16(x.floatPointer(), x.dim(0), x.dim(1), out, packed.bytePointer(),
                absmax.floatPointer(), blocksize, y.floatPointer());
    }

    /** The path of the bf16-compute NF4 product ("avx512bf16", "avx512", "avx2" or "scalar"). */
    public static String nf4Bf16Path() {
        NativeLibrary.load();
        return lora4j_nf4_bf16_path().getString();
    }

    @Override
    public void nf4MatmulBwdInput(Tensor dy, Tensor packed, Tensor absmax, int blocksize, long in, Tensor dx) {
        lora4j_nf4_matmul_bwd_input(dy.floatPointer(), dy.dim(0), in, dy.dim(1), packed.bytePointer(),
                absmax.floatPointer(), blocksize, dx.floatPointer());
    }

    @Override
    public void nf4DqMatmulFwd(Tensor x, Tensor packed, Tensor qabsmax, Tensor nested, float offset, int blocksize, long out,
            Tensor y) {
        lora4j_nf4_dq_matmul_fwd(x.pointer(), x.dim(0), x.dim(1), out, packed.pointer(), qabsmax.pointer(), nested.pointer(), offset,
                blocksize, y.pointer());
    }

    @Override
    public void nf4DqMatmulBwdInput(Tensor dy, Tensor packed, Tensor qabsmax, Tensor nested, float offset, int blocksize, long in,
            Tensor dx) {
        lora4j_nf4_dq_matmul_bwd_input(dy.pointer(), dy.dim(0), in, dy.dim(1), packed.pointer(), qabsmax.pointer(), nested.pointer(),
                offset, blocksize, dx.pointer());
    }

    // ---- dense and transformer ops ----
    private static Pointer p(Tensor t) {
        return t == null ? null : t.pointer();
    }

    @Override
    public void sgemm(boolean transA, boolean transB, long m, long n, long k, float alpha, Tensor a, long lda,
            Tensor b, long ldb, float beta, Tensor c, long ldc) {
        if (b.dtype() == DType.BF16)
            lora4j_gemm_w(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a.pointer(), lda, b.pointer(), NativeDTypes.code(b.dtype()),
                    ldb, beta, c.pointer(), ldc);
        else lora4j_sgemm(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, new FloatPointer(a.pointer()), lda,
                new FloatPointer(b.pointer()), ldb, beta, new FloatPointer(c.pointer()), ldc);
    }

    @Override
    public void axpy(float alpha, Tensor x, Tensor y) {
        lora4j_axpy(x.numel(), alpha, x.pointer(), y.pointer());
    }

    @Override
    public void rmsnormFwd(Tensor x, Tensor w, float eps, Tensor y, Tensor rstd) {
        lora4j_rmsnorm_fwd(x.pointer(), w.pointer(), x.dim(0), x.dim(1), eps, y.pointer(), rstd.pointer());
    }

    @Override
    public void rmsnormBwd(Tensor dy, Tensor x, Tensor w, Tensor rstd, Tensor dx, Tensor dw) {
        lora4j_rmsnorm_bwd(dy.pointer(), x.pointer(), w.pointer(), rstd.pointer(), x.dim(0), x.dim(1),
                dx.pointer(), p(dw));
    }

    @Override
    public void ropeFwd(Tensor x, Tensor y, Tensor pos, Tensor invFreq, long heads, long headDim) {
        lora4j_rope_fwd(x.pointer(), y.pointer(), pos.pointer(), invFreq.pointer(), pos.numel(), heads, headDim);
    }

    @Override
    public void ropeBwd(Tensor dy, Tensor dx, Tensor pos, Tensor invFreq, long heads, long headDim) {
        lora4j_rope_bwd(dy.pointer(), dx.pointer(), pos.pointer(), invFreq.pointer(), pos.numel(), heads, headDim);
    }

    @Override
    public void attentionFwd(Tensor q, Tensor k, Tensor v, Tensor seg, long batch, long seq, long hq, long hkv,
            long headDim, float softcap, Tensor out, Tensor lse) {
        lora4j_attention_fwd(q.pointer(), k.pointer(), v.pointer(), p(seg), batch, seq, hq, hkv, headDim, softcap,
                out.pointer(), lse.pointer());
    }

    @Override
    public void attentionBwd(Tensor q, Tensor k, Tensor v, Tensor out, Tensor dout, Tensor lse, Tensor seg,
            long batch, long seq, long hq, long hkv, long headDim, float softcap, Tensor dq, Tensor dk, Tensor dv) {
        lora4j_attention_bwd(q.pointer(), k.pointer(), v.pointer(), out.pointer(), dout.pointer(), lse.pointer(),
                p(seg), batch, seq, hq, hkv, headDim, softcap, dq.pointer(), dk.pointer(), dv.pointer());
    }

    @Override
    public void attentionDecode(Tensor q, Tensor kCache, Tensor vCache, long batch, long len, long cacheLen,
            long hq, long hkv, long headDim, float softcap, Tensor out) {
        lora4j_attention_decode(q.pointer(), kCache.pointer(), vCache.pointer(), batch, len, cacheLen, hq, hkv,
                headDim, softcap, out.pointer());
    }

    @Override
    public void softcapFwd(Tensor x, float cap, Tensor y) {
        lora4j_softcap_fwd(x.pointer(), x.numel(), cap, y.pointer());
    }

    @Override
    public void softcapBwd(Tensor dy, Tensor x, float cap, Tensor dx) {
        lora4j_softcap_bwd(dy.pointer(), x.pointer(), x.numel(), cap, dx.pointer());
    }

    /** The SIMD path of the decode kernels ("avx512", "avx2" or "scalar"; LORA4J_DECODE_ISA forces one). */
    public static String decodeIsa() {
        NativeLibrary.load();
        return lora4j_decode_isa().getString();
    }

    /** The decode kernels' weight type code (infer.h LORA4J_DECODE_*). */
    static int decodeWeightType(DType t) {
        return t == DType.BF16 ? 1 : 0;
    }

    @Override
    public void decodeMatvec(Tensor x, Tensor w, boolean accumulate, Tensor y) {
        lora4j_decode_matvec(x.pointer(), w.dim(1), w.pointer(), decodeWeightType(w.dtype()), w.dim(0), accumulate ? 1 : 0,
                y.pointer());
    }

    @Override
    public void decodeGateUp(Tensor x, Tensor wGate, Tensor wUp, Tensor s) {
        lora4j_decode_gate_up(x.pointer(), wGate.dim(1), wGate.pointer(), wUp.pointer(), decodeWeightType(wGate.dtype()),
                wGate.dim(0), s.pointer());
    }

    @Override
    public void decodeAttention(Tensor q, Tensor k, Tensor v, int position, Tensor invFreq, Tensor kCache, Tensor vCache,
            long start, long hq, long hkv, long headDim, Tensor out) {
        lora4j_decode_attention(q.pointer(), k.pointer(), v.pointer(), position, invFreq.pointer(), kCache.pointer(),
                vCache.pointer(), kCache.dim(0), start, hq, hkv, headDim, out.pointer());
    }

    @Override
    public void decodeEmbedding(Tensor table, int token, Tensor out) {
        if (table.dtype() == DType.BF16) { // the row, widened: the decode kernel reads fp32 tables
            try (Tensor row = table.slice((long) token * table.dim(1), table.dim(1))) {
                lora4j_widen_f32(row.pointer(), 1, row.numel(), out.pointer());
            }
        }
        else lora4j_decode_embedding(table.pointer(), table.dim(0), table.dim(1), token, out.pointer());
    }

    @Override
    public void swigluFwd(Tensor gate, Tensor up, Tensor h) {
        lora4j_swiglu_fwd(gate.pointer(), up.pointer(), gate.numel(), h.pointer());
    }

    @Override
    public void swigluBwd(Tensor dh, Tensor gate, Tensor up, Tensor dgate, Tensor dup) {
        lora4j_swiglu_bwd(dh.pointer(), gate.pointer(), up.pointer(), gate.numel(), dgate.pointer(), dup.pointer());
    }

    @Override
    public void gegluFwd(Tensor gate, Tensor up, Tensor h) {
        lora4j_geglu_fwd(gate.pointer(), up.pointer(), gate.numel(), h.pointer());
    }

    @Override
    public void gegluBwd(Tensor dh, Tensor gate, Tensor up, Tensor dgate, Tensor dup) {
        lora4j_geglu_bwd(dh.pointer(), gate.pointer(), up.pointer(), gate.numel(), dgate.pointer(), dup.pointer());
    }

    @Override
    public void embeddingFwd(Tensor ids, Tensor table, Tensor out) {
        lora4j_embedding_w_fwd(ids.pointer(), table.pointer(), NativeDTypes.code(table.dtype()), ids.numel(), table.dim(1),
                table.dim(0), out.pointer());
    }

    @Override
    public void crossEntropyFwd(Tensor logits, Tensor labels, Tensor loss, Tensor lossSum) {
        lora4j_ce_fwd(logits.pointer(), labels.pointer(), logits.dim(0), logits.dim(1), loss.pointer(), p(lossSum));
    }

    @Override
    public void crossEntropyBwd(Tensor logits, Tensor labels, float scale, Tensor dlogits) {
        lora4j_ce_bwd(logits.pointer(), labels.pointer(), logits.dim(0), logits.dim(1), scale, dlogits.pointer());
    }

    @Override
    public void loraFwd(Tensor x, Tensor w, Tensor a, Tensor b, Tensor dropMask, float scale, Tensor y, Tensor xa) {
        if (w != null && w.dtype() == DType.BF16) { // the base product on the bf16 weight, then the LoRA term added
            sgemm(false, true, x.dim(0), b.dim(0), x.dim(1), 1f, x, x.dim(1), w, x.dim(1), 0f, y, b.dim(0));
            w = null;
        }
        lora4j_lora_fwd(x.pointer(), p(w), a.pointer(), b.pointer(), p(dropMask), x.dim(0), x.dim(1), b.dim(0),
                a.dim(0), scale, y.pointer(), xa.pointer());
    }

    @Override
    public void loraBwd(Tensor dy, Tensor x, Tensor w, Tensor a, Tensor b, Tensor dropMask, Tensor xa, float scale,
            Tensor dx, boolean accumulateDx, Tensor da, Tensor db, Tensor workspace) {
        if (w != null && w.dtype() == DType.BF16) { // dX = [dX +] dY·W on the bf16 weight; the fused op adds the LoRA part
            if (dx != null) sgemm(false, false, x.dim(0), x.dim(1), b.dim(0), 1f, dy, b.dim(0), w, x.dim(1), accumulateDx ? 1f : 0f, dx, x.dim(1));
            w = null;
            accumulateDx = true;
        }
        lora4j_lora_bwd(dy.pointer(), x.pointer(), p(w), a.pointer(), b.pointer(), p(dropMask), xa.pointer(),
                x.dim(0), x.dim(1), b.dim(0), a.dim(0), scale, p(dx), accumulateDx ? 1 : 0, p(da), p(db),
                workspace.pointer());
    }

    @Override
    public void dropoutMask(long seed, float prob, Tensor mask) {
        lora4j_dropout_mask(seed, mask.numel(), prob, mask.pointer());
    }

    @Override
    public void adamwStep(Tensor p, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps,
            float weightDecay, long step, float gradScale) {
        lora4j_adamw_step(p.pointer(), grad.pointer(), m.pointer(), v.pointer(), p.numel(), lr, beta1, beta2, eps,
                weightDecay, step, gradScale);
    }

    @Override
    public double sumOfSquares(Tensor x) {
        try (DoublePointer out = new DoublePointer(1)) {
            out.put(0.0);
            lora4j_sumsq(x.pointer(), x.numel(), out);
            return out.get();
        }
    }

    @Override
    public void crossEntropyChunkStats(Tensor logits, Tensor labels, long v0, boolean first, Tensor rowMax,
            Tensor rowSum, Tensor targetLogit) {
        lora4j_ce_chunk_stats(logits.pointer(), labels.pointer(), logits.dim(0), logits.dim(1), v0, first ? 1 : 0,
                rowMax.pointer(), rowSum.pointer(), targetLogit.pointer());
    }

    @Override
    public void crossEntropyChunkFinalize(Tensor labels, Tensor rowMax, Tensor rowSum, Tensor targetLogit, Tensor lse,
            Tensor loss, Tensor lossSum) {
        lora4j_ce_chunk_finalize(labels.pointer(), rowMax.pointer(), rowSum.pointer(), targetLogit.pointer(),
                labels.numel(), lse.pointer(), loss.pointer(), p(lossSum));
    }

    @Override
    public void crossEntropyChunkGrad(Tensor logits, Tensor labels, long v0, Tensor lse, float scale) {
        lora4j_ce_chunk_grad(logits.pointer(), labels.pointer(), logits.dim(0), logits.dim(1), v0, lse.pointer(), scale);
    }

    /** The CPU "offload": a plain copy into a separate OFFLOADED host tensor (counted apart from CHECKPOINTS). */
    private record HostCopy(Tensor host) implements Offloaded {
        @Override public void close() {}
    }

    @Override
    public Offloaded offloadAsync(Tensor x) {
        x.requireHost();
        Tensor host = Tensor.allocate(x.dtype(), MemoryCategory.OFFLOADED, x.shape());
        Pointer.memcpy(host.pointer(), x.pointer(), x.bytes());
        x.close();
        return new HostCopy(host);
    }

    @Override public void prefetch(Offloaded h) {}

    @Override
    public Tensor await(Offloaded h) {
        return h.host();
    }
}
