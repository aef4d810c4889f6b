package io.lora4j.plan;

import io.lora4j.model.LlamaConfig;
import io.lora4j.model.Projection;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.train.CheckpointMode;
import io.lora4j.train.ChunkedCrossEntropy;
import io.lora4j.train.LoraTrainingModel;
import java.util.EnumMap;
import java.util.Map;
import java.util.Set;

/**
 * Predicts the peak memory of a lora4j training step from a model's shape alone (an HF
 * {@code config.json} is enough: no weights are read).
 *
 * <p>How: the planner replays, allocation by allocation, what {@link LoraTrainingModel#forwardBackward}
 * and the {@link io.lora4j.train.Trainer} allocate through {@link io.lora4j.tensor.MemoryTracker} for
 * one optimizer step, with the sizes of the given shape, and keeps the same live and peak figures
 * per category. Nothing is fitted: every byte is a tensor of the code, and a validation test
 * (tests/io/lora4j/plan/MemoryPlannerValidationTest) checks the prediction against the tracker's
 * measured peaks in every checkpointing mode, on the CPU (fp32 and bf16 storage) and on the emulated
 * CUDA device (tests/io/lora4j/emu/CudaMemoryPlannerTest). When the training code changes its
 * allocations this replay must change with it; those tests are what notice.
 *
 * <p>The base ({@link #baseWeightBytes}) is held as {@link io.lora4j.model.DeviceWeights} holds it:
 * embedding, lm_head and dense projections in the storage dtype ({@link PlanSettings#storage}), NF4
 * projections without an fp32 absmax copy on CUDA ({@link #nf4Bytes(long, int, boolean, boolean)}).
 *
 * <p>Per decoder layer (T = batch × seq tokens, d hidden, q = heads × head_dim, kv = KV heads ×
 * head_dim, I intermediate, H heads, r rank, fp32 activations) the forward keeps
 * {@code T·(4d + 2q + 2kv + 3I + H + 2)} floats (h1, h2, x_mid, x_out; q and attention output;
 * k, v; gate, up, silu·up; logsumexp; two rstd), plus {@code T·r} per adapted projection (x·Aᵀ)
 * and, with dropout, a {@code T·in} mask per adapted projection. Attention is flash-style: no
 * [S, S] scores are stored (the kernels' per-thread tiles are native scratch of a few KiB,
 * outside the tracker). The backward of a layer adds {@code T·max(2I + d, 2q + 2kv + d)} floats
 * of gradients, plus {@code T·d} for NF4's accumulated input gradient. The loss head adds
 * {@code T·(2d + 1)} floats (final norm output, dL/dx) and a logits buffer of
 * min(T, {@value LoraTrainingModel#CE_CHUNK_TOKENS}) × min(V, {@value #LOGITS_VOCAB_CHUNK}) floats.
 *
 * <p>With bf16 kept activations ({@link PlanSettings#keptBf16}, the CUDA default) h1, the roped q, k
 * and v, the attention output, x_mid, h2, g, u, s = act(g)·u and the layer outputs (the stored or
 * offloaded checkpoints) take 2 B per element, and each has an fp32 working copy while it is made
 * (forward) and, except g and u, whose activation kernels read bf16, while it is read (backward), as
 * {@link io.lora4j.model.DecoderBlock} allocates them; so does the layer input while the layer's
 * first half runs and the model output in the head.
 *
 * <p>Not counted (not tracked by lora4j): the CUDA context and cuBLAS handles, the caching
 * allocator's rounding and fragmentation, the JVM heap, native per-thread scratch, and the host
 * copy of memory-mapped llama2.c weights in the page cache.
 */
public final class MemoryPlanner {
    /**
     * Logits columns materialised at once by the vocabulary-chunked cross-entropy (vocabularies over
     * 32768 columns are processed in 32768-column slices).
     */
    public static final int LOGITS_VOCAB_CHUNK = 32768;

    private static final int F32 = 4, I32 = 4;

    private MemoryPlanner() {}

    /**
     * The predicted peaks of one optimizer step (any number of gradient-accumulation micro-batches:
     * each repeats the same allocations).
     *
     * @throws IllegalArgumentException when the settings do not fit the model (seq longer than
     *                                  max_position_embeddings is allowed: RoPE extrapolates)
     */
    public static MemoryEstimate estimate(LlamaConfig c, PlanSettings s) {
        Sim sim = new Sim(s.device() == Device.CUDA);
        long p = loraParameterCount(c, s.r(), s.targets());
        sim.dev(MemoryCategory.WEIGHTS, baseWeightBytes(c, s));
        // RoPE inverse frequencies: on the CPU the host copy itself (made by Tensor.ofFloats, WORKSPACE) is used
        sim.dev(s.device() == Device.CUDA ? MemoryCategory.WEIGHTS : MemoryCategory.WORKSPACE, ropeTables(c) * c.headDim() / 2 * F32);
        sim.dev(MemoryCategory.WEIGHTS, normCopyBytes(c));
        sim.dev(MemoryCategory.LORA, p * F32);
        Buf grads = sim.dev(MemoryCategory.GRADS, p * F32);
        sim.dev(MemoryCategory.OPTIMIZER, 2 * p * F32); // AdamW m and v
        if (s.device() == Device.CUDA) { // zeroGradients() on CUDA: a fresh zeroed buffer, then the old one goes
            sim.dev(MemoryCategory.GRADS, p * F32);
            sim.free(grads);
        }
        new Step(c, s, sim).forwardBackward();
        if (s.device() == Device.CUDA) sim.free(sim.dev(MemoryCategory.WORKSPACE, 8)); // sumOfSquares' double accumulator
        Map<MemoryCategory, Long> peaks = new EnumMap<>(MemoryCategory.class), at = new EnumMap<>(MemoryCategory.class);
        for (MemoryCategory m : MemoryCategory.values()) {
            // OFFLOADED lives on the host: on CUDA its peak is the host's (MemoryTracker counts it under Device.CPU)
            peaks.put(m, m == MemoryCategory.OFFLOADED && sim.cuda ? sim.hostPeakOf[m.ordinal()] : sim.peak[m.ordinal()]);
            at.put(m, sim.atPeak[m.ordinal()]);
        }
        return new MemoryEstimate(s, peaks, at, sim.peakTotal, sim.hostPeak);
    }

    /**
     * What lives on the device between steps: the base ({@link #baseWeightBytes}), the RoPE table,
     * the LoRA parameters, their gradients and AdamW's two moments (fp32 each). A step's own peak
     * is {@code estimate(c, s).peakTotal() - residentBytes(c, s)}.
     */
    public static long residentBytes(LlamaConfig c, PlanSettings s) {
        return baseWeightBytes(c, s) + ropeTables(c) * c.headDim() / 2 * F32 + normCopyBytes(c)
                + 4 * loraParameterCount(c, s.r(), s.targets()) * F32;
    }

    /**
     * Bytes of the frozen base as {@link io.lora4j.model.DeviceWeights} holds it for training: the
     * embedding, lm_head (when untied) and dense projections in the storage dtype
     * ({@link PlanSettings#storage}: 2 B/param in BF16, the CUDA default; 4 B/param in F32), or with
     * {@code loadIn4bit} the seven projections in NF4 ({@link #nf4Bytes}); norms and the family's
     * biases and q/k norms in fp32.
     */
    public static long baseWeightBytes(LlamaConfig c, PlanSettings s) {
        long d = c.hiddenSize(), v = c.vocabSize(), layers = c.numHiddenLayers();
        long w = s.storage().byteSize(1);
        long extras = 0; // the family's biases and q/k norms, dense fp32
        for (var e : c.architecture().layerTensors(c)) extras += io.lora4j.tensor.Tensor.numel(e.shape());
        long embeddings = v * d * (c.tieWordEmbeddings() ? 1 : 2) * w;
        long norms = ((2 * layers + 1) * d + layers * extras) * F32;
        return embeddings + norms + layers * projectionBytes(c, s);
    }

    /** RoPE tables kept by DeviceWeights: one, or two with a local base for the sliding layers (Gemma 3). */
    static long ropeTables(LlamaConfig c) {
        return c.architecture().localRopeTheta() > 0 ? 2 : 1;
    }

    /**
     * Bytes of the (1 + w) fp32 copies of every norm weight that DeviceWeights keeps for families
     * whose norms multiply by 1 + w (Gemma); 0 for the others (the loaded F32 weights are used in place).
     */
    public static long normCopyBytes(LlamaConfig c) {
        if (!c.architecture().normOffset()) return 0;
        long perLayer = 2L * c.hiddenSize();
        for (var e : c.architecture().layerTensors(c)) if (e.suffix().endsWith("norm.weight")) perLayer += io.lora4j.tensor.Tensor.numel(e.shape());
        return (perLayer * c.numHiddenLayers() + c.hiddenSize()) * F32;
    }

    /**
     * The start-up peak of {@code init_lora_weights: loftq} (the "significant memory spike at the
     * start of training" the guide warns about), in the tracked memory of the training device: LoftQ
     * starts from the dense fp32 base ({@link #baseWeightBytes} without 4-bit) and makes every
     * projection's NF4 copy while the dense one is still held; on top of that, either the largest
     * projection's fp32 staging tensor (4 B/element: the weight or residual being quantized, then its
     * dequantization) or the adapter's fp32 parameters, made before the dense projections are
     * released. Not counted: LoftQ's JVM arrays (about 36 B per element of the projection in work,
     * and on CUDA the host copy). Steady state afterwards is {@link #residentBytes} with 4-bit.
     */
    public static long loftqStartupBytes(LlamaConfig c, PlanSettings s) {
        PlanSettings dense = s.withLoadIn4bit(false), nf4 = s.withLoadIn4bit(true);
        long shared = baseWeightBytes(c, dense) - c.numHiddenLayers() * projectionBytes(c, dense);
        long largest = 0;
        for (Projection pr : Projection.values()) largest = Math.max(largest, pr.outFeatures(c) * pr.inFeatures(c));
        long transientBytes = Math.max(largest * F32, loraParameterCount(c, s.r(), s.targets()) * F32);
        return baseWeightBytes(c, dense) + (baseWeightBytes(c, nf4) - shared) + transientBytes;
    }

    /** One layer's seven projections: NF4 ({@link #nf4Bytes}) or dense in the storage dtype. */
    private static long projectionBytes(LlamaConfig c, PlanSettings s) {
        long b = 0;
        boolean fp32Absmax = !s.doubleQuant() || s.device() == Device.CPU; // Nf4.keepsFp32Absmax
        for (Projection pr : Projection.values()) {
            long n = pr.outFeatures(c) * pr.inFeatures(c);
            b += s.loadIn4bit() ? nf4Bytes(n, s.blocksize(), s.doubleQuant(), fp32Absmax) : s.storage().byteSize(n);
        }
        return b;
    }

    /** {@link #nf4Bytes(long, int, boolean, boolean)} as the CPU keeps it (with the fp32 absmax). */
    public static long nf4Bytes(long n, int blocksize, boolean doubleQuant) {
        return nf4Bytes(n, blocksize, doubleQuant, true);
    }

    /**
     * Bytes of one NF4 weight of {@code n} elements as {@link Nf4#quantize} and
     * {@link Nf4#fromParts} keep it: the packed nibbles ⌈n/2⌉; with double quantization its 8-bit
     * codes (one byte per block) and the fp32 nested absmax (one per
     * {@value Nf4Weight#NESTED_BLOCKSIZE} blocks); and the fp32 absmax (one per block) when
     * {@code fp32Absmax}: always without double quantization, and on the CPU, whose kernels read
     * fp32 scales (CUDA's read the 8-bit form: {@link Nf4#keepsFp32Absmax}).
     */
    public static long nf4Bytes(long n, int blocksize, boolean doubleQuant, boolean fp32Absmax) {
        long blocks = Nf4.blocks(n, blocksize);
        long b = (n + 1) / 2;
        if (fp32Absmax || !doubleQuant) b += blocks * F32;
        if (doubleQuant) b += blocks + Nf4.blocks(blocks, Nf4Weight.NESTED_BLOCKSIZE) * F32;
        return b;
    }

    /**
     * LoRA parameters: r·(in + out) per adapted projection per layer; on fused modules (Phi-3's
     * qkv_proj, gate_up_proj) one A for the module (r·in once) and the Bs of its projections.
     */
    public static long loraParameterCount(LlamaConfig c, int r, Set<Projection> targets) {
        long per = 0;
        boolean fused = c.architecture().fusedProjections();
        for (Projection p : targets) {
            boolean sharesA = fused && p != p.fusedLeader() && targets.contains(p.fusedLeader());
            per += (long) r * ((sharesA ? 0 : p.inFeatures(c)) + p.outFeatures(c));
        }
        return per * c.numHiddenLayers();
    }

    /**
     * The checkpoint_every in [1, L] whose chunked checkpointing has the lowest predicted device peak
     * (the smallest such k on ties). Every layer is recomputed once whatever k is, so this k costs no
     * more time than any other. One decoder layer's activations are ~15-20× its input, so the
     * optimum is near √(L·(layer input)/(layer activations)), usually well below the round(√L)
     * default: k = 1 (= {@link CheckpointMode#TRUE}) for small L.
     */
    public static int bestCheckpointEvery(LlamaConfig c, PlanSettings s) {
        int best = 1;
        long bestPeak = Long.MAX_VALUE;
        for (int k = 1; k <= c.numHiddenLayers(); k++) {
            long p = estimate(c, s.withCheckpointing(CheckpointMode.CHUNKED, k)).peakTotal();
            if (p < bestPeak) {
                bestPeak = p;
                best = k;
            }
        }
        return best;
    }

    /**
     * The largest micro-batch in [1, cap] whose predicted device peak fits {@code budget} bytes, or 0
     * when not even batch 1 fits.
     */
    public static int maxBatch(LlamaConfig c, PlanSettings s, long budget, int cap) {
        return (int) largest(1, cap, b -> estimate(c, s.withBatch((int) b)).peakTotal() <= budget);
    }

    /**
     * The longest sequence in [2, cap] whose predicted device peak fits {@code budget} bytes at the
     * settings' batch, or 0 when not even 2 tokens fit.
     */
    public static int maxSeqLen(LlamaConfig c, PlanSettings s, long budget, int cap) {
        return (int) largest(2, cap, n -> estimate(c, s.withSeqLen((int) n)).peakTotal() <= budget);
    }

    /** The largest x in [lo, hi] with fits(x), for a monotone predicate; lo - 1 when none (0 for lo 1). */
    private static long largest(long lo, long hi, java.util.function.LongPredicate fits) {
        if (hi < lo || !fits.test(lo)) return 0;
        long good = lo, bad = hi + 1;
        long probe = lo;
        while (true) { // exponential search, then bisection
            long next = Math.min(hi, probe * 2);
            if (next == probe) break;
            if (fits.test(next)) {
                good = next;
                probe = next;
                if (next == hi) return hi;
            } else {
                bad = next;
                break;
            }
        }
        while (bad - good > 1) {
            long mid = good + (bad - good) / 2;
            if (fits.test(mid)) good = mid;
            else bad = mid;
        }
        return good;
    }

    // ---------------------------------------------------------------- the replay

    private static final class Buf {
        final MemoryCategory cat;
        final long bytes;
        final boolean host;
        boolean freed;

        Buf(MemoryCategory cat, long bytes, boolean host) {
            this.cat = cat;
            this.bytes = bytes;
            this.host = host;
        }
    }

    /** Live and peak bytes per category on the device (and host bytes apart, on CUDA), as MemoryTracker. */
    private static final class Sim {
        final boolean cuda;
        final long[] live = new long[MemoryCategory.values().length], peak = new long[live.length];
        final long[] hostLive = new long[live.length], hostPeakOf = new long[live.length];
        long[] atPeak = new long[live.length];
        long total, peakTotal, host, hostPeak;

        Sim(boolean cuda) {
            this.cuda = cuda;
        }

        Buf dev(MemoryCategory c, long bytes) {
            int i = c.ordinal();
            live[i] += bytes;
            peak[i] = Math.max(peak[i], live[i]);
            total += bytes;
            if (total > peakTotal) {
                peakTotal = total;
                atPeak = live.clone();
            }
            return new Buf(c, bytes, false);
        }

        /** A host allocation: on the CPU the same pool as the device. */
        Buf host(MemoryCategory c, long bytes) {
            if (!cuda) return dev(c, bytes);
            host += bytes;
            hostPeak = Math.max(hostPeak, host);
            hostLive[c.ordinal()] += bytes;
            hostPeakOf[c.ordinal()] = Math.max(hostPeakOf[c.ordinal()], hostLive[c.ordinal()]);
            return new Buf(c, bytes, true);
        }

        void free(Buf b) {
            if (b == null || b.freed) return;
            b.freed = true;
            if (b.host) {
                host -= b.bytes;
                hostLive[b.cat.ordinal()] -= b.bytes;
            }
            else {
                live[b.cat.ordinal()] -= b.bytes;
                total -= b.bytes;
            }
        }
    }

    /** One micro-batch's forward and backward: the allocation order of LoraTrainingModel. */
    private static final class Step {
        final LlamaConfig c;
        final PlanSettings s;
        final Sim sim;
        final long t, d, q, kv, inter, heads;
        final boolean dropout;
        final boolean sandwich, queryScale;
        final boolean bf16;  // kept activations in bf16 (DecoderBlock's kept dtype)
        final long kb;       // bytes per kept element: 2 (bf16) or 4
        int h1Slot = -1, h2Slot = -1, sSlot = -1, gSlot = -1, uSlot = -1; // bf16: where the kept h1, h2, s, g, u are in forwardLayer's list
        int qSlotBf = -1, kSlotBf = -1, vSlotBf = -1, attSlot = -1, xMidSlot = -1; // bf16: the kept q, k, v, attention output, x_mid
        Buf workspace; // LoraTrainingModel.Ctx.workspace: [T, r], allocated by the first LoRA backward
        Buf ones;      // DecoderBlock's bias broadcast vector [T], alive as long as the model

        Step(LlamaConfig c, PlanSettings s, Sim sim) {
            this.c = c;
            this.s = s;
            this.sim = sim;
            this.t = s.tokens();
            this.d = c.hiddenSize();
            this.q = c.qDim();
            this.kv = c.kvDim();
            this.inter = c.intermediateSize();
            this.heads = c.numAttentionHeads();
            this.dropout = s.loraDropout() > 0;
            this.bf16 = s.keptBf16();
            this.kb = bf16 ? 2 : F32;
            this.sandwich = c.architecture().sandwichNorms();
            double qpas = c.architecture().queryPreAttnScalar();
            this.queryScale = qpas > 0 && (float) (Math.sqrt(c.headDim()) / Math.sqrt(qpas)) != 1f;
        }

        Buf act(long floats) {
            return sim.dev(MemoryCategory.ACTIVATIONS, floats * F32);
        }

        /** A bf16 kept activation of n elements (DecoderBlock.keep). */
        Buf kept(long n) {
            return sim.dev(MemoryCategory.ACTIVATIONS, n * 2);
        }

        /** ChunkedCrossEntropy's row-number tensors: n ints, uploaded (the CPU uses the host array). */
        Buf rowIds(long n) {
            if (!sim.cuda) return sim.dev(MemoryCategory.ACTIVATIONS, n * I32);
            Buf h = sim.host(MemoryCategory.ACTIVATIONS, n * I32);
            Buf dv = sim.dev(MemoryCategory.ACTIVATIONS, n * I32);
            sim.free(h);
            return dv;
        }

        /** A token-index tensor: a host array uploaded to the device (the CPU uses the host array). */
        Buf ints() {
            if (!sim.cuda) return sim.dev(MemoryCategory.WORKSPACE, t * I32);
            Buf h = sim.host(MemoryCategory.WORKSPACE, t * I32);
            Buf dv = sim.dev(MemoryCategory.WORKSPACE, t * I32);
            sim.free(h);
            return dv;
        }

        /** LoraTrainingModel.project: [mask], x·Aᵀ, then y; returns y, the rest goes to kept. */
        Buf project(Projection p, java.util.List<Buf> kept) {
            if (s.targets().contains(p)) {
                if (dropout) kept.add(act(t * p.inFeatures(c)));
                kept.add(act(t * s.r()));
            }
            return act(t * p.outFeatures(c));
        }

        /** forwardLayer: returns the kept internals; the output is the last element. */
        java.util.List<Buf> forwardLayer(MemoryCategory outCat) {
            java.util.List<Buf> k = new java.util.ArrayList<>();
            Buf xw = bf16 ? act(t * d) : null; // the fp32 working copy of the bf16 layer input
            Buf h1 = act(t * d); // h1 (with bf16: its fp32 working copy)
            if (!bf16) k.add(h1);
            k.add(act(t));     // rstd1
            if (bf16) {
                h1Slot = k.size();
                k.add(kept(t * d));
            }
            Buf qw = project(Projection.Q, k); // q as attention reads it: the projection, normed per head, scaled
            k.add(qw);
            Buf kw = project(Projection.K, k);
            k.add(kw);
            Buf vw = project(Projection.V, k);
            k.add(vw);
            if (bf16) sim.free(h1);
            if (c.architecture().qkvBias() && ones == null) { // DecoderBlock.addBias: T ones, kept by the block
                if (sim.cuda) sim.free(sim.host(MemoryCategory.WORKSPACE, t * F32));
                ones = sim.dev(MemoryCategory.WORKSPACE, t * F32);
            }
            if (c.architecture().qkNorm()) { // DecoderBlock.headNorm: rstd per head, then the normed copy
                k.add(act(t * heads));
                k.add(qw = act(t * q));
                k.add(act(t * c.numKeyValueHeads()));
                k.add(kw = act(t * kv));
            }
            if (queryScale) { // DecoderBlock.scaled: the scaled q replaces the roped one
                Buf scaled = act(t * q);
                sim.free(qw);
                k.set(k.indexOf(qw), scaled);
                qw = scaled;
            }
            if (bf16) { // q, k and v rounded into their kept bf16 copies; attention reads the fp32 ones
                k.set(qSlotBf = k.indexOf(qw), kept(t * q));
                k.set(kSlotBf = k.indexOf(kw), kept(t * kv));
                k.set(vSlotBf = k.indexOf(vw), kept(t * kv));
            }
            Buf att = act(t * q);  // attention output (with bf16: its fp32 working copy)
            k.add(act(t * heads)); // logsumexp [B, H, S]
            if (bf16) {
                for (Buf b : new Buf[] {qw, kw, vw}) sim.free(b);
                attSlot = k.size();
                k.add(kept(t * q));
            } else {
                k.add(att);
            }
            Buf xMid = act(t * d); // x_mid (with bf16: its fp32 working copy)
            if (!bf16) k.add(xMid);
            if (sandwich) { // o kept with its norm's rstd for the backward; the normed copy is added, then freed
                k.add(project(Projection.O, k));
                if (bf16) sim.free(att);
                k.add(act(t));
                sim.free(act(t * d));
            } else {
                Buf o = project(Projection.O, k); // o: added into x_mid, then freed
                if (bf16) sim.free(att);
                sim.free(o);
            }
            sim.free(xw);
            if (bf16) {
                xMidSlot = k.size();
                k.add(kept(t * d));
            }
            Buf h2 = act(t * d); // h2 (with bf16: its fp32 working copy)
            if (!bf16) k.add(h2);
            k.add(act(t));     // rstd2
            if (bf16) sim.free(xMid);
            if (bf16) {
                h2Slot = k.size();
                k.add(kept(t * d));
            }
            if (!bf16) {
                k.add(project(Projection.GATE, k));
                k.add(project(Projection.UP, k));
            } else { // each projection output rounded into its bf16 copy, then freed
                Buf gf = project(Projection.GATE, k);
                gSlot = k.size();
                k.add(kept(t * inter));
                sim.free(gf);
                Buf uf = project(Projection.UP, k);
                uSlot = k.size();
                k.add(kept(t * inter));
                sim.free(uf);
                sim.free(h2);
            }
            Buf sw = act(t * inter); // silu(g)·u (with bf16: its fp32 working copy)
            if (!bf16) k.add(sw);
            else {
                sSlot = k.size();
                k.add(kept(t * inter));
            }
            // the output; with bf16 the fp32 sum, rounded into a bf16 output once the down branch is added
            Buf out = bf16 ? act(t * d) : sim.dev(outCat, t * d * F32);
            if (sandwich) {
                k.add(project(Projection.DOWN, k));
                k.add(act(t));
                sim.free(act(t * d));
            } else {
                sim.free(project(Projection.DOWN, k));
            }
            if (bf16) {
                sim.free(sw);
                Buf sum = out;
                out = sim.dev(outCat, t * d * 2);
                sim.free(sum);
            }
            k.add(out);
            return k;
        }

        static Buf output(java.util.List<Buf> layer) {
            return layer.get(layer.size() - 1);
        }

        void closeInternals(java.util.List<Buf> layer) {
            for (int i = 0; i < layer.size() - 1; i++) sim.free(layer.get(i));
        }

        void closeAll(java.util.List<Buf> layer) {
            for (Buf b : layer) sim.free(b);
        }

        /** projectBackward: NF4's accumulated input gradient goes through a temporary; LoRA needs the workspace. */
        void projectBackward(Projection p, boolean accumulate) {
            boolean lora = s.targets().contains(p);
            boolean loraDense = lora && !s.loadIn4bit();
            if (!loraDense && s.loadIn4bit() && accumulate) sim.free(act(t * p.inFeatures(c)));
            if (!lora) return;
            if (workspace == null) workspace = sim.dev(MemoryCategory.WORKSPACE, t * s.r() * F32);
        }

        /** DecoderBlock.backward; with bf16, each kept input is widened just before its use, and both copies go after it. */
        void backwardLayer(java.util.List<Buf> layer) {
            Buf sw = widen(layer, sSlot, t * inter);
            Buf dS = act(t * inter), dU = act(t * inter), dH = act(t * d);
            projectBackward(Projection.DOWN, false);
            sim.free(sw);
            if (bf16) { // the activation's backward read the bf16 gate and up: their last use
                sim.free(layer.get(gSlot));
                sim.free(layer.get(uSlot));
            }
            Buf h2w = widen(layer, h2Slot, t * d);
            projectBackward(Projection.GATE, false);
            projectBackward(Projection.UP, true);
            sim.free(h2w);
            sim.free(widen(layer, xMidSlot, t * d)); // read by the post-attention norm's backward
            sim.free(dH);
            sim.free(dU);
            sim.free(dS);
            Buf dAtt = act(t * q), dq = act(t * q), dk = act(t * kv), dv = act(t * kv), dH2 = act(t * d);
            Buf attw = widen(layer, attSlot, t * q);
            projectBackward(Projection.O, false);
            // attention's backward reads q, k, v and its output, widened; all four go after it
            Buf qw = widen(layer, qSlotBf, t * q), kw = widen(layer, kSlotBf, t * kv), vw = widen(layer, vSlotBf, t * kv);
            for (Buf b : new Buf[] {attw, qw, kw, vw}) sim.free(b);
            if (queryScale) sim.free(act(t * q)); // the rescaled dq, read by the RoPE backward
            Buf h1w = widen(layer, h1Slot, t * d);
            projectBackward(Projection.Q, false);
            projectBackward(Projection.K, true);
            projectBackward(Projection.V, true);
            sim.free(h1w);
            if (bf16) sim.free(act(t * d)); // the layer input widened for the input norm's backward
            for (Buf b : new Buf[] {dH2, dv, dk, dq, dAtt}) sim.free(b);
        }

        /** bf16: the fp32 copy of the kept tensor at {@code slot} (n elements), the bf16 one freed; null with fp32. */
        Buf widen(java.util.List<Buf> layer, int slot, long n) {
            if (!bf16) return null;
            Buf w = act(n);
            sim.free(layer.get(slot));
            return w;
        }

        void head() {
            Buf xw = bf16 ? act(t * d) : null; // the bf16 model output widened (LoraTrainingModel.head)
            Buf h = act(t * d), rstd = act(t);
            // ChunkedCrossEntropy with every target labelled (the most the head can hold): aligned chunks
            long chunk = ChunkedCrossEntropy.bufferRows(t, LoraTrainingModel.CE_CHUNK_TOKENS);
            long step = ChunkedCrossEntropy.chunkRows(LoraTrainingModel.CE_CHUNK_TOKENS);
            long padded = (t / step) * step + ChunkedCrossEntropy.aligned(t % step);
            long logitsBytes = chunk * Math.min((long) c.vocabSize(), LOGITS_VOCAB_CHUNK) * F32;
            Buf logits = sim.dev(MemoryCategory.LOGITS, logitsBytes);
            // a final-logit soft cap (Gemma 2) keeps the capped logits beside the raw ones
            Buf capped = c.architecture().finalSoftcap() > 0 ? sim.dev(MemoryCategory.LOGITS, logitsBytes) : null;
            Buf hc = act(chunk * d), dhg = act((padded + 1) * d);
            // the online log-sum-exp state of ChunkedCrossEntropy (row max, row sum, target logit, lse)
            Buf rowMax = act(chunk), rowSum = act(chunk), target = act(chunk), lse = act(chunk);
            Buf loss = act(chunk), sum = act(1);
            for (Buf b : new Buf[] {rowIds(chunk), rowIds(chunk)}) sim.free(b); // a chunk's row numbers and targets
            if (sim.cuda) sim.free(sim.host(MemoryCategory.WORKSPACE, chunk * F32)); // the loss rows read back (the CPU reads them in place)
            sim.free(rowIds(t)); // the scatter map of dL/dh
            for (Buf b : new Buf[] {sum, loss, lse, target, rowSum, rowMax, dhg, hc}) sim.free(b);
            if (capped != null) sim.free(capped);
            for (Buf b : new Buf[] {logits, rstd, h}) sim.free(b);
            sim.free(xw);
        }

        void forwardBackward() {
            Buf ids = ints(), pos = ints(), labels = ints();
            int nl = c.numHiddenLayers();
            Buf x0 = act(t * d);
            if (c.architecture().embeddingScale()) { // DecoderBlock.embed: x0 scaled into a new activation
                Buf scaled = act(t * d);
                sim.free(x0);
                x0 = scaled;
            }
            if (bf16) { // DecoderBlock.embedKept: the bf16 rounding of x0 is the first layer's input
                Buf b = kept(t * d);
                sim.free(x0);
                x0 = b;
            }
            if (s.checkpointing() == CheckpointMode.NONE) {
                java.util.List<java.util.List<Buf>> acts = new java.util.ArrayList<>();
                for (int l = 0; l < nl; l++) acts.add(forwardLayer(MemoryCategory.ACTIVATIONS));
                Buf dRes = act(t * d);
                head();
                for (int l = nl - 1; l >= 0; l--) {
                    backwardLayer(acts.get(l));
                    closeAll(acts.get(l));
                }
                sim.free(dRes);
            } else {
                int g = LoraTrainingModel.groupSize(s.checkpointing(), s.checkpointEvery(), nl), groups = (nl + g - 1) / g;
                Buf[] saved = new Buf[groups];
                Buf x = x0;
                for (int l = 0; l < nl; l++) {
                    boolean outStored = (l + 1) % g == 0 || l == nl - 1;
                    java.util.List<Buf> a = forwardLayer(outStored ? MemoryCategory.CHECKPOINTS : MemoryCategory.ACTIVATIONS);
                    closeInternals(a);
                    if (l % g == 0) saved[l / g] = s.checkpointing() == CheckpointMode.UNSLOTH && l / g < groups - 1 ? offload(x) : x;
                    else sim.free(x);
                    x = output(a);
                }
                Buf dRes = act(t * d);
                head();
                sim.free(x);
                Buf[] fetched = new Buf[groups]; // CUDA: device copies of offloaded inputs, prefetched one group ahead
                for (int gi = groups - 1; gi >= 0; gi--) {
                    int l0 = gi * g, l1 = Math.min(nl, l0 + g);
                    Buf in = restore(saved, fetched, gi);
                    java.util.List<java.util.List<Buf>> live = new java.util.ArrayList<>();
                    for (int l = l0; l < l1; l++) live.add(forwardLayer(MemoryCategory.ACTIVATIONS));
                    sim.free(output(live.get(live.size() - 1)));
                    for (int l = l1 - 1; l >= l0; l--) {
                        backwardLayer(live.get(l - l0));
                        closeAll(live.get(l - l0));
                    }
                    sim.free(in);
                    sim.free(saved[gi]);
                }
                sim.free(dRes);
            }
            sim.free(x0);
            sim.free(draining);
            for (Buf b : new Buf[] {ids, pos, labels, workspace}) sim.free(b);
        }

        /**
         * unsloth: a host copy (OFFLOADED) of the layer input. On the CPU the device copy is freed at
         * once; on CUDA (CudaBackend.offloadAsync) it stays until the next offload or prefetch, after
         * its asynchronous copy: the source of the previous offload is freed first.
         */
        Buf offload(Buf x) {
            if (sim.cuda) sim.free(draining);
            Buf h = sim.host(MemoryCategory.OFFLOADED, t * d * kb);
            if (sim.cuda) sim.free(sim.host(MemoryCategory.WORKSPACE, t * d * kb));
            if (sim.cuda) draining = x;
            else sim.free(x);
            return h;
        }

        Buf draining; // CUDA: the device source of the last offload, freed by the next offload or prefetch

        /**
         * LoraTrainingModel.restore: the group's input (on CUDA the prefetched device copy of an
         * offloaded one, fetched now if it was not), then on CUDA the prefetch of the next offloaded
         * input the backward needs (the one below), which first frees the pending offload source.
         */
        Buf restore(Buf[] saved, Buf[] fetched, int gi) {
            if (!saved[gi].host) {
                if (sim.cuda) prefetch(saved, fetched, gi);
                return saved[gi];
            }
            if (!sim.cuda) return sim.dev(MemoryCategory.CHECKPOINTS, t * d * kb);
            if (fetched[gi] == null) fetch(fetched, gi);
            prefetch(saved, fetched, gi);
            return fetched[gi];
        }

        /** Backend.prefetch of the most recent offload still pending below gi; a no-op when it was fetched already. */
        private void prefetch(Buf[] saved, Buf[] fetched, int gi) {
            for (int j = gi - 1; j >= 0; j--) {
                if (!saved[j].host) continue;
                if (fetched[j] == null) fetch(fetched, j);
                return;
            }
        }

        private void fetch(Buf[] fetched, int j) {
            sim.free(draining);
            fetched[j] = sim.dev(MemoryCategory.CHECKPOINTS, t * d * kb);
        }
    }
}
