package io.lora4j.model;

import io.lora4j.ops.Backend;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.nio.FloatBuffer;

/**
 * A Llama decoder ready to run on one {@link Backend}: the forward pass over whole sequences
 * (evaluation, prefill) and single-token decoding with a {@link KvCache}.
 *
 * <p>The layers are {@link DecoderBlock}s with frozen projections, then the final RMSNorm and
 * lm_head. RMSNorm and all activations are fp32; dense projections are fp32 (BF16/F16 weights are
 * widened once when the model is built, {@link DeviceWeights}), NF4 projections go through the
 * 4-bit matmul.
 *
 * <p>Not thread-safe: one forward or decode at a time.
 */
public final class LlamaModel implements AutoCloseable {
    private final Backend backend;
    private final LlamaConfig config;
    private final DeviceWeights weights;
    private final DecoderBlock block;

    private LlamaModel(Backend backend, LlamaWeights w) {
        this.backend = backend;
        this.config = w.config();
        this.weights = new DeviceWeights(backend, w);
        this.block = new DecoderBlock(weights);
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

    /** Checks ids against the vocabulary (the embedding kernel only asserts). */
    private void checkIds(int[] ids) {
        for (int i = 0; i < ids.length; i++)
            if (ids[i] < 0 || ids[i] >= config.vocabSize())
                throw new IllegalArgumentException("token id " + ids[i] + " at position " + i + " is outside the vocabulary of "
                        + config.vocabSize());
    }

    /**
     * Runs every layer over {@code x} [T, hidden] (closed here) and returns the final-normed
     * hidden states [T, hidden].
     */
    private Tensor layers(Tensor x, Tensor pos, DecoderBlock.Attention attention) {
        try {
            for (int l = 0; l < config.numHiddenLayers(); l++) {
                DecoderBlock.Activations a = block.forward(l, x, pos, attention, block.PLAIN, MemoryCategory.ACTIVATIONS);
                a.closeInternals();
                x.close();
                x = a.xOut;
            }
            long t = x.dim(0);
            Tensor h = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, t, config.hiddenSize());
            try (Tensor rstd = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, t)) {
                backend.rmsnormFwd(x, weights.norm(), (float) config.rmsNormEps(), h, rstd);
            }
            return h;
        } finally {
            x.close();
        }
    }

    /** logits [T, vocab] = h [T, hidden] · lm_headᵀ (soft-capped when the family caps them); caller closes them. */
    private Tensor logits(Tensor h) {
        long t = h.dim(0), vocab = config.vocabSize();
        int d = config.hiddenSize();
        Tensor logits = backend.allocate(DType.F32, MemoryCategory.LOGITS, t, vocab);
        backend.sgemm(false, true, t, vocab, d, 1f, h, d, weights.lmHead(), d, 0f, logits, vocab);
        block.capLogits(logits);
        return logits;
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
        try (Tensor idT = DeviceWeights.ints(backend, ids); Tensor posT = DeviceWeights.ints(backend, pos)) {
            Tensor x = block.embed(idT);
            try (Tensor h = layers(x, posT, block.new Causal(b, s, null, false))) {
                return logits(h);
            }
        }
    }

    /**
     * Keys and values of every layer for up to {@code capacity} positions of one sequence, with
     * the decode scratch: a {@link DecodeSession}.
     */
    public final class KvCache implements AutoCloseable {
        private final DecodeSession session;

        KvCache(int capacity) {
            this.session = new DecodeSession(weights, block, capacity);
        }

        /** Positions filled so far. */
        public int length() {
            return session.length();
        }

        /** The session: {@link DecodeSession#step} without the copy {@link #decode} makes. */
        public DecodeSession session() {
            return session;
        }

        @Override
        public void close() {
            session.close();
        }
    }

    /** A cache for one sequence of at most {@code capacity} tokens (≤ max_position_embeddings). */
    public KvCache newCache(int capacity) {
        if (capacity < 1 || capacity > config.maxPositionEmbeddings())
            throw new IllegalArgumentException("KV cache capacity must be in [1, " + config.maxPositionEmbeddings() + "], got " + capacity);
        return new KvCache(capacity);
    }

    /** A session of {@code capacity} positions that takes the fused step or, {@code fused} false, the block path. */
    DecodeSession newSession(int capacity, boolean fused) {
        return new DecodeSession(weights, block, capacity, fused);
    }

    /**
     * Feeds {@code token} at the cache's next position and returns the logits [vocab] (a copy)
     * for the token after it.
     */
    public float[] decode(KvCache cache, int token) {
        checkIds(new int[] {token});
        FloatBuffer logits = cache.session.step(token);
        float[] out = new float[logits.remaining()];
        logits.get(out);
        return out;
    }

    @Override
    public void close() {
        block.close();
        weights.close();
    }
}
