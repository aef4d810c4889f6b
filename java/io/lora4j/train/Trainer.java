package io.lora4j.train;

import io.lora4j.data.Batch;
import io.lora4j.ops.Backend;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.List;

/**
 * Optimizer steps over a {@link LoraTrainingModel}: gradient accumulation with the "GA fix", global
 * norm clipping, the learning-rate schedule and AdamW on the LoRA parameters (fp32 moments).
 *
 * <p>One step over the G micro-batches of a window: N = non-ignored targets of all G together; each
 * micro-batch's CE backward is scaled by 1/N (no 1/G), so b1×g16 and b16×g1 give the same gradient
 * up to fp32 rounding. The reported loss is Σ CE / N, the window's true token mean. Gradients are
 * clipped by min(1, max_grad_norm / (‖g‖ + 1e-6)) (torch's {@code clip_grad_norm_}), then
 * AdamW with decoupled weight decay updates every LoRA matrix (Llama's LoRA has no biases).
 *
 * <p>A window whose loss or gradient norm is not finite is skipped: the parameters and moments
 * stay as they were, the step still counts (schedule, dropout seeds and data position move on, as
 * HF's global step does), and AdamW's bias correction counts only the updates applied (torch's
 * {@code GradScaler} skips {@code optimizer.step()} the same way).
 */
public final class Trainer implements AutoCloseable {
    private final LoraTrainingModel model;
    private final TrainConfig config;
    private final long totalSteps, warmup;
    /** Sums over the data-parallel ranks (the identity for one process). */
    private final DataParallel.Exchange exchange;
    /** Index of this rank's first micro-batch in each step's global window (0 for one process). */
    private final int firstMicro;
    private Tensor m, v;
    /** Windows consumed (the global step) and AdamW updates applied (≤ step: skipped windows do not count). */
    private long step, updates;

    /**
     * The outcome of one optimizer step.
     *
     * @param step         1-based optimizer step
     * @param loss         Σ CE / N over the window (nats per target token)
     * @param targets      N
     * @param tokens       input positions processed (rows × padded length, summed)
     * @param gradNorm     global L2 norm of the gradient before clipping
     * @param learningRate the rate this step used
     * @param seconds      wall time of the step
     * @param skipped      the loss or gradient was not finite: no update was applied
     */
    public record StepResult(long step, double loss, long targets, long tokens, double gradNorm, double learningRate, double seconds,
            boolean skipped) {}

    /**
     * @param totalSteps optimizer steps of the whole run (for the schedule)
     */
    public Trainer(LoraTrainingModel model, TrainConfig config, long totalSteps) {
        this(model, config, totalSteps, DataParallel.single().exchange());
    }

    /**
     * A trainer of one rank of a data-parallel run: {@code exchange} sums the target count, the
     * loss and the gradients over the ranks (see {@link #accumulate}).
     *
     * @param totalSteps optimizer steps of the whole run (for the schedule)
     */
    public Trainer(LoraTrainingModel model, TrainConfig config, long totalSteps, DataParallel.Exchange exchange) {
        this(model, config, totalSteps, exchange, 0);
    }

    /**
     * As {@link #Trainer(LoraTrainingModel, TrainConfig, long, DataParallel.Exchange)}, for a rank
     * whose micro-batches start at index {@code firstMicro} of each step's global window (the
     * dropout seeds follow the global index, {@link DataParallel.Shard#firstMicroBatch}).
     */
    public Trainer(LoraTrainingModel model, TrainConfig config, long totalSteps, DataParallel.Exchange exchange, int firstMicro) {
        if (firstMicro < 0) throw new IllegalArgumentException("first micro-batch index must be >= 0, got " + firstMicro);
        this.firstMicro = firstMicro;
        if (totalSteps < 1) throw new IllegalArgumentException("total steps must be >= 1, got " + totalSteps);
        this.model = model;
        this.config = config;
        this.totalSteps = totalSteps;
        this.exchange = exchange;
        this.warmup = LrSchedule.warmupSteps(config.warmupSteps(), config.warmupRatio(), totalSteps);
        Backend b = model.backend();
        long p = model.adapter().parameterCount();
        this.m = b.allocate(DType.F32, MemoryCategory.OPTIMIZER, p);
        this.v = b.allocate(DType.F32, MemoryCategory.OPTIMIZER, p);
        model.setCheckpointing(config.checkpointing(), config.checkpointEvery());
    }

    /** Optimizer steps taken (windows consumed, skipped ones included). */
    public long step() { return step; }

    /** AdamW updates applied (steps minus skipped steps); the bias-correction count. */
    public long updates() { return updates; }

    public long totalSteps() { return totalSteps; }

    public long warmupSteps() { return warmup; }

    /** The learning rate the next step will use. */
    public double nextLearningRate() {
        return config.learningRate() * config.lrScheduler().factor(step, warmup, totalSteps);
    }

    /** Seed of micro-batch {@code micro}'s dropout masks at optimizer step {@code step}. */
    static long dropoutSeed(long seed, long step, int micro) {
        long z = seed * 0x9E3779B97F4A7C15L + step * 0xC2B2AE3D27D4EB4FL + micro;
        z = (z ^ (z >>> 33)) * 0xFF51AFD7ED558CCDL;
        return z ^ (z >>> 33);
    }

    /**
     * Accumulates the gradients of {@code window}'s micro-batches (see the class comment). In a
     * data-parallel run N, the loss sum and the gradients are sums over the ranks: N before the
     * backward passes, the other two after them ({@link DataParallel.Exchange}).
     *
     * @return Σ CE over the window; {@code targets[0]} receives N
     * @throws IllegalArgumentException when the window has no target token
     */
    public double accumulate(List<Batch> window, long[] targets) {
        long local = 0;
        for (Batch b : window) local += b.targetTokens();
        long n = exchange.sumTargets(local);
        if (n == 0) throw new IllegalArgumentException("a gradient-accumulation window of " + window.size() + " micro-batches has no target token");
        float inv = (float) (1.0 / n);
        model.zeroGradients();
        double sum = 0;
        for (int i = 0; i < window.size(); i++) sum += model.forwardBackward(window.get(i), inv, dropoutSeed(config.seed(), step, firstMicro + i));
        targets[0] = n;
        return exchange.sumGradientsAndLoss(model.backend(), model.gradients(), sum);
    }

    /**
     * One optimizer step over {@code window} (G micro-batches). When the loss or the gradient norm
     * is not finite the step is skipped (see the class comment) and the result says so.
     */
    public StepResult step(List<Batch> window) {
        long t0 = System.nanoTime();
        long[] n = new long[1];
        double sum = accumulate(window, n);
        Backend b = model.backend();
        double norm = Math.sqrt(b.sumOfSquares(model.gradients()));
        double lr = nextLearningRate();
        boolean skip = !Double.isFinite(norm) || !Double.isFinite(sum);
        if (!skip) {
            float coef = config.maxGradNorm() > 0 ? (float) Math.min(1.0, config.maxGradNorm() / (norm + 1e-6)) : 1f;
            b.adamwStep(model.adapter().parameters(), model.gradients(), m, v, (float) lr, TrainConfig.BETA1, TrainConfig.BETA2,
                    TrainConfig.EPS, (float) config.weightDecay(), updates + 1, coef);
            updates++;
        }
        step++;
        exchange.afterStep(b, model.adapter().parameters(), step);
        long tokens = 0;
        for (Batch x : window) tokens += (long) x.rows() * x.seqLen();
        return new StepResult(step, sum / n[0], n[0], tokens, norm, lr, (System.nanoTime() - t0) / 1e9, skip);
    }

    /** Host copies of AdamW's first and second moments [P] (fp32), for a checkpoint. */
    public float[][] moments() {
        Backend b = model.backend();
        float[][] out = new float[2][];
        int i = 0;
        for (Tensor t : new Tensor[] {m, v}) {
            Tensor h = b.download(t);
            try {
                out[i++] = h.toFloats();
            } finally {
                if (h != t) h.close();
            }
        }
        return out;
    }

    /**
     * Puts the trainer where a checkpoint left it (the adapter's parameters are restored by
     * loading the checkpoint's adapter).
     *
     * @param step    optimizer steps taken
     * @param updates AdamW updates applied (≤ step)
     * @param m1      first moments [P]
     * @param m2      second moments [P]
     * @throws IllegalArgumentException when the counts or lengths do not fit this trainer
     */
    public void restore(long step, long updates, float[] m1, float[] m2) {
        long p = model.adapter().parameterCount();
        if (step < 0 || step > totalSteps || updates < 0 || updates > step)
            throw new IllegalArgumentException("step " + step + " / updates " + updates + " do not fit a run of " + totalSteps + " steps");
        if (m1.length != p || m2.length != p)
            throw new IllegalArgumentException("optimizer moments hold " + m1.length + " and " + m2.length + " values, the adapter " + p);
        Backend b = model.backend();
        Tensor[] fresh = new Tensor[2];
        float[][] src = {m1, m2};
        for (int i = 0; i < 2; i++) {
            if (b.device() == Device.CPU) {
                // the CPU backend's upload hands back the host tensor itself: fill an optimizer tensor directly
                fresh[i] = b.allocate(DType.F32, MemoryCategory.OPTIMIZER, p);
                fresh[i].floatPointer().put(src[i]);
            } else {
                try (Tensor h = Tensor.ofFloats(src[i], p)) {
                    fresh[i] = b.upload(h, MemoryCategory.OPTIMIZER);
                }
            }
        }
        m.close();
        v.close();
        m = fresh[0];
        v = fresh[1];
        this.step = step;
        this.updates = updates;
    }

    @Override
    public void close() {
        m.close();
        v.close();
    }
}
