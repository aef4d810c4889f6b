package io.lora4j.train;

import io.lora4j.data.Batch;
import io.lora4j.ops.Backend;
import io.lora4j.tensor.DType;
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
 */
public final class Trainer implements AutoCloseable {
    private final LoraTrainingModel model;
    private final TrainConfig config;
    private final long totalSteps, warmup;
    private final Tensor m, v;
    private long step;

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
     */
    public record StepResult(long step, double loss, long targets, long tokens, double gradNorm, double learningRate, double seconds) {}

    /**
     * @param totalSteps optimizer steps of the whole run (for the schedule)
     */
    public Trainer(LoraTrainingModel model, TrainConfig config, long totalSteps) {
        if (totalSteps < 1) throw new IllegalArgumentException("total steps must be >= 1, got " + totalSteps);
        this.model = model;
        this.config = config;
        this.totalSteps = totalSteps;
        this.warmup = LrSchedule.warmupSteps(config.warmupSteps(), config.warmupRatio(), totalSteps);
        Backend b = model.backend();
        long p = model.adapter().parameterCount();
        this.m = b.allocate(DType.F32, MemoryCategory.OPTIMIZER, p);
        this.v = b.allocate(DType.F32, MemoryCategory.OPTIMIZER, p);
        model.setCheckpointing(config.checkpointing());
    }

    /** Optimizer steps taken. */
    public long step() { return step; }

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
     * Accumulates the gradients of {@code window}'s micro-batches (see the class comment).
     *
     * @return Σ CE over the window; {@code targets[0]} receives N
     * @throws IllegalArgumentException when the window has no target token
     */
    public double accumulate(List<Batch> window, long[] targets) {
        long n = 0;
        for (Batch b : window) n += b.targetTokens();
        if (n == 0) throw new IllegalArgumentException("a gradient-accumulation window of " + window.size() + " micro-batches has no target token");
        float inv = (float) (1.0 / n);
        model.zeroGradients();
        double sum = 0;
        for (int i = 0; i < window.size(); i++) sum += model.forwardBackward(window.get(i), inv, dropoutSeed(config.seed(), step, i));
        targets[0] = n;
        return sum;
    }

    /**
     * One optimizer step over {@code window} (G micro-batches).
     *
     * @throws IllegalStateException when the gradient is not finite (the parameters are left as they were)
     */
    public StepResult step(List<Batch> window) {
        long t0 = System.nanoTime();
        long[] n = new long[1];
        double sum = accumulate(window, n);
        Backend b = model.backend();
        double norm = Math.sqrt(b.sumOfSquares(model.gradients()));
        if (!Double.isFinite(norm) || !Double.isFinite(sum))
            throw new IllegalStateException("step " + (step + 1) + ": loss " + sum / n[0] + ", gradient norm " + norm + " is not finite");
        float coef = config.maxGradNorm() > 0 ? (float) Math.min(1.0, config.maxGradNorm() / (norm + 1e-6)) : 1f;
        double lr = nextLearningRate();
        b.adamwStep(model.adapter().parameters(), model.gradients(), m, v, (float) lr, TrainConfig.BETA1, TrainConfig.BETA2,
                TrainConfig.EPS, (float) config.weightDecay(), step + 1, coef);
        step++;
        long tokens = 0;
        for (Batch x : window) tokens += (long) x.rows() * x.seqLen();
        return new StepResult(step, sum / n[0], n[0], tokens, norm, lr, (System.nanoTime() - t0) / 1e9);
    }

    @Override
    public void close() {
        m.close();
        v.close();
    }
}
