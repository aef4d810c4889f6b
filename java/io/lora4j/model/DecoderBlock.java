package io.lora4j.model;

import io.lora4j.ops.Backend;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.EnumMap;
import java.util.Map;

/**
 * The decoder layer, written once for every use: training and evaluation (full causal
 * attention, {@link Causal}), decoding ({@link KvCacheAttention}), with frozen projections
 * ({@link #PLAIN}) or LoRA ones (a {@link Projector} of the training code that keeps what its
 * backward needs in the {@link Activations}).
 *
 * <p>Per layer (HF LlamaDecoderLayer; the family's {@link Architecture} adds the bracketed steps):
 * <pre>
 *   x0 = embed(ids) [· √hidden (Gemma)]
 *   h1 = rmsnorm(x)·w1;  q,k,v = lin(h1) [+ bias (Qwen2)];  [q,k = per-head rmsnorm (Qwen3, Gemma 3)]
 *   q,k = rope(q,k) [local base on sliding layers (Gemma 3)];  [q ·= √head_dim / √query_pre_attn_scalar (Gemma)]
 *   a = attn(q,k,v) [within the sliding window (Mistral; Gemma's sliding layers)]
 *                   [scores soft-capped: c·tanh(s / c), attn_logit_softcapping (Gemma 2)]
 *   m  = x + [rmsnorm](lin_o(a));   h2 = rmsnorm(m)·w2;  g,u = lin(h2);  s = act(g)·u [silu, or gelu_tanh (Gemma)]
 *   x' = m + [rmsnorm](lin_down(s))       [the bracketed output norms: Gemma's four norms per layer]
 * </pre>
 * RMSNorm and all computed activations are fp32; Gemma's (1 + w) norm weights are offset once in
 * {@link DeviceWeights}. The backward walks the same graph in reverse: each
 * residual branch's input gradient is added to the residual stream's.
 *
 * <p><b>Kept activations in bf16</b> (mixed precision, as PEFT/Unsloth with {@code bf16=True};
 * {@link #DecoderBlock(DeviceWeights, DType)} with BF16): the tensors the backward reads that are
 * largest are stored in bf16: the layer's input and output x, x' (the residual stream between layers:
 * what gradient checkpointing stashes or offloads), the inputs of the projections h1, h2, the
 * attention output a and s = act(g)·u, attention's roped q, k and v, the residual x_mid between
 * attention and MLP, and the MLP's gate and up g, u. Each is rounded once, where it is made
 * ({@link Backend#roundBf16}), and the forward goes on with the rounded value (attention reads the
 * rounded q, k, v in fp32), so the backward, which reads g and u in bf16 (the gated activations'
 * bf16 kernels) and widens the others exactly ({@link Backend#widenBf16}) into a transient fp32
 * tensor just before their use, freeing both copies right after, sees what the forward used, and a
 * recomputed forward repeats the first bit for bit. The products, norms' statistics, softmax,
 * attention's log-sum-exp and the residual additions stay fp32; so do the pre-norm q and k of the
 * families with per-head q/k norms and the pre-norm outputs of Gemma's sandwich norms.
 *
 * <p>Not thread-safe. Closing frees the block's scratch, not the weights.
 */
public final class DecoderBlock implements AutoCloseable {
    private final Backend backend;
    private final LlamaConfig config;
    private final DeviceWeights weights;
    private final Architecture arch;
    private final float queryScale; // √head_dim / √query_pre_attn_scalar: 1 unless the family sets the scalar
    private final float softcap;    // attn_logit_softcapping, 0 = off
    private final DType kept;       // F32, or BF16: x, x', h1, q, k, v, a, x_mid, h2, g, u and s stored in bf16 (see the class comment)
    private Tensor ones;      // [n] of 1.0: the bias broadcast (y += 1·bᵀ)

    /** A block whose kept activations are fp32. */
    public DecoderBlock(DeviceWeights weights) {
        this(weights, DType.F32);
    }

    /**
     * @param kept the dtype of the kept activations (layer inputs/outputs, h1, q, k, v, attention output,
     *             x_mid, h2, g, u, s): F32, or BF16
     *             for mixed precision
     * @throws IllegalArgumentException for another dtype
     */
    public DecoderBlock(DeviceWeights weights, DType kept) {
        if (kept != DType.F32 && kept != DType.BF16)
            throw new IllegalArgumentException("kept activations are F32 or BF16, not " + kept);
        this.kept = kept;
        this.backend = weights.backend();
        this.config = weights.config();
        this.weights = weights;
        this.arch = config.architecture();
        double qpas = arch.queryPreAttnScalar();
        this.queryScale = qpas > 0 ? (float) (Math.sqrt(config.headDim()) / Math.sqrt(qpas)) : 1f;
        this.softcap = (float) arch.attnSoftcap();
    }

    public DeviceWeights weights() {
        return weights;
    }

    /** The dtype of the kept activations and of the residual stream between layers: F32 or BF16. */
    public DType keptDtype() {
        return kept;
    }

    /** Frees the block's own scratch (not the weights). */
    @Override
    public void close() {
        if (ones != null) ones.close();
        ones = null;
    }

    // ---------------------------------------------------------------- strategies

    /** How a layer's projections are computed: the frozen weight alone, or with an adapter. */
    public interface Projector {
        /**
         * y [T, out] = x [T, in] · Wᵀ (+ the adapter's term) for projection {@code p} of layer
         * {@code layer}; what the backward needs goes into {@code a}. Caller closes y.
         */
        Tensor project(int layer, Projection p, Tensor x, Activations a);

        /**
         * dx (= or += when {@code accumulate}) dL/dx given dy; trainable parameters' gradients
         * accumulate wherever the projector keeps them.
         */
        void backward(int layer, Projection p, Tensor dy, Tensor x, Activations a, Tensor dx, boolean accumulate);
    }

    /** How a layer attends: over whole sequences, or one new token against a cache. */
    public interface Attention {
        /** out [T, hq·hd] from roped q [T, hq·hd], k and v [T, hkv·hd]; may keep state in {@code a}. */
        Tensor forward(int layer, Tensor q, Tensor k, Tensor v, Activations a);

        /** dq, dk, dv from dOut (not supported by every strategy). */
        void backward(Activations a, Tensor dOut, Tensor dq, Tensor dk, Tensor dv);
    }

    /** The frozen projections, no adapter. */
    public final Projector PLAIN = new Projector() {
        @Override
        public Tensor project(int layer, Projection p, Tensor x, Activations a) {
            return linear(x, weights.layer(layer).projection(p));
        }

        @Override
        public void backward(int layer, Projection p, Tensor dy, Tensor x, Activations a, Tensor dx, boolean accumulate) {
            linearBackward(weights.layer(layer).projection(p), dy, dx, accumulate);
        }
    };

    /**
     * Causal GQA attention over {@code batch} sequences of {@code seq} tokens (row b·seq + s),
     * optionally restarted at packed-segment boundaries ({@code seg} I32 [T], or null). A sliding
     * window shorter than the sequence is honoured without a backward (evaluation): each query row
     * attends to its window's keys through the decode kernel.
     */
    public final class Causal implements Attention {
        private final int batch, seq;
        private final Tensor seg;

        /**
         * @throws IllegalArgumentException when the family's sliding window is shorter than
         *                                  {@code seq} and the pass needs a backward or packs segments
         */
        public Causal(int batch, int seq, Tensor seg, boolean backward) {
            this.batch = batch;
            this.seq = seq;
            this.seg = seg;
            int window = 0;
            for (int l = 0; l < config.numHiddenLayers(); l++) window = Math.max(window, arch.window(l));
            if (window > 0 && seq > window && (backward || seg != null))
                throw new IllegalArgumentException("sequences of " + seq + " tokens exceed the sliding_window of " + window
                        + (backward ? "; training over longer sequences than the window is not supported (use max_seq_length <= "
                        + window + ")" : " and are packed; sliding-window attention over packed rows is not supported"));
        }

        @Override
        public Tensor forward(int layer, Tensor q, Tensor k, Tensor v, Activations a) {
            int hq = config.numAttentionHeads(), hkv = config.numKeyValueHeads(), hd = config.headDim();
            a.att = overwritten(q.dim(0), (long) hq * hd);
            int window = arch.window(layer);
            if (window > 0 && seq > window) {
                long qDim = (long) hq * hd, kvDim = config.kvDim();
                for (long row = 0; row < (long) batch * seq; row++) {
                    long start = Math.max(row - row % seq, row - window + 1), len = row - start + 1;
                    try (Tensor qr = q.slice(row * qDim, 1, qDim); Tensor ks = k.slice(start * kvDim, len, kvDim);
                         Tensor vs = v.slice(start * kvDim, len, kvDim); Tensor out = a.att.slice(row * qDim, 1, qDim)) {
                        backend.attentionDecode(qr, ks, vs, 1, len, len, hq, hkv, hd, softcap, out);
                    }
                }
                return a.att;
            }
            a.lse = overwritten((long) batch * hq * seq);
            backend.attentionFwd(q, k, v, seg, batch, seq, hq, hkv, hd, softcap, a.att, a.lse);
            return a.att;
        }

        @Override
        public void backward(Activations a, Tensor dOut, Tensor dq, Tensor dk, Tensor dv) {
            backend.attentionBwd(a.q, a.k, a.v, a.att, dOut, a.lse, seg, batch, seq, config.numAttentionHeads(),
                    config.numKeyValueHeads(), config.headDim(), softcap, dq, dk, dv);
        }
    }

    /**
     * One token of one sequence at position {@code position}: its roped key and its value are
     * written into row {@code position} of the layer's cache ([capacity, kvDim] each, zeroed
     * beyond the filled rows), then the query attends to rows 0..position (the last
     * sliding_window of them when the family has a window).
     */
    public final class KvCacheAttention implements Attention {
        private final Tensor[] kCache, vCache;
        private final int position;

        public KvCacheAttention(Tensor[] kCache, Tensor[] vCache, int position) {
            this.kCache = kCache;
            this.vCache = vCache;
            this.position = position;
        }

        @Override
        public Tensor forward(int layer, Tensor q, Tensor k, Tensor v, Activations a) {
            int hq = config.numAttentionHeads(), hkv = config.numKeyValueHeads(), hd = config.headDim();
            long kvDim = config.kvDim(), capacity = kCache[layer].dim(0);
            try (Tensor kRow = kCache[layer].slice(position * kvDim, 1, kvDim);
                 Tensor vRow = vCache[layer].slice(position * kvDim, 1, kvDim)) {
                backend.axpy(1f, k, kRow); // the cache rows are zero: these copy k and v
                backend.axpy(1f, v, vRow);
            }
            a.att = act(1, (long) hq * hd);
            int window = arch.window(layer);
            int start = window > 0 ? Math.max(0, position + 1 - window) : 0;
            if (start == 0) {
                backend.attentionDecode(q, kCache[layer], vCache[layer], 1, position + 1, capacity, hq, hkv, hd, softcap, a.att);
                return a.att;
            }
            long len = position + 1 - start;
            try (Tensor ks = kCache[layer].slice(start * kvDim, len, kvDim); Tensor vs = vCache[layer].slice(start * kvDim, len, kvDim)) {
                backend.attentionDecode(q, ks, vs, 1, len, len, hq, hkv, hd, softcap, a.att);
            }
            return a.att;
        }

        @Override
        public void backward(Activations a, Tensor dOut, Tensor dq, Tensor dk, Tensor dv) {
            throw new UnsupportedOperationException("the KV-cache attention has no backward");
        }
    }

    // ---------------------------------------------------------------- activations

    /** One layer's activations: what its backward needs. Owns everything but {@code xIn}. */
    public static final class Activations implements AutoCloseable {
        Tensor xIn, h1, rstd1, q, k, v, att, lse, xMid, h2, rstd2, g, u, s;
        Tensor qRaw, kRaw, rstdQ, rstdK; // q and k before their per-head norms (Qwen3, Gemma 3)
        Tensor o, rstdO, down, rstdDown;  // the attention and MLP outputs before their norms (Gemma)
        /** The layer output; the caller takes it over (set to null when handed on). */
        public Tensor xOut;
        /** LoRA projectors: x·Aᵀ [T, r] per adapted projection. */
        public final Map<Projection, Tensor> xa = new EnumMap<>(Projection.class);
        /** LoRA projectors: the dropout mask [T, in] per adapted projection (training with dropout). */
        public final Map<Projection, Tensor> mask = new EnumMap<>(Projection.class);

        /** Frees everything the backward needs, keeping the layer output. */
        public void closeInternals() {
            for (Tensor t : new Tensor[] {h1, rstd1, q, k, v, att, lse, xMid, h2, rstd2, g, u, s, qRaw, kRaw, rstdQ, rstdK, o, rstdO,
                    down, rstdDown})
                if (t != null) t.close();
            for (Tensor t : xa.values()) t.close();
            for (Tensor t : mask.values()) t.close();
            xa.clear();
            mask.clear();
        }

        @Override
        public void close() {
            closeInternals();
            if (xOut != null) xOut.close();
        }
    }

    private Tensor act(long... shape) {
        return backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, shape);
    }

    /**
     * An activation that the op it is handed to overwrites completely ("overwritten" in
     * native/include/lora4j; sgemm with beta 0): not zero-filled ({@link Backend#empty}). The
     * parity tests run with poisoned memory (tests/io/lora4j/tensor/PoisonedMemoryTest).
     */
    private Tensor overwritten(long... shape) {
        return backend.empty(DType.F32, MemoryCategory.ACTIVATIONS, shape);
    }

    /**
     * The kept form of a computed fp32 activation {@code f}: {@code f} itself with fp32 kept
     * activations; else a new BF16 tensor of {@code category} holding f rounded, f rounded in place
     * to the same values (the caller closes f after its last use in the forward).
     */
    private Tensor keep(Tensor f, MemoryCategory category) {
        if (kept == DType.F32) return f;
        Tensor b = backend.allocate(DType.BF16, category, f.shape());
        backend.roundBf16(f, b);
        return b;
    }

    /**
     * An fp32 form of an activation: {@code x} itself when it is F32, else a new fp32 tensor
     * (ACTIVATIONS) with x widened, which the caller closes ({@link #release}).
     */
    public Tensor wide(Tensor x) {
        if (x.dtype() == DType.F32) return x;
        Tensor f = act(x.shape());
        backend.widenBf16(x, f);
        return f;
    }

    /** Closes {@code working} when it is a separate working copy of {@code of} (from {@link #wide} or {@link #keep}). */
    public static void release(Tensor working, Tensor of) {
        if (working != null && working != of) working.close();
    }

    // ---------------------------------------------------------------- the layer

    /**
     * The forward of layer {@code l} on {@code xIn} [T, hidden] at positions {@code pos} (I32 [T]).
     * The output {@link Activations#xOut} is allocated in {@code outCategory}.
     */
    public Activations forward(int l, Tensor xIn, Tensor pos, Attention attention, Projector projector,
            MemoryCategory outCategory) {
        DeviceWeights.Layer ly = weights.layer(l);
        int d = config.hiddenSize(), hq = config.numAttentionHeads(), hkv = config.numKeyValueHeads(), hd = config.headDim();
        float eps = (float) config.rmsNormEps();
        Activations a = new Activations();
        // fp32 working copies of what is kept in bf16 (each is its kept tensor itself when kept is F32)
        Tensor x = null, h1 = null, q = null, k = null, v = null, att = null, xMid = null, h2 = null, g = null, u = null,
                s = null, sum = null;
        try {
            a.xIn = xIn;
            long t = xIn.dim(0);
            x = wide(xIn);
            h1 = overwritten(t, d);
            a.rstd1 = overwritten(t);
            backend.rmsnormFwd(x, ly.inputNorm(), eps, h1, a.rstd1);
            a.h1 = keep(h1, MemoryCategory.ACTIVATIONS);
            a.q = projector.project(l, Projection.Q, h1, a);
            a.k = projector.project(l, Projection.K, h1, a);
            a.v = projector.project(l, Projection.V, h1, a);
            release(h1, a.h1);
            h1 = null;
            for (Map.Entry<Projection, Tensor> b : ly.bias().entrySet())
                addBias(b.getKey() == Projection.Q ? a.q : b.getKey() == Projection.K ? a.k : a.v, b.getValue());
            if (ly.qNorm() != null) {
                a.qRaw = a.q;
                a.rstdQ = overwritten(t * hq);
                a.q = headNorm(a.qRaw, ly.qNorm(), hq, a.rstdQ);
            }
            if (ly.kNorm() != null) {
                a.kRaw = a.k;
                a.rstdK = overwritten(t * hkv);
                a.k = headNorm(a.kRaw, ly.kNorm(), hkv, a.rstdK);
            }
            backend.ropeFwd(a.q, a.q, pos, weights.invFreq(l), hq, hd);
            backend.ropeFwd(a.k, a.k, pos, weights.invFreq(l), hkv, hd);
            if (queryScale != 1f) a.q = scaled(a.q, queryScale, true);
            q = a.q;
            k = a.k;
            v = a.v;
            a.q = keep(q, MemoryCategory.ACTIVATIONS); // attention reads the rounded fp32 q, k, v
            a.k = keep(k, MemoryCategory.ACTIVATIONS);
            a.v = keep(v, MemoryCategory.ACTIVATIONS);
            att = attention.forward(l, q, k, v, a);
            q = released(q, a.q);
            k = released(k, a.k);
            v = released(v, a.v);
            a.att = keep(att, MemoryCategory.ACTIVATIONS);
            xMid = act(t, d);
            Tensor o = projector.project(l, Projection.O, att, a);
            att = released(att, a.att);
            if (ly.attnOutNorm() != null) o = normed(a.o = o, ly.attnOutNorm(), a.rstdO = overwritten(t));
            residual(x, o, xMid);
            release(x, xIn);
            x = null;
            a.xMid = keep(xMid, MemoryCategory.ACTIVATIONS);
            h2 = overwritten(t, d);
            a.rstd2 = overwritten(t);
            backend.rmsnormFwd(xMid, ly.postNorm(), eps, h2, a.rstd2);
            xMid = released(xMid, a.xMid);
            a.h2 = keep(h2, MemoryCategory.ACTIVATIONS);
            g = projector.project(l, Projection.GATE, h2, a);
            a.g = keep(g, MemoryCategory.ACTIVATIONS); // bf16: the activation kernels read the bf16 gate and up
            release(g, a.g);
            g = null;
            u = projector.project(l, Projection.UP, h2, a);
            a.u = keep(u, MemoryCategory.ACTIVATIONS);
            release(u, a.u);
            u = null;
            release(h2, a.h2);
            h2 = null;
            s = overwritten(t, config.intermediateSize());
            if (arch.activation() == Architecture.Activation.GELU_TANH) backend.gegluFwd(a.g, a.u, s);
            else backend.swigluFwd(a.g, a.u, s);
            a.s = keep(s, MemoryCategory.ACTIVATIONS);
            // the fp32 sum; with bf16 kept activations a working copy, rounded into the bf16 output below
            sum = kept == DType.F32 ? a.xOut = backend.allocate(DType.F32, outCategory, t, d) : act(t, d);
            Tensor down = projector.project(l, Projection.DOWN, s, a);
            if (ly.mlpOutNorm() != null) down = normed(a.down = down, ly.mlpOutNorm(), a.rstdDown = overwritten(t));
            if (kept == DType.F32) residual(a.xMid, down, sum);
            else try (Tensor branch = down) { // 0 + x_mid exactly: the widened bf16 x_mid, with no working copy
                backend.widenBf16(a.xMid, sum);
                backend.axpy(1f, branch, sum);
            }
            release(s, a.s);
            s = null;
            if (kept != DType.F32) {
                a.xOut = keep(sum, outCategory);
                sum.close();
            }
            sum = null;
            return a;
        } catch (RuntimeException e) {
            release(x, xIn);
            release(h1, a.h1);
            release(q, a.q);
            release(k, a.k);
            release(v, a.v);
            release(att, a.att);
            release(xMid, a.xMid);
            release(h2, a.h2);
            release(g, a.g);
            release(u, a.u);
            release(s, a.s);
            release(sum, a.xOut);
            a.close();
            throw e;
        }
    }

    /** dRes holds dL/d(layer output) on entry and dL/d(layer input) on return. */
    public void backward(int l, Activations a, Tensor pos, Attention attention, Projector projector, Tensor dRes) {
        DeviceWeights.Layer ly = weights.layer(l);
        int d = config.hiddenSize(), hq = config.numAttentionHeads(), hkv = config.numKeyValueHeads(), hd = config.headDim();
        long t = a.xIn.dim(0), inter = config.intermediateSize();
        a.s = widened(a.s); // bf16 kept: the fp32 copy replaces the bf16 one, and goes after its one use
        // each is overwritten first: by the backward of DOWN / swigluBwd / the output norm or GATE (accumulate false)
        try (Tensor dS = overwritten(t, inter); Tensor dU = overwritten(t, inter); Tensor dH = overwritten(t, d)) {
            Tensor dDown = dRes;
            if (ly.mlpOutNorm() != null) { // dH holds d(down before its norm)
                backend.rmsnormBwd(dRes, a.down, ly.mlpOutNorm(), a.rstdDown, dH, null);
                dDown = dH;
            }
            projector.backward(l, Projection.DOWN, dDown, a.s, a, dS, false);
            if (kept != DType.F32) a.s = closed(a.s);
            if (arch.activation() == Architecture.Activation.GELU_TANH) backend.gegluBwd(dS, a.g, a.u, dS, dU);
            else backend.swigluBwd(dS, a.g, a.u, dS, dU); // dS now holds dgate
            if (kept != DType.F32) {
                a.g = closed(a.g);
                a.u = closed(a.u);
            }
            a.h2 = widened(a.h2);
            projector.backward(l, Projection.GATE, dS, a.h2, a, dH, false);
            projector.backward(l, Projection.UP, dU, a.h2, a, dH, true);
            if (kept != DType.F32) a.h2 = closed(a.h2);
            a.xMid = widened(a.xMid);
            backend.rmsnormBwd(dH, a.xMid, ly.postNorm(), a.rstd2, dH, null);
            if (kept != DType.F32) a.xMid = closed(a.xMid);
            backend.axpy(1f, dH, dRes); // dRes = dL/dxMid
        }
        // overwritten first: by O's backward (accumulate false), attentionBwd, the output norm or Q's backward
        try (Tensor dAtt = overwritten(t, (long) hq * hd); Tensor dq = overwritten(t, (long) hq * hd);
             Tensor dk = overwritten(t, (long) hkv * hd); Tensor dv = overwritten(t, (long) hkv * hd); Tensor dH = overwritten(t, d)) {
            Tensor dO = dRes;
            if (ly.attnOutNorm() != null) { // dH holds d(o before its norm) until the q/k/v backward overwrites it
                backend.rmsnormBwd(dRes, a.o, ly.attnOutNorm(), a.rstdO, dH, null);
                dO = dH;
            }
            a.att = widened(a.att);
            projector.backward(l, Projection.O, dO, a.att, a, dAtt, false);
            a.q = widened(a.q);
            a.k = widened(a.k);
            a.v = widened(a.v);
            attention.backward(a, dAtt, dq, dk, dv);
            if (kept != DType.F32) {
                a.att = closed(a.att);
                a.q = closed(a.q);
                a.k = closed(a.k);
                a.v = closed(a.v);
            }
            try (Tensor dqScaled = queryScale != 1f ? scaled(dq, queryScale, false) : null) {
                backend.ropeBwd(dqScaled != null ? dqScaled : dq, dq, pos, weights.invFreq(l), hq, hd);
            }
            backend.ropeBwd(dk, dk, pos, weights.invFreq(l), hkv, hd);
            if (ly.qNorm() != null) backend.rmsnormBwd(heads(dq, hq), heads(a.qRaw, hq), ly.qNorm(), a.rstdQ, heads(dq, hq), null);
            if (ly.kNorm() != null) backend.rmsnormBwd(heads(dk, hkv), heads(a.kRaw, hkv), ly.kNorm(), a.rstdK, heads(dk, hkv), null);
            a.h1 = widened(a.h1);
            projector.backward(l, Projection.Q, dq, a.h1, a, dH, false);
            projector.backward(l, Projection.K, dk, a.h1, a, dH, true);
            projector.backward(l, Projection.V, dv, a.h1, a, dH, true);
            if (kept != DType.F32) a.h1 = closed(a.h1);
            Tensor x = wide(a.xIn);
            try {
                backend.rmsnormBwd(dH, x, ly.inputNorm(), a.rstd1, dH, null);
            } finally {
                release(x, a.xIn);
            }
            backend.axpy(1f, dH, dRes); // dRes = dL/dxIn
        }
    }

    /** An owned kept activation in fp32: itself when F32, else its widened copy, the bf16 one closed. */
    private Tensor widened(Tensor keptTensor) {
        Tensor f = wide(keptTensor);
        if (f != keptTensor) keptTensor.close();
        return f;
    }

    /** {@link #release}s a working copy after its last use; returns null for its variable. */
    private static Tensor released(Tensor working, Tensor of) {
        release(working, of);
        return null;
    }

    /** Closes an owned activation whose last use has passed; returns null for its field. */
    private static Tensor closed(Tensor t) {
        t.close();
        return null;
    }

    /** A new activation rmsnorm(y)·w over the rows of y; rstd [rows] saved for the backward. */
    private Tensor normed(Tensor y, Tensor w, Tensor rstd) {
        Tensor out = overwritten(y.shape());
        backend.rmsnormFwd(y, w, (float) config.rmsNormEps(), out, rstd);
        return out;
    }

    /** out (zero) = base + branch, in this order of fp32 additions; the branch is closed. */
    private void residual(Tensor base, Tensor branch, Tensor out) {
        try (branch) {
            backend.axpy(1f, base, out);
            backend.axpy(1f, branch, out);
        }
    }

    /** A new activation s·x (exactly rounded: 0 + s·x); {@code x} is closed when {@code consume}. */
    private Tensor scaled(Tensor x, float s, boolean consume) {
        Tensor y = act(x.shape());
        backend.axpy(s, x, y);
        if (consume) x.close();
        return y;
    }

    /**
     * The embeddings x0 [T, hidden] of token ids (I32 [T], checked by the caller), times √hidden_size
     * rounded to fp32 for Gemma (HF's {@code embed_scale} in the activation dtype). Caller closes x0.
     */
    public Tensor embed(Tensor ids) {
        Tensor x = overwritten(ids.numel(), config.hiddenSize());
        backend.embeddingFwd(ids, weights.embedding(), x);
        return arch.embeddingScale() ? scaled(x, (float) Math.sqrt(config.hiddenSize()), true) : x;
    }

    /**
     * The embeddings as the first layer's input in the kept dtype (the residual stream): {@link #embed}'s
     * fp32 x0, or with bf16 kept activations its bf16 rounding (ACTIVATIONS). Caller closes it.
     */
    public Tensor embedKept(Tensor ids) {
        Tensor x = embed(ids);
        if (kept == DType.F32) return x;
        try (x) {
            return keep(x, MemoryCategory.ACTIVATIONS);
        }
    }

    /**
     * The family's final_logit_softcapping on lm_head logits, in place: z ← c·tanh(z / c)
     * (Gemma 2); nothing without a cap. Evaluation and generation call it; the training head
     * applies the same cap inside its chunked cross-entropy.
     */
    public void capLogits(Tensor logits) {
        if (arch.finalSoftcap() > 0) backend.softcapFwd(logits, (float) arch.finalSoftcap(), logits);
    }

    /** x [T, heads·hd] viewed as [T·heads, hd]: one row per head. */
    private Tensor heads(Tensor x, int heads) {
        return x.reshape(x.dim(0) * heads, config.headDim());
    }

    /** RMSNorm over each head of x [T, heads·hd] with weight w [hd]; rstd [T·heads] saved. */
    private Tensor headNorm(Tensor x, Tensor w, int heads, Tensor rstd) {
        Tensor y = overwritten(x.dim(0), x.dim(1));
        backend.rmsnormFwd(heads(x, heads), w, (float) config.rmsNormEps(), heads(y, heads), rstd);
        return y;
    }

    /** y [T, out] += bias [out] on every row (as the 1·biasᵀ outer product). */
    private void addBias(Tensor y, Tensor bias) {
        long t = y.dim(0), out = y.dim(1);
        if (ones == null || ones.numel() < t) {
            if (ones != null) ones.close();
            float[] v = new float[(int) t];
            java.util.Arrays.fill(v, 1f);
            Tensor h = Tensor.ofFloats(v, t);
            ones = backend.upload(h, MemoryCategory.WORKSPACE);
            if (ones != h) h.close();
        }
        backend.sgemm(false, false, t, out, 1, 1f, ones, 1, bias, out, 1f, y, out);
    }

    // ---------------------------------------------------------------- frozen projections

    /** y [T, out] = x [T, in] · Wᵀ for a dense or NF4 weight; caller closes y. */
    public Tensor linear(Tensor x, ProjectionWeight w) {
        if (w instanceof ProjectionWeight.Quantized q) return Nf4.matmul(backend, x, q.weight());
        Tensor wt = ((ProjectionWeight.Dense) w).tensor();
        long t = x.dim(0), in = wt.dim(1), out = wt.dim(0);
        Tensor y = overwritten(t, out);
        backend.sgemm(false, true, t, out, in, 1f, x, in, wt, in, 0f, y, out);
        return y;
    }

    /** dx [T, in] (= or += when {@code accumulate}) dy [T, out] · W for a frozen weight. */
    public void linearBackward(ProjectionWeight w, Tensor dy, Tensor dx, boolean accumulate) {
        long t = dy.dim(0), out = dy.dim(1);
        if (w instanceof ProjectionWeight.Dense d) {
            long in = d.tensor().dim(1);
            backend.sgemm(false, false, t, in, out, 1f, dy, out, d.tensor(), in, accumulate ? 1f : 0f, dx, in);
            return;
        }
        Nf4Weight q = ((ProjectionWeight.Quantized) w).weight();
        if (!accumulate) Nf4.matmulBackwardInputInto(backend, dy, q, dx);
        else try (Tensor tmp = Nf4.matmulBackwardInput(backend, dy, q)) {
            backend.axpy(1f, tmp, dx);
        }
    }
}
