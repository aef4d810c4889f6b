package io.lora4j.train;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.model.DecoderBlock;
import io.lora4j.model.DeviceWeights;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.Projection;
import io.lora4j.model.ProjectionWeight;
import io.lora4j.ops.Backend;
import io.lora4j.quant.Nf4;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.javacpp.Pointer;

/**
 * The trainable Llama decoder: a frozen base (dense fp32 or NF4 projections) with a
 * {@link LoraAdapter} on the targeted projections, and the forward and backward passes of the
 * whole model. Only the LoRA parameters get gradients; they accumulate into {@link #gradients()}
 * (same flat layout as {@link LoraAdapter#parameters()}) until {@link #zeroGradients()}.
 *
 * <p>The layers are {@link DecoderBlock}s (the same as {@link io.lora4j.model.LlamaModel}'s) with
 * causal attention and a LoRA projector: {@code lin(x) = x Wᵀ + sc·(drop(x) Aᵀ) Bᵀ} on targeted
 * projections, the frozen weight alone on the others.
 * The loss head runs on the labelled positions only, chunked: at most {@value #CE_CHUNK_TOKENS} rows of [T, vocab] logits exist at a
 * time (and at most {@value #CE_CHUNK_VOCAB} vocabulary columns of them for wider vocabularies), and
 * the CE backward writes {@code scale·(softmax − onehot)} in place of the logits.
 *
 * <p>Not thread-safe.
 */
public final class LoraTrainingModel implements AutoCloseable {
    /**
     * Rows of logits materialised at once by the chunked cross-entropy: a multiple of
     * {@link ChunkedCrossEntropy#ROW_ALIGN}, so that every chunk but the last is a whole one.
     */
    public static final int CE_CHUNK_TOKENS = 240;
    /**
     * Vocabulary columns of logits materialised at once when the vocabulary is wider (Llama 3's
     * 128256 would otherwise make a 131 MB [256, V] buffer): [256, 32768] fp32 = 32 MiB.
     */
    public static final int CE_CHUNK_VOCAB = 32768;

    private final Backend backend;
    private final LlamaConfig config;
    private final LoraAdapter adapter;
    private Tensor grads; // [P] F32, GRADS
    private final DeviceWeights weights;
    private final DecoderBlock block;
    private final Tensor lmHead, norm;
    private final float scale;
    private final float dropout;
    private CheckpointMode checkpointing = CheckpointMode.NONE;
    private int checkpointEvery; // CHUNKED group size; 0 = round(√L)
    /** Vocabulary slice width of the head; tests set it to force (or avoid) the vocab-chunked path. */
    int ceChunkVocab = CE_CHUNK_VOCAB;
    /** Offloads of the current micro-batch not yet restored, in layer order (unsloth mode). */
    private final List<Backend.Offloaded> offloads = new ArrayList<>();

    /**
     * @param weights the frozen base; dense tensors are used in place when F32 on the backend's
     *                device (else widened/uploaded once), NF4 projections must live on the backend
     * @param adapter the LoRA parameters, on the same backend, for a model of {@code weights}' shape
     * @throws IllegalArgumentException when adapter and model disagree
     */
    public LoraTrainingModel(Backend backend, LlamaWeights weights, LoraAdapter adapter) {
        this(backend, weights, adapter, null);
    }

    /**
     * As {@link #LoraTrainingModel(Backend, LlamaWeights, LoraAdapter)}, holding the embedding, lm_head
     * and dense projections as {@code weightDtype} (F32 or BF16; null: the device's default,
     * {@link DeviceWeights#defaultStorage}).
     */
    public LoraTrainingModel(Backend backend, LlamaWeights weights, LoraAdapter adapter, DType weightDtype) {
        this(backend, weights, adapter, weightDtype, null);
    }

    /**
     * As {@link #LoraTrainingModel(Backend, LlamaWeights, LoraAdapter, DType)}, with mixed precision
     * chosen: {@code bf16} true keeps the activations the backward reads (layer inputs and outputs,
     * the projections' inputs, attention's q, k and v, x_mid, the MLP's gate and up; see {@link DecoderBlock}) in bf16, as TRL's {@code bf16=True}; false
     * keeps them fp32; null is the device's default ({@link #defaultBf16}: on CUDA, not on the CPU).
     */
    public LoraTrainingModel(Backend backend, LlamaWeights weights, LoraAdapter adapter, DType weightDtype, Boolean bf16) {
        this.backend = backend;
        this.config = weights.config();
        this.adapter = adapter;
        if (adapter.backend().device() != backend.device())
            throw new IllegalArgumentException("adapter lives on " + adapter.backend().device() + ", the model on " + backend.device());
        LlamaConfig ac = adapter.modelConfig();
        if (ac.hiddenSize() != config.hiddenSize() || ac.intermediateSize() != config.intermediateSize()
                || ac.numHiddenLayers() != config.numHiddenLayers() || ac.qDim() != config.qDim() || ac.kvDim() != config.kvDim())
            throw new IllegalArgumentException("the adapter was made for another model shape");
        if (config.architecture().qkvBias() && adapter.config().bias() != io.lora4j.lora.LoraConfig.Bias.NONE)
            throw new IllegalArgumentException("bias=" + adapter.config().bias().peftName + " would train " + config.modelType()
                    + "'s q/k/v biases, which lora4j does not train: use bias none");
        this.weights = new DeviceWeights(backend, weights,
                weightDtype != null ? weightDtype : DeviceWeights.defaultStorage(backend.device()));
        this.block = new DecoderBlock(this.weights, (bf16 != null ? bf16 : defaultBf16(backend.device())) ? DType.BF16 : DType.F32);
        this.lmHead = this.weights.lmHead();
        this.norm = this.weights.norm();
        this.grads = backend.allocate(DType.F32, MemoryCategory.GRADS, adapter.parameterCount());
        this.scale = (float) adapter.config().scaling();
        this.dropout = (float) adapter.config().loraDropout();
    }

    /**
     * TRL's {@code bf16: auto}: bf16 kept activations on CUDA (as PEFT/Unsloth train there), fp32 on
     * the CPU (whose kernels compute fp32 and gain only memory from it).
     */
    public static boolean defaultBf16(Device device) {
        return device == Device.CUDA;
    }

    /** Whether the kept activations are bf16 (mixed precision). */
    public boolean bf16() {
        return block.keptDtype() == DType.BF16;
    }

    public LlamaConfig config() { return config; }
    public Backend backend() { return backend; }
    public LoraAdapter adapter() { return adapter; }

    /** The accumulated gradient of every LoRA parameter [P], layout of {@link LoraAdapter#parameters()}. */
    public Tensor gradients() { return grads; }

    /**
     * Sets how activations are kept for the backward (default {@link CheckpointMode#NONE}); for
     * {@link CheckpointMode#CHUNKED} the group size is the default round(√L).
     */
    public void setCheckpointing(CheckpointMode mode) {
        setCheckpointing(mode, 0);
    }

    /**
     * Sets how activations are kept for the backward.
     *
     * @param every for {@link CheckpointMode#CHUNKED}: layers per recomputed group (checkpoint_every),
     *              0 = round(√L); values above L act as L; ignored by the other modes
     * @throws IllegalArgumentException for a null mode or {@code every} &lt; 0
     */
    public void setCheckpointing(CheckpointMode mode, int every) {
        if (mode == null) throw new IllegalArgumentException("checkpointing mode must not be null");
        if (every < 0) throw new IllegalArgumentException("checkpoint_every must be >= 0, got " + every);
        this.checkpointing = mode;
        this.checkpointEvery = every;
    }

    /**
     * Layers per checkpointed group under the current mode: L for {@link CheckpointMode#NONE}
     * (nothing recomputed), 1 for TRUE and UNSLOTH, checkpoint_every (default round(√L), at most L)
     * for CHUNKED.
     */
    public int checkpointGroup() {
        return groupSize(checkpointing, checkpointEvery, config.numHiddenLayers());
    }

    /** See {@link #checkpointGroup()}; shared with the memory planner. */
    public static int groupSize(CheckpointMode mode, int every, int numLayers) {
        switch (mode) {
            case NONE: return numLayers;
            case TRUE: case UNSLOTH: return 1;
            default: return Math.min(numLayers, every > 0 ? every : CheckpointMode.defaultEvery(numLayers));
        }
    }

    /** Zeroes {@link #gradients()} (once per optimizer step: the backward accumulates). */
    public void zeroGradients() {
        if (grads.device() == Device.CPU) Pointer.memset(grads.pointer(), 0, grads.bytes());
        else {
            // the Backend API has no device memset; allocate() returns zeroed memory (g - g would keep NaN)
            Tensor fresh = backend.allocate(DType.F32, MemoryCategory.GRADS, grads.numel());
            grads.close();
            grads = fresh;
        }
    }

    // ---------------------------------------------------------------- per-micro-batch inputs

    private final class Ctx implements AutoCloseable {
        final int b, s;
        final long t;
        final Tensor ids, pos, seg, labels;
        final int[] flatLabels;
        final boolean training;
        final long seed;
        final DecoderBlock.Attention attention;
        final LoraProjector projector = new LoraProjector(this);
        Tensor workspace;

        Ctx(Batch batch, boolean training, long seed) {
            this.b = batch.rows();
            this.s = batch.seqLen();
            this.t = (long) b * s;
            int[] id = flat(batch.inputIds()), p = flat(batch.positions());
            flatLabels = flat(batch.targets());
            for (int i = 0; i < id.length; i++) {
                if (id[i] < 0 || id[i] >= config.vocabSize())
                    throw new IllegalArgumentException("token id " + id[i] + " at flat position " + i + " is outside the vocabulary of " + config.vocabSize());
                int lab = flatLabels[i];
                if (lab != Example.IGNORE_INDEX && (lab < 0 || lab >= config.vocabSize()))
                    throw new IllegalArgumentException("target " + lab + " at flat position " + i + " is outside the vocabulary of " + config.vocabSize());
            }
            this.ids = DeviceWeights.ints(backend, id);
            this.pos = DeviceWeights.ints(backend, p);
            this.seg = batch.segments() == null ? null : DeviceWeights.ints(backend, flat(batch.segments()));
            this.labels = DeviceWeights.ints(backend, flatLabels);
            this.training = training;
            this.seed = seed;
            this.attention = block.new Causal(b, s, seg, training);
        }

        Tensor workspace(long floats) {
            if (workspace == null || workspace.numel() < floats) {
                if (workspace != null) workspace.close();
                workspace = backend.allocate(DType.F32, MemoryCategory.WORKSPACE, floats);
            }
            return workspace;
        }

        @Override
        public void close() {
            ids.close();
            pos.close();
            if (seg != null) seg.close();
            labels.close();
            if (workspace != null) workspace.close();
        }
    }

    private static int[] flat(int[][] a) {
        int s = a[0].length;
        int[] out = new int[a.length * s];
        for (int i = 0; i < a.length; i++) System.arraycopy(a[i], 0, out, i * s, s);
        return out;
    }

    private Tensor act(long... shape) {
        return backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, shape);
    }

    /** An activation its op overwrites completely: not zero-filled ({@link Backend#empty}). */
    private Tensor overwritten(long... shape) {
        return backend.empty(DType.F32, MemoryCategory.ACTIVATIONS, shape);
    }

    // ---------------------------------------------------------------- the LoRA projector

    /** Per-(micro-batch, layer, projection) dropout seed: the recomputed forward draws the same mask. */
    private static long dropoutSeed(long seed, int layer, Projection p) {
        long z = seed + 0x9E3779B97F4A7C15L * (1 + layer * 8L + p.ordinal());
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /**
     * {@code lin(x) = x Wᵀ + sc·(drop(x) Aᵀ) Bᵀ} on the adapted projections, the frozen weight alone
     * on the others; keeps x·Aᵀ and the dropout mask for the backward, which accumulates the LoRA
     * gradients into {@link #grads}.
     */
    private final class LoraProjector implements DecoderBlock.Projector {
        private final Ctx c;

        LoraProjector(Ctx c) {
            this.c = c;
        }

        @Override
        public Tensor project(int l, Projection p, Tensor x, DecoderBlock.Activations a) {
            ProjectionWeight w = weights.layer(l).projection(p);
            long t = x.dim(0), in = x.dim(1), out = p.outFeatures(config);
            LoraAdapter.Slot slot = adapter.slot(l, p);
            if (slot == null) return block.linear(x, w);
            Tensor mask = null;
            if (dropout > 0 && c.training) {
                mask = overwritten(t, in);
                // a fused module's projections (Phi-3) share one input and, as in PEFT, one mask
                Projection maskOf = config.architecture().fusedProjections() ? p.fusedLeader() : p;
                backend.dropoutMask(dropoutSeed(c.seed, l, maskOf), dropout, mask);
                a.mask.put(p, mask);
            }
            Tensor xa = overwritten(t, adapter.config().r());
            a.xa.put(p, xa);
            Tensor y;
            try (Tensor av = adapter.a(l, p); Tensor bv = adapter.b(l, p)) {
                if (w instanceof ProjectionWeight.Dense d) {
                    y = overwritten(t, out);
                    backend.loraFwd(x, d.tensor(), av, bv, mask, scale, y, xa);
                } else {
                    y = Nf4.matmul(backend, x, ((ProjectionWeight.Quantized) w).weight());
                    backend.loraFwd(x, null, av, bv, mask, scale, y, xa);
                }
            }
            return y;
        }

        @Override
        public void backward(int l, Projection p, Tensor dy, Tensor x, DecoderBlock.Activations a, Tensor dx, boolean accumulate) {
            ProjectionWeight w = weights.layer(l).projection(p);
            long t = x.dim(0), in = x.dim(1), out = dy.dim(1);
            LoraAdapter.Slot slot = adapter.slot(l, p);
            boolean loraDense = slot != null && w instanceof ProjectionWeight.Dense;
            if (!loraDense) { // the frozen base's input gradient
                block.linearBackward(w, dy, dx, accumulate);
                if (slot == null) return;
            }
            int r = adapter.config().r();
            Tensor ws = c.workspace(t * r);
            try (Tensor av = adapter.a(l, p); Tensor bv = adapter.b(l, p);
                 Tensor da = grads.slice(slot.offsetA(), r, in); Tensor db = grads.slice(slot.offsetB(), out, r)) {
                Tensor wd = loraDense ? ((ProjectionWeight.Dense) w).tensor() : null;
                backend.loraBwd(dy, x, wd, av, bv, a.mask.get(p), a.xa.get(p), scale, dx, loraDense ? accumulate : true, da, db, ws);
            }
        }
    }

    private DecoderBlock.Activations forwardLayer(int l, Tensor xIn, Ctx c, MemoryCategory outCategory) {
        return block.forward(l, xIn, c.pos, c.attention, c.projector, outCategory);
    }

    private void backwardLayer(int l, DecoderBlock.Activations a, Ctx c, Tensor dRes) {
        block.backward(l, a, c.pos, c.attention, c.projector, dRes);
    }

    // ---------------------------------------------------------------- whole model

    /**
     * Forward and backward of one micro-batch. Adds {@code lossScale}·∇(Σ CE over the batch's
     * non-ignored targets) to {@link #gradients()}; with {@code lossScale} = 1/N, N the target count
     * of the whole accumulation window, the window's gradients sum to the token-mean loss's
     * gradient (DESIGN.md §4).
     *
     * @param dropoutSeed seeds this micro-batch's LoRA dropout masks (ignored when dropout is 0)
     * @return Σ CE (nats) over the batch's targets
     * @throws IllegalArgumentException for ids or targets outside the vocabulary
     */
    public double forwardBackward(Batch batch, float lossScale, long dropoutSeed) {
        try (Ctx c = new Ctx(batch, true, dropoutSeed)) {
            return checkpointing == CheckpointMode.NONE ? forwardBackwardStored(c, lossScale) : forwardBackwardCheckpointed(c, lossScale);
        }
    }

    /** {@link CheckpointMode#NONE}: every layer's activations live until its backward. */
    private double forwardBackwardStored(Ctx c, float lossScale) {
        int nl = config.numHiddenLayers();
        DecoderBlock.Activations[] acts = new DecoderBlock.Activations[nl];
        Tensor x0 = block.embedKept(c.ids);
        Tensor x = x0;
        try {
            for (int l = 0; l < nl; l++) {
                acts[l] = forwardLayer(l, x, c, MemoryCategory.ACTIVATIONS);
                x = acts[l].xOut;
            }
            try (Tensor dRes = act(c.t, config.hiddenSize())) {
                double loss = head(x, c, lossScale, dRes);
                for (int l = nl - 1; l >= 0; l--) {
                    backwardLayer(l, acts[l], c, dRes);
                    acts[l].close();
                    acts[l] = null;
                }
                return loss;
            }
        } finally {
            for (DecoderBlock.Activations a : acts) if (a != null) a.close();
            x0.close();
        }
    }

    /**
     * TRUE, UNSLOTH and CHUNKED: the layers form groups of g = {@link #checkpointGroup()} (the last
     * may be shorter); the forward keeps only each group's input (category CHECKPOINTS; unsloth moves
     * all but the last group's to the host). The backward, group by group from the last, recomputes
     * the group's forward from its stored input, keeping every activation of those g layers, and
     * back-propagates through them. Peak: ⌈L/g⌉ stored inputs + g layers' activations.
     */
    private double forwardBackwardCheckpointed(Ctx c, float lossScale) {
        int nl = config.numHiddenLayers(), g = checkpointGroup(), groups = (nl + g - 1) / g;
        Tensor[] saved = new Tensor[groups];
        DecoderBlock.Activations[] live = new DecoderBlock.Activations[g];
        Tensor x0 = block.embedKept(c.ids);
        Tensor x = x0;
        try {
            for (int l = 0; l < nl; l++) {
                // the output is stored when it starts a group (or is the model output for the head)
                boolean outStored = (l + 1) % g == 0 || l == nl - 1;
                DecoderBlock.Activations a = forwardLayer(l, x, c, outStored ? MemoryCategory.CHECKPOINTS : MemoryCategory.ACTIVATIONS);
                a.closeInternals();
                if (l % g == 0) saved[l / g] = checkpointing == CheckpointMode.UNSLOTH && l / g < groups - 1 ? offload(x) : x;
                else x.close(); // inside a group: recomputed in the backward
                x = a.xOut;
            }
            double loss;
            try (Tensor dRes = act(c.t, config.hiddenSize())) {
                loss = head(x, c, lossScale, dRes);
                x.close(); // the last output: not a layer input
                for (int gi = groups - 1; gi >= 0; gi--) {
                    int l0 = gi * g, l1 = Math.min(nl, l0 + g);
                    Tensor in = restore(saved[gi]);
                    Tensor xi = in;
                    for (int l = l0; l < l1; l++) {
                        live[l - l0] = forwardLayer(l, xi, c, MemoryCategory.ACTIVATIONS);
                        xi = live[l - l0].xOut;
                    }
                    xi.close(); // the group's output: its gradient is dRes, its value is not needed
                    live[l1 - 1 - l0].xOut = null;
                    for (int l = l1 - 1; l >= l0; l--) {
                        backwardLayer(l, live[l - l0], c, dRes);
                        live[l - l0].close(); // its output was the input of layer l + 1, done
                        live[l - l0] = null;
                    }
                    if (in != saved[gi]) in.close();
                    saved[gi].close();
                    saved[gi] = null;
                }
            }
            return loss;
        } finally {
            for (DecoderBlock.Activations a : live) if (a != null) a.close();
            for (Tensor s : saved) if (s != null) s.close();
            x.close(); // after a failure: the transient layer output (close is idempotent)
            x0.close();
        }
    }

    /**
     * Parks a layer input in host memory (unsloth mode): category OFFLOADED, copied asynchronously
     * on CUDA ({@link Backend#offloadAsync}); {@code x} is handed over. Returns the host copy, which
     * {@link #restore} maps back to its pending offload.
     */
    private Tensor offload(Tensor x) {
        offloads.removeIf(o -> {
            if (!o.host().isClosed()) return false;
            o.close(); // left over from a micro-batch that threw
            return true;
        });
        Backend.Offloaded o = backend.offloadAsync(x);
        offloads.add(o);
        return o.host();
    }

    /**
     * The device tensor of a saved layer input: itself when it never left, else the awaited copy of
     * its offload (on the CPU backend the host copy itself). Then starts fetching the most recently
     * offloaded input still pending, the next one the backward needs, so that its copy overlaps
     * this layer's recompute and backward (double buffering).
     */
    private Tensor restore(Tensor saved) {
        Tensor in = saved;
        for (int i = offloads.size() - 1; i >= 0; i--) {
            if (offloads.get(i).host() == saved) {
                Backend.Offloaded o = offloads.remove(i);
                in = backend.await(o);
                o.close();
                break;
            }
        }
        if (!offloads.isEmpty()) backend.prefetch(offloads.get(offloads.size() - 1));
        return in;
    }

    /**
     * Final norm, then lm_head + cross-entropy chunked over tokens ({@value #CE_CHUNK_TOKENS} rows)
     * and, when the vocabulary is wider than {@link #ceChunkVocab}, over the vocabulary too
     * ({@link ChunkedCrossEntropy}); with dRes != null writes dL/dx into dRes. Returns Σ CE.
     */
    private double head(Tensor x, Ctx c, float lossScale, Tensor dRes) {
        int d = config.hiddenSize();
        Tensor xf = block.wide(x); // the model output in fp32 (a working copy when the residual stream is bf16)
        try (Tensor h = overwritten(c.t, d); Tensor rstd = overwritten(c.t)) {
            backend.rmsnormFwd(xf, norm, (float) config.rmsNormEps(), h, rstd);
            double total = ChunkedCrossEntropy.lossAndGradient(backend, h, lmHead, c.labels, c.flatLabels, CE_CHUNK_TOKENS,
                    ceChunkVocab, lossScale, (float) config.architecture().finalSoftcap(), dRes);
            if (dRes != null) backend.rmsnormBwd(dRes, xf, norm, rstd, dRes, null);
            return total;
        } finally {
            DecoderBlock.release(xf, x);
        }
    }

    /**
     * Σ CE over the batch's non-ignored targets without gradients or dropout (evaluation).
     *
     * @throws IllegalArgumentException for ids or targets outside the vocabulary
     */
    public double lossSum(Batch batch) {
        try (Ctx c = new Ctx(batch, false, 0)) {
            Tensor x = block.embedKept(c.ids);
            for (int l = 0; l < config.numHiddenLayers(); l++) {
                DecoderBlock.Activations a = forwardLayer(l, x, c, MemoryCategory.ACTIVATIONS);
                a.closeInternals();
                x.close();
                x = a.xOut;
            }
            try {
                return head(x, c, 0f, null);
            } finally {
                x.close();
            }
        }
    }

    @Override
    public void close() {
        for (Backend.Offloaded o : offloads) o.close();
        offloads.clear();
        grads.close();
        block.close();
        weights.close();
    }
}
