package io.lora4j.train;

import java.util.ArrayList;
import java.util.List;

/**
 * The optimisation settings of a run (TRL {@code SFTConfig} / HF {@code TrainingArguments} names in
 * the parameter docs), validated at construction: every bad field is reported in one
 * {@link IllegalArgumentException} message. Defaults ({@link #defaults()}) are the guide's.
 *
 * @param learningRate               learning_rate, &gt; 0 (2e-4)
 * @param numTrainEpochs             num_train_epochs, &gt; 0 (1); ignored when maxSteps &gt; 0
 * @param maxSteps                   max_steps: optimizer steps; &gt; 0 overrides the epochs (-1: off)
 * @param perDeviceTrainBatchSize    per_device_train_batch_size, rows per micro-batch (2)
 * @param gradientAccumulationSteps  gradient_accumulation_steps, micro-batches per optimizer step
 *                                   (8: the guide's table; Unsloth's notebooks use 4)
 * @param warmupSteps                warmup_steps (0); when &gt; 0 it wins over warmupRatio
 * @param warmupRatio                warmup_ratio in [0, 1) ({@value #DEFAULT_WARMUP_RATIO}: the guide's "5-10% of total steps")
 * @param lrScheduler                lr_scheduler_type (linear)
 * @param weightDecay                weight_decay, decoupled, on LoRA A/B (0.01)
 * @param maxGradNorm                max_grad_norm: global-norm clipping; 0 disables (1.0)
 * @param seed                       seed of data order and dropout (3407)
 * @param loggingSteps               logging_steps (1)
 * @param evalSteps                  eval_steps: evaluate every N steps when there is eval data
 *                                   (0: about {@value #AUTO_EVALUATIONS} evaluations per run, see {@link #evalEvery})
 * @param saveSteps                  save_steps: write checkpoint-N/ every N steps (0: never)
 * @param saveTotalLimit             save_total_limit: keep the newest N checkpoints (0: all)
 * @param maxSeqLength               max_seq_length: rows are truncated to this many tokens (2048)
 * @param checkpointing              use_gradient_checkpointing (false | true | unsloth | chunked)
 * @param earlyStoppingPatience      early_stopping_patience: evaluations without improvement
 *                                   before stopping (0: off; {@value #DEFAULT_EARLY_STOPPING_PATIENCE}, the
 *                                   guide's "stop when the evaluation loss increases for a few steps")
 * @param earlyStoppingThreshold     early_stopping_threshold: the improvement that counts (0)
 * @param checkpointEvery            checkpoint_every: layers per recomputed group of
 *                                   {@link CheckpointMode#CHUNKED}, &gt;= 1; 0 (the default): a
 *                                   {@link TrainingRun} takes the memory planner's lowest-peak group
 *                                   size for its model, batch and rows (a bare
 *                                   {@link LoraTrainingModel} takes round(√L))
 */
public record TrainConfig(double learningRate, double numTrainEpochs, long maxSteps, int perDeviceTrainBatchSize,
        int gradientAccumulationSteps, long warmupSteps, double warmupRatio, LrSchedule lrScheduler, double weightDecay,
        double maxGradNorm, long seed, int loggingSteps, int evalSteps, int saveSteps, int saveTotalLimit, int maxSeqLength,
        CheckpointMode checkpointing, int earlyStoppingPatience, double earlyStoppingThreshold, int checkpointEvery) {

    /**
     * The guide's warmup is "5-10% of total steps"; lora4j takes the low end as a ratio, so it scales
     * with the run. Unsloth's notebooks write it as steps instead ({@code warmup_steps = 5} with
     * {@code max_steps = 60}, 8 %).
     */
    public static final double DEFAULT_WARMUP_RATIO = 0.05;
    /**
     * Evaluations without improvement before early stopping. The guide: "enable evaluation and stop
     * when the evaluation loss increases for a few steps"; lora4j reads "a few" as 3.
     */
    public static final int DEFAULT_EARLY_STOPPING_PATIENCE = 3;
    /** Evaluations per run when eval_steps is 0: often enough for early stopping to act. */
    public static final int AUTO_EVALUATIONS = 10;

    /** torch.optim.AdamW defaults (DESIGN.md §4). */
    public static final float BETA1 = 0.9f, BETA2 = 0.999f, EPS = 1e-8f;

    public TrainConfig {
        List<String> e = new ArrayList<>();
        if (!(learningRate > 0) || Double.isInfinite(learningRate)) e.add("learning_rate must be > 0, got " + learningRate);
        if (maxSteps <= 0 && (!(numTrainEpochs > 0) || Double.isInfinite(numTrainEpochs)))
            e.add("num_train_epochs must be > 0 (or set max_steps > 0), got " + numTrainEpochs);
        if (perDeviceTrainBatchSize < 1) e.add("per_device_train_batch_size must be >= 1, got " + perDeviceTrainBatchSize);
        if (gradientAccumulationSteps < 1) e.add("gradient_accumulation_steps must be >= 1, got " + gradientAccumulationSteps);
        if (warmupSteps < 0) e.add("warmup_steps must be >= 0, got " + warmupSteps);
        if (!(warmupRatio >= 0 && warmupRatio < 1)) e.add("warmup_ratio must be in [0, 1), got " + warmupRatio);
        if (lrScheduler == null) e.add("lr_scheduler_type must be set");
        if (!(weightDecay >= 0) || Double.isInfinite(weightDecay)) e.add("weight_decay must be >= 0, got " + weightDecay);
        if (!(maxGradNorm >= 0) || Double.isInfinite(maxGradNorm)) e.add("max_grad_norm must be >= 0, got " + maxGradNorm);
        if (loggingSteps < 1) e.add("logging_steps must be >= 1, got " + loggingSteps);
        if (evalSteps < 0) e.add("eval_steps must be >= 0, got " + evalSteps);
        if (saveSteps < 0) e.add("save_steps must be >= 0, got " + saveSteps);
        if (saveTotalLimit < 0) e.add("save_total_limit must be >= 0, got " + saveTotalLimit);
        if (maxSeqLength < 2) e.add("max_seq_length must be >= 2, got " + maxSeqLength);
        if (checkpointing == null) e.add("use_gradient_checkpointing must be false, true, unsloth or chunked");
        if (checkpointEvery < 0) e.add("checkpoint_every must be >= 1 (0: the lowest-peak group size), got " + checkpointEvery);
        else if (checkpointEvery > 0 && checkpointing != null && checkpointing != CheckpointMode.CHUNKED)
            e.add("checkpoint_every applies only to use_gradient_checkpointing: chunked, not " + checkpointing.name().toLowerCase(java.util.Locale.ROOT));
        if (earlyStoppingPatience < 0) e.add("early_stopping_patience must be >= 0, got " + earlyStoppingPatience);
        if (!(earlyStoppingThreshold >= 0)) e.add("early_stopping_threshold must be >= 0, got " + earlyStoppingThreshold);
        if (!e.isEmpty()) throw new IllegalArgumentException("invalid training config: " + String.join("; ", e));
    }

    /** The settings without checkpoint_every (0: the lowest-peak group size for chunked checkpointing). */
    public TrainConfig(double learningRate, double numTrainEpochs, long maxSteps, int perDeviceTrainBatchSize,
            int gradientAccumulationSteps, long warmupSteps, double warmupRatio, LrSchedule lrScheduler, double weightDecay,
            double maxGradNorm, long seed, int loggingSteps, int evalSteps, int saveSteps, int saveTotalLimit, int maxSeqLength,
            CheckpointMode checkpointing, int earlyStoppingPatience, double earlyStoppingThreshold) {
        this(learningRate, numTrainEpochs, maxSteps, perDeviceTrainBatchSize, gradientAccumulationSteps, warmupSteps, warmupRatio,
                lrScheduler, weightDecay, maxGradNorm, seed, loggingSteps, evalSteps, saveSteps, saveTotalLimit, maxSeqLength,
                checkpointing, earlyStoppingPatience, earlyStoppingThreshold, 0);
    }

    /** The guide's defaults. */
    public static TrainConfig defaults() {
        return new TrainConfig(2e-4, 1, -1, 2, 8, 0, DEFAULT_WARMUP_RATIO, LrSchedule.LINEAR, 0.01, 1.0, 3407, 1, 0, 0, 0, 2048,
                CheckpointMode.UNSLOTH, DEFAULT_EARLY_STOPPING_PATIENCE, 0, 0);
    }

    /**
     * Steps between evaluations in a run of {@code total} steps: eval_steps when &gt; 0, else
     * ceil(total / {@value #AUTO_EVALUATIONS}) (the last step is always evaluated too).
     */
    public long evalEvery(long total) {
        return evalSteps > 0 ? evalSteps : Math.max(1, (total + AUTO_EVALUATIONS - 1) / AUTO_EVALUATIONS);
    }

    /** Optimizer steps per epoch over {@code rows} rows: ceil(rows / (batch × GA)), as HF. */
    public long stepsPerEpoch(long rows) {
        long perStep = (long) perDeviceTrainBatchSize * gradientAccumulationSteps;
        return Math.max(1, (rows + perStep - 1) / perStep);
    }

    /** Total optimizer steps: max_steps when &gt; 0, else ceil(epochs × steps per epoch). */
    public long totalSteps(long rows) {
        return maxSteps > 0 ? maxSteps : (long) Math.ceil(numTrainEpochs * stepsPerEpoch(rows));
    }

    public TrainConfig withBatch(int batch, int ga) {
        return new TrainConfig(learningRate, numTrainEpochs, maxSteps, batch, ga, warmupSteps, warmupRatio, lrScheduler, weightDecay,
                maxGradNorm, seed, loggingSteps, evalSteps, saveSteps, saveTotalLimit, maxSeqLength, checkpointing,
                earlyStoppingPatience, earlyStoppingThreshold, checkpointEvery);
    }

    public TrainConfig withSchedule(double lr, long warmup, LrSchedule s, double wd, double clip, long steps) {
        return new TrainConfig(lr, numTrainEpochs, steps, perDeviceTrainBatchSize, gradientAccumulationSteps, warmup, warmupRatio, s, wd,
                clip, seed, loggingSteps, evalSteps, saveSteps, saveTotalLimit, maxSeqLength, checkpointing,
                earlyStoppingPatience, earlyStoppingThreshold, checkpointEvery);
    }

    /** The same settings with checkpointing {@code m}; checkpoint_every is reset to 0 unless {@code m} is CHUNKED. */
    public TrainConfig withCheckpointing(CheckpointMode m) {
        return withCheckpointing(m, m == CheckpointMode.CHUNKED ? checkpointEvery : 0);
    }

    /** The same settings with checkpointing {@code m} and checkpoint_every {@code every}. */
    public TrainConfig withCheckpointing(CheckpointMode m, int every) {
        return new TrainConfig(learningRate, numTrainEpochs, maxSteps, perDeviceTrainBatchSize, gradientAccumulationSteps, warmupSteps,
                warmupRatio, lrScheduler, weightDecay, maxGradNorm, seed, loggingSteps, evalSteps, saveSteps, saveTotalLimit,
                maxSeqLength, m, earlyStoppingPatience, earlyStoppingThreshold, every);
    }
}
