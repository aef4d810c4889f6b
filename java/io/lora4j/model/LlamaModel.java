package io.lora4j.model;

import io.lora4j.ops.Backend;
import io.lora4j.quant.Nf4;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * A Llama decoder ready to run on one {@link Backend}: the forward pass over whole sequences
 * (evaluation, prefill) and single-token decoding with a {@link KvCache}.
 *
 * <p>Per layer (HF LlamaDecoderLayer): {@code h = x + o(attn(rope(q(n1 x)), rope(k(n1 x)), v(n1 x)))},
 * {@code x' = h + down(silu(gate(n2 h)) · up(n2 h))}; then the final RMSNorm and lm_head. RMSNorm
 * and all activations are fp32; dense projections are fp32 on the CPU (BF16/F16 weights are
 * widened once when the model is built), NF4 projections go through the 4-bit matmul.
 *
 * <p>Not thread-safe: one forward or decode at a time.
 */
public final class LlamaModel implements AutoCloseable {
    private final Backend backend;
    private final LlamaConfig config;
    private final Tensor embedding;      // [vocab, hidden] F32
    private final Tensor lmHead;         // [vocab, hidden] F32 (== embedding when tied)
    private final Tensor norm;           // [hidden]
    private final List<Layer> layers;
    private final Tensor invFreq;        // [headDim/2]
    private final List<Tensor> owned = new ArrayList<>();

    /** One decoder layer's weights on the backend. */
    private record Layer(Tensor inputNorm, Tensor postNorm, Map<Projection, ProjectionWeight> proj) {}

    private LlamaModel(Backend backend, LlamaWeights w) {
        this.backend = backend;
        this.config = w.config();
        this.embedding = f32(w.embedding());
        this.lmHead = w.tied() ? embedding : f32(w.lmHead());
        this.norm = f32(w.norm());
        List<Layer> ls = new ArrayList<>();
        for (LayerWeights lw : w.layers()) {
            Map<Projection, ProjectionWeight> m = new EnumMap<>(Projection.class);
            for (Map.Entry<Projection, ProjectionWeight> e : lw.projections().entrySet()) {
                ProjectionWeight pw = e.getValue();
                if (pw instanceof ProjectionWeight.Dense d) m.put(e.getKey(), new ProjectionWeight.Dense(f32(d.tensor())));
                else m.put(e.getKey(), pw);
            }
            ls.add(new Layer(f32(lw.inputLayernorm()), f32(lw.postAttentionLayernorm()), m));
        }
        this.layers = List.copyOf(ls);
        float[] inv = RopeFrequencies.invFreq(config);
        this.invFreq = own(backend.upload(Tensor.ofFloats(inv, inv.length), MemoryCategory.WEIGHTS));
    }

    /**
     * Prepares {@code weights} for {@code backend}. On the CPU, F32 tensors are used in place and
     * BF16/F16 ones widened to F32 copies; NF4 projections must already live on the backend.
     * The weights must stay open while the model is used; closing the model frees only its copies.
     */
    public static LlamaModel create(Backend backend, LlamaWeights weights) {
        return new LlamaModel(backend, weights);
    }

    public LlamaConfig config() {
        return config;
    }

    public Backend backend() {
        return backend;
    }

    private Tensor own(Tensor t) {
        owned.add(t);
        return t;
    }

    private Tensor f32(Tensor t) {
        if (t.dtype() == DType.F32 && t.device() == backend.device()) return t;
        if (t.device() != io.lora4j.tensor.Device.CPU)
            throw new IllegalArgumentException("weights must be F32 on " + backend.device() + " or on the host, got " + t);
        Tensor host = t.dtype() == DType.F32 ? t : Tensor.ofFloats(t.toFloats(), t.shape());
        Tensor dev = backend.upload(host, MemoryCategory.WEIGHTS);
        if (host != t && dev != host) host.close();
        return own(dev);
    }

    /** y [T, out] = x [T, in] · Wᵀ for a dense or NF4 projection. */
    Tensor linear(Tensor x, ProjectionWeight w) {
        if (w instanceof ProjectionWeight.Quantized q) return Nf4.matmul(backend, x, q.weight());
        Tensor wt = ((ProjectionWeight.Dense) w).tensor();
        long t = x.dim(0), in = wt.dim(1), out = wt.dim(0);
        Tensor y = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, t, out);
        backend.sgemm(false, true, t, out, in, 1f, x, in, wt, in, 0f, y, out);
        return y;
    }

    /** Checks ids against the vocabulary (the embedding kernel only asserts). */
    private void checkIds(int[] ids) {
        for (int i = 0; i < ids.length; i++)
            if (ids[i] < 0 || ids[i] >= config.vocabSize())
                throw new IllegalArgumentException("token id " + ids[i] + " at position " + i + " is outside the vocabulary of "
                        + config.vocabSize());
    }

    private Tensor ints(int[] v) {
        Tensor h = Tensor.allocate(DType.I32, MemoryCategory.WORKSPACE, v.length);
        h.buffer().asIntBuffer().put(v);
        Tensor d = backend.upload(h, MemoryCategory.WORKSPACE);
        if (d != h) h.close();
        return d;
    }

    /**
     * Logits [T, vocab] for {@code batch} sequences of equal length (row b*S + s), each starting at
     * position 0. Caller closes the result.
     */
    public Tensor forward(int[][] batch) {
        int b = batch.length, s = batch[0].length;
        if (s == 0) throw new IllegalArgumentException("empty sequence");
        if (s > config.maxPositionEmbeddings())
            throw new IllegalArgumentException("sequence of " + s + " tokens exceeds max_position_embeddings "
                    + config.maxPositionEmbeddings());
        int[] ids = new int[b * s], pos = new int[b * s];
        for (int i = 0; i < b; i++) {
            if (batch[i].length != s) throw new IllegalArgumentException("sequences of a batch must have equal length");
            System.arraycopy(batch[i], 0, ids, i * s, s);
            for (int j = 0; j < s; j++) pos[i * s + j] = j;
        }
        checkIds(ids);
        long t = ids.length;
        int d = config.hiddenSize(), hq = config.numAttentionHeads(), hkv = config.numKeyValueHeads(), hd = config.headDim();
        try (Tensor idT = ints(ids); Tensor posT = ints(pos)) {
            Tensor x = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, t, d);
            backend.embeddingFwd(idT, embedding, x);
            try (Tensor h = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, t, d);
                 Tensor rstd = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, t);
                 Tensor att = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, t, (long) hq * hd);
                 Tensor lse = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, (long) b * hq * s)) {
                for (Layer l : layers) {
                    backend.rmsnormFwd(x, l.inputNorm, (float) config.rmsNormEps(), h, rstd);
                    try (Tensor q = linear(h, l.proj.get(Projection.Q)); Tensor k = linear(h, l.proj.get(Projection.K));
                         Tensor v = linear(h, l.proj.get(Projection.V))) {
                        backend.ropeFwd(q, q, posT, invFreq, hq, hd);
                        backend.ropeFwd(k, k, posT, invFreq, hkv, hd);
                        backend.attentionFwd(q, k, v, null, b, s, hq, hkv, hd, att, lse);
                    }
                    try (Tensor o = linear(att, l.proj.get(Projection.O))) {
                        backend.axpy(1f, o, x);
                    }
                    backend.rmsnormFwd(x, l.postNorm, (float) config.rmsNormEps(), h, rstd);
                    try (Tensor g = linear(h, l.proj.get(Projection.GATE)); Tensor u = linear(h, l.proj.get(Projection.UP))) {
                        backend.swigluFwd(g, u, g);
                        try (Tensor down = linear(g, l.proj.get(Projection.DOWN))) {
                            backend.axpy(1f, down, x);
                        }
                    }
                }
                backend.rmsnormFwd(x, norm, (float) config.rmsNormEps(), h, rstd);
                x.close();
                long vocab = config.vocabSize();
                Tensor logits = backend.allocate(DType.F32, MemoryCategory.LOGITS, t, vocab);
                backend.sgemm(false, true, t, vocab, d, 1f, h, d, lmHead, d, 0f, logits, vocab);
                return logits;
            }
        }
    }

    /** Keys and values of every layer for up to {@code capacity} positions of one sequence. */
    public final class KvCache implements AutoCloseable {
        final int capacity;
        final Tensor[] k, v; // per layer [capacity, kvDim]
        int length;

        KvCache(int capacity) {
            this.capacity = capacity;
            k = new Tensor[layers.size()];
            v = new Tensor[layers.size()];
            for (int i = 0; i < layers.size(); i++) {
                k[i] = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, capacity, config.kvDim());
                v[i] = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, capacity, config.kvDim());
            }
        }

        /** Positions filled so far. */
        public int length() {
            return length;
        }

        @Override
        public void close() {
            for (int i = 0; i < k.length; i++) {
                k[i].close();
                v[i].close();
            }
        }
    }

    /** A cache for one sequence of at most {@code capacity} tokens (≤ max_position_embeddings). */
    public KvCache newCache(int capacity) {
        if (capacity < 1 || capacity > config.maxPositionEmbeddings())
            throw new IllegalArgumentException("KV cache capacity must be in [1, " + config.maxPositionEmbeddings() + "], got " + capacity);
        return new KvCache(capacity);
    }

    /**
     * Feeds {@code token} at the cache's next position and returns the logits [vocab] (host copy)
     * for the token after it.
     */
    public float[] decode(KvCache cache, int token) {
        if (cache.length >= cache.capacity)
            throw new IllegalStateException("KV cache full at " + cache.capacity + " positions");
        checkIds(new int[] {token});
        int d = config.hiddenSize(), hq = config.numAttentionHeads(), hkv = config.numKeyValueHeads(), hd = config.headDim();
        int kvDim = config.kvDim();
        int p = cache.length;
        try (Tensor idT = ints(new int[] {token}); Tensor posT = ints(new int[] {p});
             Tensor x = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, d);
             Tensor h = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, d);
             Tensor rstd = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1);
             Tensor att = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, (long) hq * hd)) {
            backend.embeddingFwd(idT, embedding, x);
            for (int li = 0; li < layers.size(); li++) {
                Layer l = layers.get(li);
                backend.rmsnormFwd(x, l.inputNorm, (float) config.rmsNormEps(), h, rstd);
                Tensor kRow = cache.k[li].slice((long) p * kvDim, 1, kvDim);
                Tensor vRow = cache.v[li].slice((long) p * kvDim, 1, kvDim);
                try (Tensor q = linear(h, l.proj.get(Projection.Q)); Tensor k = linear(h, l.proj.get(Projection.K));
                     Tensor v = linear(h, l.proj.get(Projection.V))) {
                    backend.ropeFwd(q, q, posT, invFreq, hq, hd);
                    backend.ropeFwd(k, kRow, posT, invFreq, hkv, hd);
                    backend.axpy(1f, v, vRow); // the cache row is zero: this copies v
                    backend.attentionDecode(q, cache.k[li], cache.v[li], 1, p + 1, cache.capacity, hq, hkv, hd, att);
                }
                try (Tensor o = linear(att, l.proj.get(Projection.O))) {
                    backend.axpy(1f, o, x);
                }
                backend.rmsnormFwd(x, l.postNorm, (float) config.rmsNormEps(), h, rstd);
                try (Tensor g = linear(h, l.proj.get(Projection.GATE)); Tensor u = linear(h, l.proj.get(Projection.UP))) {
                    backend.swigluFwd(g, u, g);
                    try (Tensor down = linear(g, l.proj.get(Projection.DOWN))) {
                        backend.axpy(1f, down, x);
                    }
                }
            }
            cache.length = p + 1;
            backend.rmsnormFwd(x, norm, (float) config.rmsNormEps(), h, rstd);
            long vocab = config.vocabSize();
            try (Tensor logits = backend.allocate(DType.F32, MemoryCategory.LOGITS, 1, vocab)) {
                backend.sgemm(false, true, 1, vocab, d, 1f, h, d, lmHead, d, 0f, logits, vocab);
                Tensor hostLogits = backend.download(logits);
                float[] out = hostLogits.toFloats();
                if (hostLogits != logits) hostLogits.close();
                return out;
            }
        }
    }

    @Override
    public void close() {
        for (Tensor t : owned) t.close();
        owned.clear();
    }
}
