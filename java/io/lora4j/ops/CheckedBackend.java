package io.lora4j.ops;

import io.lora4j.ops.OpShapes.Lora;
import io.lora4j.ops.OpShapes.Matvec;
import io.lora4j.ops.OpShapes.Nf4Matmul;
import io.lora4j.ops.OpShapes.Rows;
import io.lora4j.ops.OpShapes.Table;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.Objects;

/**
 * A {@link Backend} decorator that checks every op's arguments in Java and only then delegates,
 * so a wrong shape, dtype, device or a closed tensor is an {@link IllegalArgumentException} or
 * {@link IllegalStateException} instead of an out-of-bounds read or write in native code.
 *
 * <p>What is checked, per tensor argument: not null (unless the op documents null), not closed,
 * on {@link #device()}, of the dtype the native kernel reads (F32 for activations, I32 for ids,
 * positions, labels and segments, U8/NF4 for packed weights), and holding at least as many
 * elements as the op will touch. Element counts are products of the dimension arguments,
 * computed with {@link Math#multiplyExact} so an overflowing size is an exception, not a wrap.
 * Dimension arguments must be positive (or non-negative where an empty op is harmless).
 * Tensors may be larger than needed (callers reuse workspaces); they may never be smaller.
 * Values inside tensors (token ids in range, finite weights) are the kernels' concern: they
 * throw for those.
 */
public final class CheckedBackend implements Backend {
    private final Backend delegate;

    /** Wraps {@code delegate}; wrapping a {@code CheckedBackend} again returns an equivalent check. */
    public CheckedBackend(Backend delegate) {
        this.delegate = Objects.requireNonNull(delegate, "delegate");
    }

    /** {@code b} wrapped, or {@code b} itself when it is already checked. */
    public static Backend wrap(Backend b) {
        return b instanceof CheckedBackend ? b : new CheckedBackend(b);
    }

    /** The backend the checked calls go to. */
    public Backend delegate() {
        return delegate;
    }

    @Override public Device device() { return delegate.device(); }

    /** The backend this one checks for (ops that need its device handles: {@link Nccl}). */
    Backend unchecked() { return delegate; }

    @Override public String description() { return delegate.description(); }

    @Override
    public Tensor allocate(DType dtype, MemoryCategory category, long... shape) {
        checkAllocation(dtype, category, shape);
        return delegate.allocate(dtype, category, shape);
    }

    @Override
    public Tensor empty(DType dtype, MemoryCategory category, long... shape) {
        checkAllocation(dtype, category, shape);
        return delegate.empty(dtype, category, shape);
    }

    private static void checkAllocation(DType dtype, MemoryCategory category, long[] shape) {
        Objects.requireNonNull(dtype, "dtype");
        Objects.requireNonNull(category, "category");
        Objects.requireNonNull(shape, "shape");
        long n;
        try {
            n = Tensor.numel(shape);
            dtype.byteSize(n);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("tensor shape " + java.util.Arrays.toString(shape) + " of " + dtype
                    + " overflows 64-bit byte counts");
        }
    }

    @Override
    public Tensor upload(Tensor host, MemoryCategory category) {
        live(host, "host");
        if (host.device() != Device.CPU) throw new IllegalArgumentException("upload needs a host tensor, got " + host);
        Objects.requireNonNull(category, "category");
        return delegate.upload(host, category);
    }

    @Override
    public Tensor download(Tensor t) {
        mine(t, "t");
        return delegate.download(t);
    }

    @Override
    public void downloadInto(Tensor t, Tensor host) {
        mine(t, "t");
        live(host, "host");
        if (host.device() != Device.CPU) throw new IllegalArgumentException("downloadInto needs a host tensor, got " + host);
        // not typed(): that also asks for the backend's device, which a host tensor is not on CUDA
        if (host.dtype() != t.dtype() || host.numel() < t.numel())
            throw new IllegalArgumentException("host must be " + t.dtype() + " of at least " + t.numel() + " elements, got " + host);
        delegate.downloadInto(t, host);
    }

    @Override public void synchronize() { delegate.synchronize(); }

    // ---- NF4 ----

    @Override
    public void nf4Quantize(Tensor w, int blocksize, Tensor packed, Tensor absmax) {
        blocksize(blocksize);
        mine(w, "w");
        if (w.dtype() != DType.F32 && w.dtype() != DType.BF16 && w.dtype() != DType.F16)
            throw new IllegalArgumentException("nf4Quantize: w must be F32, BF16 or F16, got " + w);
        long n = w.numel();
        positive(n, "w.numel");
        packed(packed, n, "packed");
        f32(absmax, blocks(n, blocksize), "absmax");
        delegate.nf4Quantize(w, blocksize, packed, absmax);
    }

    @Override
    public void nf4Dequantize(Tensor packed, Tensor absmax, long n, int blocksize, Tensor out) {
        blocksize(blocksize);
        positive(n, "n");
        packed(packed, n, "packed");
        f32(absmax, blocks(n, blocksize), "absmax");
        f32(out, n, "out");
        delegate.nf4Dequantize(packed, absmax, n, blocksize, out);
    }

    @Override
    public float nf4DoubleQuant(Tensor absmax, Tensor qabsmax, Tensor nestedAbsmax) {
        f32(absmax, 1, "absmax");
        long nb = absmax.numel();
        u8(qabsmax, nb, "qabsmax");
        f32(nestedAbsmax, blocks(nb, NESTED_BLOCKSIZE), "nestedAbsmax");
        return delegate.nf4DoubleQuant(absmax, qabsmax, nestedAbsmax);
    }

    @Override
    public void nf4DequantAbsmax(Tensor qabsmax, Tensor nestedAbsmax, float offset, Tensor absmax) {
        u8(qabsmax, 1, "qabsmax");
        long nb = qabsmax.numel();
        f32(nestedAbsmax, blocks(nb, NESTED_BLOCKSIZE), "nestedAbsmax");
        f32(absmax, nb, "absmax");
        delegate.nf4DequantAbsmax(qabsmax, nestedAbsmax, offset, absmax);
    }

    /** The operands of an NF4 forward product, whatever its compute dtype. */
    private void nf4Forward(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y) {
        nf4Input(x, "x", blocksize);
        Nf4Matmul s = Nf4Matmul.forward(x, out);
        long n = nf4Weight(s, packed);
        f32(y, mul(s.t(), s.out(), "T*out"), "y");
        f32(absmax, blocks(n, blocksize), "absmax");
    }

    @Override
    public void nf4MatmulFwd(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y) {
        nf4Forward(x, packed, absmax, blocksize, out, y);
        delegate.nf4MatmulFwd(x, packed, absmax, blocksize, out, y);
    }

    @Override
    public void nf4MatmulFwdBf16(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y) {
        nf4Forward(x, packed, absmax, blocksize, out, y);
        delegate.nf4MatmulFwdBf16(x, packed, absmax, blocksize, out, y);
    }

    @Override
    public void nf4MatmulBwdInput(Tensor dy, Tensor packed, Tensor absmax, int blocksize, long in, Tensor dx) {
        nf4Input(dy, "dy", blocksize);
        Nf4Matmul s = Nf4Matmul.backwardInput(dy, in);
        long n = nf4Weight(s, packed);
        f32(dx, mul(s.t(), s.in(), "T*in"), "dx");
        f32(absmax, blocks(n, blocksize), "absmax");
        delegate.nf4MatmulBwdInput(dy, packed, absmax, blocksize, in, dx);
    }

    @Override
    public void nf4DqMatmulFwd(Tensor x, Tensor packed, Tensor qabsmax, Tensor nested, float offset, int blocksize, long out,
            Tensor y) {
        nf4Input(x, "x", blocksize);
        Nf4Matmul s = Nf4Matmul.forward(x, out);
        long n = nf4Weight(s, packed);
        f32(y, mul(s.t(), s.out(), "T*out"), "y");
        doubleQuantScales(qabsmax, nested, offset, blocks(n, blocksize));
        delegate.nf4DqMatmulFwd(x, packed, qabsmax, nested, offset, blocksize, out, y);
    }

    @Override
    public void nf4DqMatmulBwdInput(Tensor dy, Tensor packed, Tensor qabsmax, Tensor nested, float offset, int blocksize, long in,
            Tensor dx) {
        nf4Input(dy, "dy", blocksize);
        Nf4Matmul s = Nf4Matmul.backwardInput(dy, in);
        long n = nf4Weight(s, packed);
        f32(dx, mul(s.t(), s.in(), "T*in"), "dx");
        doubleQuantScales(qabsmax, nested, offset, blocks(n, blocksize));
        delegate.nf4DqMatmulBwdInput(dy, packed, qabsmax, nested, offset, blocksize, in, dx);
    }

    /** The activation an NF4 matmul reads (x [T, in] forward, dy [T, out] backward) and its blocksize. */
    private void nf4Input(Tensor a, String what, int blocksize) {
        blocksize(blocksize);
        matrix(a, what);
    }

    /** Positive dimensions and the packed [out, in] weight of an NF4 matmul; returns its element count out·in. */
    private long nf4Weight(Nf4Matmul s, Tensor packed) {
        positive(s.t(), "T");
        positive(s.in(), "in");
        positive(s.out(), "out");
        long n = mul(s.out(), s.in(), "out*in");
        packed(packed, n, "packed");
        return n;
    }

    /** U8 codes [nblocks], F32 nested absmax [ceil(nblocks/256)], a finite offset. */
    private void doubleQuantScales(Tensor qabsmax, Tensor nested, float offset, long nblocks) {
        u8(qabsmax, nblocks, "qabsmax");
        f32(nested, blocks(nblocks, NESTED_BLOCKSIZE), "nested_absmax");
        if (!Float.isFinite(offset)) throw new IllegalArgumentException("double-quant offset must be finite, got " + offset);
    }

    // ---- dense and transformer ops ----

    @Override
    public void sgemm(boolean transA, boolean transB, long m, long n, long k, float alpha, Tensor a, long lda,
            Tensor b, long ldb, float beta, Tensor c, long ldc) {
        nonNegative(m, "m");
        nonNegative(n, "n");
        nonNegative(k, "k");
        // row-major: op(A) is [m, k]; A itself is [m, k] (lda >= k) or, transposed, [k, m] (lda >= m)
        strided(a, transA ? k : m, transA ? m : k, lda, "A");
        weight(b, "B");
        extent(b, transB ? n : k, transB ? k : n, ldb, "B");
        strided(c, m, n, ldc, "C");
        delegate.sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }

    @Override
    public void axpy(float alpha, Tensor x, Tensor y) {
        f32(x, 0, "x");
        f32(y, x.numel(), "y");
        delegate.axpy(alpha, x, y);
    }

    @Override
    public void rmsnormFwd(Tensor x, Tensor w, float eps, Tensor y, Tensor rstd) {
        matrix(x, "x");
        Rows s = Rows.of(x);
        positive(s.cols(), "dim");
        f32(w, s.cols(), "w");
        f32(y, x.numel(), "y");
        f32(rstd, s.rows(), "rstd");
        delegate.rmsnormFwd(x, w, eps, y, rstd);
    }

    @Override
    public void rmsnormBwd(Tensor dy, Tensor x, Tensor w, Tensor rstd, Tensor dx, Tensor dw) {
        matrix(x, "x");
        Rows s = Rows.of(x);
        positive(s.cols(), "dim");
        f32(dy, x.numel(), "dy");
        f32(w, s.cols(), "w");
        f32(rstd, s.rows(), "rstd");
        f32(dx, x.numel(), "dx");
        if (dw != null) f32(dw, s.cols(), "dw");
        delegate.rmsnormBwd(dy, x, w, rstd, dx, dw);
    }

    @Override
    public void ropeFwd(Tensor x, Tensor y, Tensor pos, Tensor invFreq, long heads, long headDim) {
        rope(x, y, pos, invFreq, heads, headDim, "x", "y");
        delegate.ropeFwd(x, y, pos, invFreq, heads, headDim);
    }

    @Override
    public void ropeBwd(Tensor dy, Tensor dx, Tensor pos, Tensor invFreq, long heads, long headDim) {
        rope(dy, dx, pos, invFreq, heads, headDim, "dy", "dx");
        delegate.ropeBwd(dy, dx, pos, invFreq, heads, headDim);
    }

    private void rope(Tensor in, Tensor outT, Tensor pos, Tensor invFreq, long heads, long headDim, String inName,
            String outName) {
        positive(heads, "heads");
        positive(headDim, "headDim");
        if (headDim % 2 != 0) throw new IllegalArgumentException("RoPE needs an even headDim, got " + headDim);
        i32(pos, 0, "pos");
        long t = pos.numel();
        long n = mul(mul(t, heads, "T*heads"), headDim, "T*heads*headDim");
        f32(in, n, inName);
        f32(outT, n, outName);
        f32(invFreq, headDim / 2, "invFreq");
    }

    @Override
    public void attentionFwd(Tensor q, Tensor k, Tensor v, Tensor seg, long batch, long seq, long hq, long hkv,
            long headDim, float softcap, Tensor out, Tensor lse) {
        long rows = attentionShape(batch, seq, hq, hkv, headDim);
        softcap(softcap);
        long qn = mul(rows, mul(hq, headDim, "Hq*D"), "B*S*Hq*D");
        long kn = mul(rows, mul(hkv, headDim, "Hkv*D"), "B*S*Hkv*D");
        f32(q, qn, "q");
        f32(k, kn, "k");
        f32(v, kn, "v");
        if (seg != null) i32(seg, rows, "seg");
        f32(out, qn, "out");
        f32(lse, mul(rows, hq, "B*Hq*S"), "lse");
        delegate.attentionFwd(q, k, v, seg, batch, seq, hq, hkv, headDim, softcap, out, lse);
    }

    @Override
    public void attentionBwd(Tensor q, Tensor k, Tensor v, Tensor out, Tensor dout, Tensor lse, Tensor seg,
            long batch, long seq, long hq, long hkv, long headDim, float softcap, Tensor dq, Tensor dk, Tensor dv) {
        long rows = attentionShape(batch, seq, hq, hkv, headDim);
        softcap(softcap);
        long qn = mul(rows, mul(hq, headDim, "Hq*D"), "B*S*Hq*D");
        long kn = mul(rows, mul(hkv, headDim, "Hkv*D"), "B*S*Hkv*D");
        f32(q, qn, "q");
        f32(k, kn, "k");
        f32(v, kn, "v");
        f32(out, qn, "out");
        f32(dout, qn, "dout");
        f32(lse, mul(rows, hq, "B*Hq*S"), "lse");
        if (seg != null) i32(seg, rows, "seg");
        f32(dq, qn, "dq");
        f32(dk, kn, "dk");
        f32(dv, kn, "dv");
        delegate.attentionBwd(q, k, v, out, dout, lse, seg, batch, seq, hq, hkv, headDim, softcap, dq, dk, dv);
    }

    /** An attention soft cap: finite and >= 0 (0 = off). */
    private static void softcap(float softcap) {
        if (!(softcap >= 0) || Float.isInfinite(softcap))
            throw new IllegalArgumentException("attention softcap must be finite and >= 0, got " + softcap);
    }

    private static long attentionShape(long batch, long seq, long hq, long hkv, long headDim) {
        positive(batch, "batch");
        positive(seq, "seq");
        positive(hq, "hq");
        positive(hkv, "hkv");
        positive(headDim, "headDim");
        if (hq % hkv != 0)
            throw new IllegalArgumentException("GQA needs hq a multiple of hkv, got hq " + hq + ", hkv " + hkv);
        return mul(batch, seq, "B*S");
    }

    @Override
    public void attentionDecode(Tensor q, Tensor kCache, Tensor vCache, long batch, long len, long cacheLen,
            long hq, long hkv, long headDim, float softcap, Tensor out) {
        softcap(softcap);
        positive(batch, "batch");
        positive(len, "len");
        positive(cacheLen, "cacheLen");
        positive(hq, "hq");
        positive(hkv, "hkv");
        positive(headDim, "headDim");
        if (len > cacheLen) throw new IllegalArgumentException("decode over " + len + " positions of a cache of " + cacheLen);
        if (hq % hkv != 0)
            throw new IllegalArgumentException("GQA needs hq a multiple of hkv, got hq " + hq + ", hkv " + hkv);
        long qn = mul(batch, mul(hq, headDim, "Hq*D"), "B*Hq*D");
        long cn = mul(mul(batch, cacheLen, "B*cacheLen"), mul(hkv, headDim, "Hkv*D"), "B*cacheLen*Hkv*D");
        f32(q, qn, "q");
        f32(kCache, cn, "kCache");
        f32(vCache, cn, "vCache");
        f32(out, qn, "out");
        delegate.attentionDecode(q, kCache, vCache, batch, len, cacheLen, hq, hkv, headDim, softcap, out);
    }

    // ---- single-token decode ----

    /** A dense decode weight: rank 2, F32 or BF16, on this device. */
    private void decodeWeight(Tensor w, String what) {
        mine(w, what);
        if (w.rank() != 2) throw new IllegalArgumentException(what + " must be 2-D [out, in], got " + w);
        if (w.dtype() != DType.F32 && w.dtype() != DType.BF16)
            throw new IllegalArgumentException(what + " must be F32 or BF16 for the decode kernels, got " + w);
    }

    @Override
    public void decodeMatvec(Tensor x, Tensor w, boolean accumulate, Tensor y) {
        decodeWeight(w, "w");
        Matvec s = Matvec.of(w);
        f32(x, s.in(), "x");
        f32(y, s.out(), "y");
        delegate.decodeMatvec(x, w, accumulate, y);
    }

    @Override
    public void decodeGateUp(Tensor x, Tensor wGate, Tensor wUp, Tensor s) {
        decodeWeight(wGate, "wGate");
        decodeWeight(wUp, "wUp");
        if (wGate.dtype() != wUp.dtype() || wGate.dim(0) != wUp.dim(0) || wGate.dim(1) != wUp.dim(1))
            throw new IllegalArgumentException("gate and up weights must have one shape and type, got " + wGate + " and " + wUp);
        Matvec g = Matvec.of(wGate);
        f32(x, g.in(), "x");
        f32(s, g.out(), "s");
        delegate.decodeGateUp(x, wGate, wUp, s);
    }

    @Override
    public void decodeAttention(Tensor q, Tensor k, Tensor v, int position, Tensor invFreq, Tensor kCache, Tensor vCache,
            long start, long hq, long hkv, long headDim, Tensor out) {
        positive(hq, "hq");
        positive(hkv, "hkv");
        positive(headDim, "headDim");
        if (hq % hkv != 0)
            throw new IllegalArgumentException("GQA needs hq a multiple of hkv, got hq " + hq + ", hkv " + hkv);
        if (headDim % 2 != 0 || headDim > 1024)
            throw new IllegalArgumentException("decode attention needs an even head_dim <= 1024, got " + headDim);
        long qn = mul(hq, headDim, "Hq*D"), kvn = mul(hkv, headDim, "Hkv*D");
        matrix(kCache, "kCache");
        matrix(vCache, "vCache");
        if (kCache.dim(1) != kvn || vCache.dim(1) != kvn || vCache.dim(0) != kCache.dim(0))
            throw new IllegalArgumentException("KV caches must be [capacity, " + kvn + "], got " + kCache + " and " + vCache);
        if (position < 0 || position >= kCache.dim(0))
            throw new IllegalArgumentException("position " + position + " outside a cache of " + kCache.dim(0));
        if (start < 0 || start > position)
            throw new IllegalArgumentException("window start " + start + " must be in [0, " + position + "]");
        f32(q, qn, "q");
        f32(k, kvn, "k");
        f32(v, kvn, "v");
        f32(invFreq, headDim / 2, "invFreq");
        f32(out, qn, "out");
        delegate.decodeAttention(q, k, v, position, invFreq, kCache, vCache, start, hq, hkv, headDim, out);
    }

    @Override
    public void decodeEmbedding(Tensor table, int token, Tensor out) {
        weightMatrix(table, "table");
        Table s = Table.of(table);
        if (token < 0 || token >= s.vocab())
            throw new IllegalArgumentException("token id " + token + " outside the vocabulary of " + s.vocab());
        f32(out, s.dim(), "out");
        delegate.decodeEmbedding(table, token, out);
    }

    @Override
    public void swigluFwd(Tensor gate, Tensor up, Tensor h) {
        gluShapes(gate, up, h);
        delegate.swigluFwd(gate, up, h);
    }

    @Override
    public void swigluBwd(Tensor dh, Tensor gate, Tensor up, Tensor dgate, Tensor dup) {
        gluBwdShapes(dh, gate, up, dgate, dup);
        delegate.swigluBwd(dh, gate, up, dgate, dup);
    }

    /**
     * The gated MLP activations (SwiGLU, GeGLU): gate and up both F32, or both BF16 (kept in bf16 by
     * mixed precision; storage.h), the rest F32, every tensor with gate's element count.
     */
    private void gluShapes(Tensor gate, Tensor up, Tensor h) {
        gluInputs(gate, up);
        f32(h, gate.numel(), "h");
    }

    private void gluBwdShapes(Tensor dh, Tensor gate, Tensor up, Tensor dgate, Tensor dup) {
        gluInputs(gate, up);
        long n = gate.numel();
        f32(dh, n, "dh");
        f32(dgate, n, "dgate");
        f32(dup, n, "dup");
    }

    private void gluInputs(Tensor gate, Tensor up) {
        mine(gate, "gate");
        if (gate.dtype() != DType.F32 && gate.dtype() != DType.BF16) throw new IllegalArgumentException("gate must be F32 or BF16, got " + gate);
        typed(up, gate.dtype(), gate.numel(), "up");
    }

    @Override
    public void gegluFwd(Tensor gate, Tensor up, Tensor h) {
        gluShapes(gate, up, h);
        delegate.gegluFwd(gate, up, h);
    }

    @Override
    public void gegluBwd(Tensor dh, Tensor gate, Tensor up, Tensor dgate, Tensor dup) {
        gluBwdShapes(dh, gate, up, dgate, dup);
        delegate.gegluBwd(dh, gate, up, dgate, dup);
    }

    @Override
    public void softcapFwd(Tensor x, float cap, Tensor y) {
        softcapShapes(x, cap, y, "y");
        delegate.softcapFwd(x, cap, y);
    }

    @Override
    public void softcapBwd(Tensor dy, Tensor x, float cap, Tensor dx) {
        softcapShapes(x, cap, dy, "dy");
        f32(dx, x.numel(), "dx");
        delegate.softcapBwd(dy, x, cap, dx);
    }

    /** x F32 on this device, other of its element count, cap finite and > 0. */
    private void softcapShapes(Tensor x, float cap, Tensor other, String otherName) {
        if (!(cap > 0) || Float.isInfinite(cap)) throw new IllegalArgumentException("softcap must be finite and > 0, got " + cap);
        f32(x, 0, "x");
        f32(other, x.numel(), otherName);
    }

    @Override
    public void roundBf16(Tensor x, Tensor out) {
        f32(x, 0, "x");
        typed(out, DType.BF16, x.numel(), "out");
        delegate.roundBf16(x, out);
    }

    @Override
    public void widenBf16(Tensor x, Tensor out) {
        typed(x, DType.BF16, 0, "x");
        f32(out, x.numel(), "out");
        delegate.widenBf16(x, out);
    }

    @Override
    public void embeddingFwd(Tensor ids, Tensor table, Tensor out) {
        i32(ids, 0, "ids");
        weightMatrix(table, "table");
        Table s = Table.of(table);
        positive(s.vocab(), "vocab");
        positive(s.dim(), "dim");
        f32(out, mul(ids.numel(), s.dim(), "T*dim"), "out");
        delegate.embeddingFwd(ids, table, out);
    }

    @Override
    public void crossEntropyFwd(Tensor logits, Tensor labels, Tensor loss, Tensor lossSum) {
        matrix(logits, "logits");
        Rows s = Rows.of(logits);
        long t = s.rows();
        positive(s.cols(), "V");
        i32(labels, t, "labels");
        f32(loss, t, "loss");
        if (lossSum != null) f32(lossSum, 1, "lossSum");
        delegate.crossEntropyFwd(logits, labels, loss, lossSum);
    }

    @Override
    public void crossEntropyBwd(Tensor logits, Tensor labels, float scale, Tensor dlogits) {
        matrix(logits, "logits");
        Rows s = Rows.of(logits);
        long t = s.rows();
        positive(s.cols(), "V");
        i32(labels, t, "labels");
        f32(dlogits, logits.numel(), "dlogits");
        delegate.crossEntropyBwd(logits, labels, scale, dlogits);
    }

    @Override
    public void crossEntropyChunkStats(Tensor logits, Tensor labels, long v0, boolean first, Tensor rowMax,
            Tensor rowSum, Tensor targetLogit) {
        matrix(logits, "logits");
        Rows s = Rows.of(logits);
        long n = s.rows();
        positive(s.cols(), "vocab slice");
        nonNegative(v0, "v0");
        i32(labels, n, "labels");
        f32(rowMax, n, "rowMax");
        f32(rowSum, n, "rowSum");
        f32(targetLogit, n, "targetLogit");
        delegate.crossEntropyChunkStats(logits, labels, v0, first, rowMax, rowSum, targetLogit);
    }

    @Override
    public void crossEntropyChunkFinalize(Tensor labels, Tensor rowMax, Tensor rowSum, Tensor targetLogit, Tensor lse,
            Tensor loss, Tensor lossSum) {
        i32(labels, 0, "labels");
        long n = labels.numel();
        f32(rowMax, n, "rowMax");
        f32(rowSum, n, "rowSum");
        f32(targetLogit, n, "targetLogit");
        f32(lse, n, "lse");
        f32(loss, n, "loss");
        if (lossSum != null) f32(lossSum, 1, "lossSum");
        delegate.crossEntropyChunkFinalize(labels, rowMax, rowSum, targetLogit, lse, loss, lossSum);
    }

    @Override
    public void crossEntropyChunkGrad(Tensor logits, Tensor labels, long v0, Tensor lse, float scale) {
        matrix(logits, "logits");
        Rows s = Rows.of(logits);
        long n = s.rows();
        positive(s.cols(), "vocab slice");
        nonNegative(v0, "v0");
        i32(labels, n, "labels");
        f32(lse, n, "lse");
        delegate.crossEntropyChunkGrad(logits, labels, v0, lse, scale);
    }

    @Override
    public void loraFwd(Tensor x, Tensor w, Tensor a, Tensor b, Tensor dropMask, float scale, Tensor y, Tensor xa) {
        Lora s = loraShape(x, a, b);
        if (w != null) weightOf(w, mul(s.out(), s.in(), "out*in"), "w");
        if (dropMask != null) f32(dropMask, x.numel(), "dropMask");
        f32(y, mul(s.t(), s.out(), "T*out"), "y");
        f32(xa, mul(s.t(), s.r(), "T*r"), "xa");
        delegate.loraFwd(x, w, a, b, dropMask, scale, y, xa);
    }

    @Override
    public void loraBwd(Tensor dy, Tensor x, Tensor w, Tensor a, Tensor b, Tensor dropMask, Tensor xa, float scale,
            Tensor dx, boolean accumulateDx, Tensor da, Tensor db, Tensor workspace) {
        Lora s = loraShape(x, a, b);
        f32(dy, mul(s.t(), s.out(), "T*out"), "dy");
        if (w != null) weightOf(w, mul(s.out(), s.in(), "out*in"), "w");
        if (dropMask != null) f32(dropMask, x.numel(), "dropMask");
        f32(xa, mul(s.t(), s.r(), "T*r"), "xa");
        if (dx != null) f32(dx, x.numel(), "dx");
        if (da != null) f32(da, a.numel(), "da");
        if (db != null) f32(db, b.numel(), "db");
        // lora.h: lora4j_lora_bwd_workspace_floats(T, r) = T*r floats (G = dY·B)
        f32(workspace, mul(s.t(), s.r(), "T*r"), "workspace");
        delegate.loraBwd(dy, x, w, a, b, dropMask, xa, scale, dx, accumulateDx, da, db, workspace);
    }

    /** The shape of a LoRA call, x [T, in], a [r, in], b [out, r], once x, a and b agree on it. */
    private Lora loraShape(Tensor x, Tensor a, Tensor b) {
        matrix(x, "x");
        matrix(a, "a");
        matrix(b, "b");
        Lora s = Lora.of(x, a, b);
        positive(s.t(), "T");
        positive(s.in(), "in");
        positive(s.r(), "r");
        positive(s.out(), "out");
        if (a.dim(1) != s.in()) throw new IllegalArgumentException("lora: a is " + a + ", x has " + s.in() + " columns");
        if (b.dim(1) != s.r()) throw new IllegalArgumentException("lora: b is " + b + ", a has rank " + s.r());
        return s;
    }

    @Override
    public void dropoutMask(long seed, float p, Tensor mask) {
        if (!(p >= 0f && p < 1f)) throw new IllegalArgumentException("dropout probability must be in [0, 1), got " + p);
        f32(mask, 0, "mask");
        delegate.dropoutMask(seed, p, mask);
    }

    @Override
    public void adamwStep(Tensor p, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps,
            float weightDecay, long step, float gradScale) {
        if (step < 1) throw new IllegalArgumentException("AdamW step number must be >= 1, got " + step);
        f32(p, 0, "p");
        long n = p.numel();
        f32(grad, n, "grad");
        f32(m, n, "m");
        f32(v, n, "v");
        delegate.adamwStep(p, grad, m, v, lr, beta1, beta2, eps, weightDecay, step, gradScale);
    }

    @Override
    public double sumOfSquares(Tensor x) {
        f32(x, 0, "x");
        return delegate.sumOfSquares(x);
    }

    @Override
    public Offloaded offloadAsync(Tensor x) {
        mine(x, "x");
        return delegate.offloadAsync(x);
    }

    @Override
    public void prefetch(Offloaded h) {
        Objects.requireNonNull(h, "offloaded");
        live(h.host(), "offloaded host copy");
        delegate.prefetch(h);
    }

    @Override
    public Tensor await(Offloaded h) {
        Objects.requireNonNull(h, "offloaded");
        live(h.host(), "offloaded host copy");
        return delegate.await(h);
    }

    // ---- checks ----

    /** bitsandbytes' nested (double-quant) blocksize, as in {@code io.lora4j.quant.Nf4Weight}. */
    private static final long NESTED_BLOCKSIZE = 256;

    private static void blocksize(int blocksize) {
        if (blocksize < 32 || blocksize > 4096 || Integer.bitCount(blocksize) != 1)
            throw new IllegalArgumentException("NF4 blocksize must be a power of two in [32, 4096], got " + blocksize);
    }

    private static long blocks(long n, long blocksize) {
        return n / blocksize + (n % blocksize == 0 ? 0 : 1);
    }

    static long mul(long a, long b, String what) {
        try {
            return Math.multiplyExact(a, b);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException(what + " overflows 64 bits (" + a + " * " + b + ")");
        }
    }

    private static void positive(long v, String what) {
        if (v <= 0) throw new IllegalArgumentException(what + " must be positive, got " + v);
    }

    private static void nonNegative(long v, String what) {
        if (v < 0) throw new IllegalArgumentException(what + " must be >= 0, got " + v);
    }

    private static void live(Tensor t, String what) {
        if (t == null) throw new IllegalArgumentException(what + " is null");
        if (t.isClosed()) throw new IllegalStateException(what + " is closed: " + t);
    }

    /** Not null, not closed, on this backend's device. */
    private void mine(Tensor t, String what) {
        live(t, what);
        if (t.device() != delegate.device())
            throw new IllegalArgumentException(what + " lives on " + t.device() + ", the backend on " + delegate.device());
    }

    private void typed(Tensor t, DType dtype, long minNumel, String what) {
        mine(t, what);
        if (t.dtype() != dtype) throw new IllegalArgumentException(what + " must be " + dtype + ", got " + t);
        if (t.numel() < minNumel)
            throw new IllegalArgumentException(what + " holds " + t.numel() + " elements, the op needs " + minNumel + ": " + t);
    }

    private void f32(Tensor t, long minNumel, String what) {
        typed(t, DType.F32, minNumel, what);
    }

    private void i32(Tensor t, long minNumel, String what) {
        typed(t, DType.I32, minNumel, what);
    }

    private void u8(Tensor t, long minNumel, String what) {
        typed(t, DType.U8, minNumel, what);
    }

    /** Packed NF4 storage for n codes: U8 or NF4, at least ceil(n/2) bytes. */
    private void packed(Tensor t, long n, String what) {
        mine(t, what);
        if (t.dtype() != DType.U8 && t.dtype() != DType.NF4)
            throw new IllegalArgumentException(what + " must be U8 or NF4 packed codes, got " + t);
        long need = n / 2 + (n % 2);
        if (t.bytes() < need)
            throw new IllegalArgumentException(what + " holds " + t.bytes() + " bytes, " + n + " NF4 codes need " + need);
    }

    /** F32 rank-2 tensor; dims as the CPU backend reads them. */
    private void matrix(Tensor t, String what) {
        mine(t, what);
        if (t.dtype() != DType.F32) throw new IllegalArgumentException(what + " must be F32, got " + t);
        if (t.rank() != 2) throw new IllegalArgumentException(what + " must be 2-D, got " + t);
    }

    /** A frozen weight as the kernels read it: F32, or BF16 widened to fp32 on read (storage.h). */
    private void weight(Tensor t, String what) {
        mine(t, what);
        if (t.dtype() != DType.F32 && t.dtype() != DType.BF16) throw new IllegalArgumentException(what + " must be F32 or BF16, got " + t);
    }

    private void weightMatrix(Tensor t, String what) {
        weight(t, what);
        if (t.rank() != 2) throw new IllegalArgumentException(what + " must be 2-D, got " + t);
    }

    private void weightOf(Tensor t, long minNumel, String what) {
        weight(t, what);
        if (t.numel() < minNumel)
            throw new IllegalArgumentException(what + " holds " + t.numel() + " elements, the op needs " + minNumel + ": " + t);
    }

    /** A row-major F32 matrix of rows x cols with row stride ld inside t. */
    private void strided(Tensor t, long rows, long cols, long ld, String what) {
        mine(t, what);
        if (t.dtype() != DType.F32) throw new IllegalArgumentException(what + " must be F32, got " + t);
        extent(t, rows, cols, ld, what);
    }

    /** t holds a rows x cols matrix with row stride ld (elements of t's dtype). */
    private void extent(Tensor t, long rows, long cols, long ld, String what) {
        if (ld < Math.max(1, cols)) throw new IllegalArgumentException("row stride of " + what + " is " + ld + ", less than its " + cols + " columns");
        if (rows == 0 || cols == 0) return;
        long need = mul(rows - 1, ld, what + " extent");
        if (need > Long.MAX_VALUE - cols) throw new IllegalArgumentException(what + " extent overflows 64 bits");
        need += cols;
        if (t.numel() < need)
            throw new IllegalArgumentException(what + " holds " + t.numel() + " elements, a [" + rows + ", " + cols
                    + "] matrix with stride " + ld + " needs " + need + ": " + t);
    }
}
