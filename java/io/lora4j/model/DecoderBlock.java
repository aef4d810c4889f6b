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
 * <p>Per layer (HF LlamaDecoderLayer):
 * <pre>
 *   h1 = rmsnorm(x)·w1;  q,k,v = lin(h1);  q,k = rope(q,k);  a = attn(q,k,v)
 *   m  = x + lin_o(a);   h2 = rmsnorm(m)·w2;  g,u = lin(h2);  s = silu(g)·u;  x' = m + lin_down(s)
 * </pre>
 * RMSNorm and all activations are fp32. The backward walks the same graph in reverse: each
 * residual branch's input gradient is added to the residual stream's.
 *
 * <p>Not thread-safe.
 */
public final class DecoderBlock {
    private final Backend backend;
    private final LlamaConfig config;
    private final DeviceWeights weights;

    public DecoderBlock(DeviceWeights weights) {
        this.backend = weights.backend();
        this.config = weights.config();
        this.weights = weights;
    }

    public DeviceWeights weights() {
        return weights;
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
     * optionally restarted at packed-segment boundaries ({@code seg} I32 [T], or null).
     */
    public final class Causal implements Attention {
        private final int batch, seq;
        private final Tensor seg;

        public Causal(int batch, int seq, Tensor seg) {
            this.batch = batch;
            this.seq = seq;
            this.seg = seg;
        }

        @Override
        public Tensor forward(int layer, Tensor q, Tensor k, Tensor v, Activations a) {
            int hq = config.numAttentionHeads(), hkv = config.numKeyValueHeads(), hd = config.headDim();
            a.att = act(q.dim(0), (long) hq * hd);
            a.lse = act((long) batch * hq * seq);
            backend.attentionFwd(q, k, v, seg, batch, seq, hq, hkv, hd, a.att, a.lse);
            return a.att;
        }

        @Override
        public void backward(Activations a, Tensor dOut, Tensor dq, Tensor dk, Tensor dv) {
            backend.attentionBwd(a.q, a.k, a.v, a.att, dOut, a.lse, seg, batch, seq, config.numAttentionHeads(),
                    config.numKeyValueHeads(), config.headDim(), dq, dk, dv);
        }
    }

    /**
     * One token of one sequence at position {@code position}: its roped key and its value are
     * written into row {@code position} of the layer's cache ([capacity, kvDim] each, zeroed
     * beyond the filled rows), then the query attends to rows 0..position.
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
            backend.attentionDecode(q, kCache[layer], vCache[layer], 1, position + 1, capacity, hq, hkv, hd, a.att);
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
        /** The layer output; the caller takes it over (set to null when handed on). */
        public Tensor xOut;
        /** LoRA projectors: x·Aᵀ [T, r] per adapted projection. */
        public final Map<Projection, Tensor> xa = new EnumMap<>(Projection.class);
        /** LoRA projectors: the dropout mask [T, in] per adapted projection (training with dropout). */
        public final Map<Projection, Tensor> mask = new EnumMap<>(Projection.class);

        /** Frees everything the backward needs, keeping the layer output. */
        public void closeInternals() {
            for (Tensor t : new Tensor[] {h1, rstd1, q, k, v, att, lse, xMid, h2, rstd2, g, u, s}) if (t != null) t.close();
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
        try {
            a.xIn = xIn;
            long t = xIn.dim(0);
            a.h1 = act(t, d);
            a.rstd1 = act(t);
            backend.rmsnormFwd(xIn, ly.inputNorm(), eps, a.h1, a.rstd1);
            a.q = projector.project(l, Projection.Q, a.h1, a);
            a.k = projector.project(l, Projection.K, a.h1, a);
            a.v = projector.project(l, Projection.V, a.h1, a);
            backend.ropeFwd(a.q, a.q, pos, weights.invFreq(), hq, hd);
            backend.ropeFwd(a.k, a.k, pos, weights.invFreq(), hkv, hd);
            Tensor att = attention.forward(l, a.q, a.k, a.v, a);
            a.xMid = act(t, d);
            try (Tensor o = projector.project(l, Projection.O, att, a)) {
                backend.axpy(1f, xIn, a.xMid);
                backend.axpy(1f, o, a.xMid);
            }
            a.h2 = act(t, d);
            a.rstd2 = act(t);
            backend.rmsnormFwd(a.xMid, ly.postNorm(), eps, a.h2, a.rstd2);
            a.g = projector.project(l, Projection.GATE, a.h2, a);
            a.u = projector.project(l, Projection.UP, a.h2, a);
            a.s = act(t, config.intermediateSize());
            backend.swigluFwd(a.g, a.u, a.s);
            a.xOut = backend.allocate(DType.F32, outCategory, t, d);
            try (Tensor down = projector.project(l, Projection.DOWN, a.s, a)) {
                backend.axpy(1f, a.xMid, a.xOut);
                backend.axpy(1f, down, a.xOut);
            }
            return a;
        } catch (RuntimeException e) {
            a.close();
            throw e;
        }
    }

    /** dRes holds dL/d(layer output) on entry and dL/d(layer input) on return. */
    public void backward(int l, Activations a, Tensor pos, Attention attention, Projector projector, Tensor dRes) {
        DeviceWeights.Layer ly = weights.layer(l);
        int d = config.hiddenSize(), hq = config.numAttentionHeads(), hkv = config.numKeyValueHeads(), hd = config.headDim();
        long t = a.xIn.dim(0), inter = config.intermediateSize();
        try (Tensor dS = act(t, inter); Tensor dU = act(t, inter); Tensor dH = act(t, d)) {
            projector.backward(l, Projection.DOWN, dRes, a.s, a, dS, false);
            backend.swigluBwd(dS, a.g, a.u, dS, dU); // dS now holds dgate
            projector.backward(l, Projection.GATE, dS, a.h2, a, dH, false);
            projector.backward(l, Projection.UP, dU, a.h2, a, dH, true);
            backend.rmsnormBwd(dH, a.xMid, ly.postNorm(), a.rstd2, dH, null);
            backend.axpy(1f, dH, dRes); // dRes = dL/dxMid
        }
        try (Tensor dAtt = act(t, (long) hq * hd); Tensor dq = act(t, (long) hq * hd); Tensor dk = act(t, (long) hkv * hd);
             Tensor dv = act(t, (long) hkv * hd); Tensor dH = act(t, d)) {
            projector.backward(l, Projection.O, dRes, a.att, a, dAtt, false);
            attention.backward(a, dAtt, dq, dk, dv);
            backend.ropeBwd(dq, dq, pos, weights.invFreq(), hq, hd);
            backend.ropeBwd(dk, dk, pos, weights.invFreq(), hkv, hd);
            projector.backward(l, Projection.Q, dq, a.h1, a, dH, false);
            projector.backward(l, Projection.K, dk, a.h1, a, dH, true);
            projector.backward(l, Projection.V, dv, a.h1, a, dH, true);
            backend.rmsnormBwd(dH, a.xIn, ly.inputNorm(), a.rstd1, dH, null);
            backend.axpy(1f, dH, dRes); // dRes = dL/dxIn
        }
    }

    // ---------------------------------------------------------------- frozen projections

    /** y [T, out] = x [T, in] · Wᵀ for a dense or NF4 weight; caller closes y. */
    public Tensor linear(Tensor x, ProjectionWeight w) {
        if (w instanceof ProjectionWeight.Quantized q) return Nf4.matmul(backend, x, q.weight());
        Tensor wt = ((ProjectionWeight.Dense) w).tensor();
        long t = x.dim(0), in = wt.dim(1), out = wt.dim(0);
        Tensor y = act(t, out);
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
        if (!accumulate) backend.nf4MatmulBwdInput(dy, q.packed(), q.absmax(), q.blocksize(), q.shape()[1], dx);
        else try (Tensor tmp = Nf4.matmulBackwardInput(backend, dy, q)) {
            backend.axpy(1f, tmp, dx);
        }
    }
}
