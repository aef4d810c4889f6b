package io.lora4j.model;

import io.lora4j.ops.Backend;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.nio.FloatBuffer;
import java.util.Map;

/**
 * Single-token decoding of one sequence that allocates nothing per token: the KV cache and every
 * scratch vector of a step are allocated once, when the session is made (the cache again only
 * when {@link #reserve} raises its capacity, by doubling).
 *
 * <p>A step is {@link DecoderBlock}'s layer at T = 1 written with the decode kernels
 * (native/include/lora4j/infer.h): each dense projection one GEMV (o_proj and down_proj add
 * straight into the residual), gate, up and SwiGLU one pass over both weights, RoPE + cache write
 * + attention one call per layer. NF4 projections use the fused NF4 GEMV of the matmul op.
 * Families whose layer this step does not spell out (anything but Llama, Mistral, Qwen2, Qwen3)
 * decode through {@link DecoderBlock} itself with its {@link DecoderBlock.KvCacheAttention};
 * tests hold the two paths to the same logits.
 *
 * <p>Not thread-safe. Closing frees the cache and the scratch, not the model.
 */
public final class DecodeSession implements AutoCloseable {
    private final Backend backend;
    private final LlamaConfig config;
    private final DeviceWeights weights;
    private final DecoderBlock block;
    private final boolean fused;
    private final int hq, hkv, hd, window;
    private final float eps;

    private Tensor[] kCache, vCache; // per layer [capacity, kvDim]
    private int capacity;
    private int length;

    // Step scratch, each [1, n]: residual, normed input, q/k/v, attention output, MLP hidden, a
    // projection output to add (NF4), logits; rstd [heads] for the norms; q/k per-head norms.
    private final Tensor x, h, q, k, v, att, s, tmp, logits, rstd, qNormed, kNormed;
    private final Tensor qHeads, kHeads, qNormedHeads, kNormedHeads; // views [heads, hd]
    private final Tensor tmpHidden, tmpInter;                        // views of tmp [1, d], [1, inter]
    private final Tensor hostLogits;      // logits itself on the CPU, else a host copy [1, vocab]
    private final FloatBuffer logitsView; // a view of hostLogits

    DecodeSession(DeviceWeights weights, DecoderBlock block, int capacity) {
        this(weights, block, capacity, fusedStepCovers(weights.config().architecture().family()));
    }

    /** The families whose layer {@link #layer} spells out; the others decode through the block. */
    static boolean fusedStepCovers(ModelFamily f) {
        return f == ModelFamily.LLAMA || f == ModelFamily.MISTRAL || f == ModelFamily.QWEN2 || f == ModelFamily.QWEN3;
    }

    /** {@code fused} false: every step through {@link DecoderBlock} (the tests' reference). */
    DecodeSession(DeviceWeights weights, DecoderBlock block, int capacity, boolean fused) {
        this.backend = weights.backend();
        this.config = weights.config();
        this.weights = weights;
        this.block = block;
        this.fused = fused;
        this.hq = config.numAttentionHeads();
        this.hkv = config.numKeyValueHeads();
        this.hd = config.headDim();
        this.window = config.architecture().slidingWindow();
        this.eps = (float) config.rmsNormEps();
        int d = config.hiddenSize();
        long qDim = (long) hq * hd, kvDim = config.kvDim();
        long widest = Math.max(Math.max(d, qDim), config.intermediateSize());
        x = act(d);
        h = act(d);
        q = act(qDim);
        k = act(kvDim);
        v = act(kvDim);
        att = act(qDim);
        s = act(config.intermediateSize());
        tmp = act(widest);
        logits = backend.allocate(DType.F32, MemoryCategory.LOGITS, 1, config.vocabSize());
        rstd = act(Math.max(hq, hkv));
        qNormed = act(qDim);
        kNormed = act(kvDim);
        tmpHidden = tmp.slice(0, 1, d);
        tmpInter = tmp.slice(0, 1, config.intermediateSize());
        qHeads = q.reshape(hq, hd);
        kHeads = k.reshape(hkv, hd);
        qNormedHeads = qNormed.reshape(hq, hd);
        kNormedHeads = kNormed.reshape(hkv, hd);
        hostLogits = backend.device() == Device.CPU ? logits : Tensor.allocate(DType.F32, MemoryCategory.LOGITS, 1, config.vocabSize());
        logitsView = hostLogits.buffer().asFloatBuffer();
        allocateCache(capacity);
    }

    private Tensor act(long n) {
        return backend.allocate(DType.F32, MemoryCategory.WORKSPACE, 1, n);
    }

    private void allocateCache(int cap) {
        int n = config.numHiddenLayers();
        Tensor[] kc = new Tensor[n], vc = new Tensor[n];
        for (int i = 0; i < n; i++) {
            kc[i] = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, cap, config.kvDim());
            vc[i] = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, cap, config.kvDim());
            if (kCache != null && length > 0) { // carry the filled rows over (the new cache is zero)
                long rows = (long) length * config.kvDim();
                try (Tensor ko = kCache[i].slice(0, rows); Tensor kn = kc[i].slice(0, rows);
                     Tensor vo = vCache[i].slice(0, rows); Tensor vn = vc[i].slice(0, rows)) {
                    backend.axpy(1f, ko, kn);
                    backend.axpy(1f, vo, vn);
                }
            }
        }
        closeCache();
        kCache = kc;
        vCache = vc;
        capacity = cap;
    }

    private void closeCache() {
        if (kCache == null) return;
        for (int i = 0; i < kCache.length; i++) {
            kCache[i].close();
            vCache[i].close();
        }
        kCache = vCache = null;
    }

    /** Positions filled so far. */
    public int length() {
        return length;
    }

    /** Positions the cache holds without growing. */
    public int capacity() {
        return capacity;
    }

    /**
     * Makes room for {@code positions} tokens: the cache grows to the larger of that and twice its
     * capacity (at most max_position_embeddings), keeping what it holds.
     *
     * @throws IllegalArgumentException beyond max_position_embeddings
     */
    public void reserve(int positions) {
        int max = config.maxPositionEmbeddings();
        if (positions > max)
            throw new IllegalArgumentException("a KV cache of " + positions + " positions exceeds max_position_embeddings " + max);
        if (positions <= capacity) return;
        allocateCache((int) Math.min(max, Math.max(positions, 2L * capacity)));
    }

    /**
     * Feeds {@code token} at the next position and returns the logits [vocab] for the token after
     * it: a view of the session's host buffer, valid until the next call (on a GPU the logits are
     * copied into it; on the CPU it is the kernels' output itself).
     *
     * @throws IllegalStateException    when the cache is full
     * @throws IllegalArgumentException when the id is outside the vocabulary
     */
    public FloatBuffer step(int token) {
        if (length >= capacity) throw new IllegalStateException("KV cache full at " + capacity + " positions");
        if (token < 0 || token >= config.vocabSize())
            throw new IllegalArgumentException("token id " + token + " is outside the vocabulary of " + config.vocabSize());
        int p = length;
        if (!fused) return layersThroughBlock(token, p);
        backend.decodeEmbedding(weights.embedding(), token, x);
        for (int l = 0; l < config.numHiddenLayers(); l++) layer(l, p);
        length = p + 1;
        return head(x);
    }

    /** Logits of the final-normed {@code last} [1, hidden]. */
    private FloatBuffer head(Tensor last) {
        backend.rmsnormFwd(last, weights.norm(), eps, h, rstd);
        backend.decodeMatvec(h, weights.lmHead(), false, logits);
        block.capLogits(logits);
        return logitsView();
    }

    /** The last step's logits as a FloatBuffer positioned at 0 (copied to the host first on a GPU). */
    private FloatBuffer logitsView() {
        if (hostLogits != logits) backend.downloadInto(logits, hostLogits);
        return logitsView.clear();
    }

    /** One layer at position p on the residual x (HF LlamaDecoderLayer at T = 1, see DecoderBlock). */
    private void layer(int l, int p) {
        DeviceWeights.Layer ly = weights.layer(l);
        backend.rmsnormFwd(x, ly.inputNorm(), eps, h, rstd);
        project(ly.projection(Projection.Q), h, q, false);
        project(ly.projection(Projection.K), h, k, false);
        project(ly.projection(Projection.V), h, v, false);
        for (Map.Entry<Projection, Tensor> b : ly.bias().entrySet())
            backend.axpy(1f, b.getValue(), b.getKey() == Projection.Q ? q : b.getKey() == Projection.K ? k : v);
        Tensor qIn = q, kIn = k;
        if (ly.qNorm() != null) {
            backend.rmsnormFwd(qHeads, ly.qNorm(), eps, qNormedHeads, rstd);
            qIn = qNormed;
        }
        if (ly.kNorm() != null) {
            backend.rmsnormFwd(kHeads, ly.kNorm(), eps, kNormedHeads, rstd);
            kIn = kNormed;
        }
        int start = window > 0 ? Math.max(0, p + 1 - window) : 0;
        backend.decodeAttention(qIn, kIn, v, p, weights.invFreq(), kCache[l], vCache[l], start, hq, hkv, hd, att);
        project(ly.projection(Projection.O), att, x, true);
        backend.rmsnormFwd(x, ly.postNorm(), eps, h, rstd);
        ProjectionWeight g = ly.projection(Projection.GATE), u = ly.projection(Projection.UP);
        if (g instanceof ProjectionWeight.Dense gd && u instanceof ProjectionWeight.Dense ud) {
            backend.decodeGateUp(h, gd.tensor(), ud.tensor(), s);
        } else { // NF4 (or mixed after a partial merge): two GEMVs, then SwiGLU
            project(g, h, tmpInter, false);
            project(u, h, s, false);
            backend.swigluFwd(tmpInter, s, s);
        }
        project(ly.projection(Projection.DOWN), s, x, true);
    }

    /**
     * y [1, out] (= or += when {@code accumulate}) in [1, in] · Wᵀ; accumulating NF4 projections
     * are o_proj and down_proj (out = hidden), which go through tmpHidden.
     */
    private void project(ProjectionWeight w, Tensor in, Tensor y, boolean accumulate) {
        if (w instanceof ProjectionWeight.Dense d) {
            backend.decodeMatvec(in, d.tensor(), accumulate, y);
            return;
        }
        Nf4Weight n = ((ProjectionWeight.Quantized) w).weight();
        Tensor out = accumulate ? tmpHidden : y;
        backend.nf4MatmulFwd(in, n.packed(), n.absmax(), n.blocksize(), n.rows(), out);
        if (accumulate) backend.axpy(1f, tmpHidden, y);
    }

    /** The general path: every layer through {@link DecoderBlock#forward} with the KV-cache strategy. */
    private FloatBuffer layersThroughBlock(int token, int p) {
        try (Tensor posT = DeviceWeights.ints(backend, new int[] {p}); Tensor idT = DeviceWeights.ints(backend, new int[] {token})) {
            Tensor cur = block.embed(idT); // the block's embedding: the family's scale included (Gemma)
            try {
                DecoderBlock.KvCacheAttention attention = block.new KvCacheAttention(kCache, vCache, p);
                for (int l = 0; l < config.numHiddenLayers(); l++) {
                    DecoderBlock.Activations a = block.forward(l, cur, posT, attention, block.PLAIN, MemoryCategory.ACTIVATIONS);
                    a.closeInternals();
                    cur.close();
                    cur = a.xOut;
                }
                length = p + 1;
                return head(cur);
            } finally {
                cur.close();
            }
        }
    }

    /**
     * Fills positions 0..ids.length-1 of an empty session with one batched causal forward (every
     * projection a GEMM) and returns the logits after the last id, as {@link #step}.
     *
     * @throws IllegalStateException    when the session already holds tokens
     * @throws IllegalArgumentException when ids is empty, too long or outside the vocabulary
     */
    public FloatBuffer prefill(int[] ids) {
        if (length != 0) throw new IllegalStateException("prefill needs an empty session, it holds " + length + " positions");
        if (ids.length == 0) throw new IllegalArgumentException("prefill of an empty prompt");
        reserve(ids.length);
        if (ids.length == 1 || !fused) { // one token, or a family the batched path below does not cover
            FloatBuffer out = null;
            for (int id : ids) out = step(id);
            return out;
        }
        for (int i = 0; i < ids.length; i++)
            if (ids[i] < 0 || ids[i] >= config.vocabSize())
                throw new IllegalArgumentException("token id " + ids[i] + " at position " + i + " is outside the vocabulary of "
                        + config.vocabSize());
        int t = ids.length, d = config.hiddenSize();
        long kvDim = config.kvDim();
        int[] pos = new int[t];
        for (int i = 0; i < t; i++) pos[i] = i;
        try (Tensor idT = DeviceWeights.ints(backend, ids); Tensor posT = DeviceWeights.ints(backend, pos)) {
            Tensor cur = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, t, d);
            try {
                backend.embeddingFwd(idT, weights.embedding(), cur);
                DecoderBlock.Causal causal = block.new Causal(1, t, null, false);
                for (int l = 0; l < config.numHiddenLayers(); l++) {
                    DecoderBlock.Activations a = block.forward(l, cur, posT, causal, block.PLAIN, MemoryCategory.ACTIVATIONS);
                    try (Tensor kr = kCache[l].slice(0, t, kvDim); Tensor vr = vCache[l].slice(0, t, kvDim)) {
                        backend.axpy(1f, a.k, kr); // the cache rows are zero: these copy the roped k and v
                        backend.axpy(1f, a.v, vr);
                    }
                    a.closeInternals();
                    cur.close();
                    cur = a.xOut;
                }
                length = t;
                try (Tensor last = cur.slice((long) (t - 1) * d, 1, d)) {
                    return head(last);
                }
            } finally {
                cur.close();
            }
        }
    }

    @Override
    public void close() {
        closeCache();
        for (Tensor t : new Tensor[] {x, h, q, k, v, att, s, tmp, logits, hostLogits, rstd, qNormed, kNormed}) t.close();
    }
}
