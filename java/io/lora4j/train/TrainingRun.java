package io.lora4j.train;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.FormatException;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import java.util.function.BooleanSupplier;

/**
 * One fine-tuning run end to end: load the base (dense or NF4), attach LoRA, read the data, run the
 * optimizer steps with logging, evaluation, checkpoints and early stopping, then write the PEFT
 * adapter and {@value #METRICS} into the output directory. Progress lines go to the given stream.
 *
 * <h2>Resuming and crash safety</h2>
 * Every save_steps step, and at the end, a full checkpoint ({@link TrainingCheckpoint}: adapter,
 * AdamW moments, loop state, manifest) is written atomically into {@code checkpoint-N}. A run
 * resumed from it ({@link Options#resume}) finishes with the same adapter bytes as one that was
 * never stopped: the step counters, data position (epoch, window), dropout seeds (a function of
 * seed and step), schedule and early-stopping state all come back. The output directory is locked
 * ({@link RunLock}) while a run writes into it. The caller can ask the run to stop
 * ({@link Options#stopRequested}, polled after every step): it checkpoints and returns
 * {@link Status#INTERRUPTED}; library code never exits the process.
 *
 * <p>A step whose loss or gradient is not finite is skipped ({@link Trainer}); after
 * {@link Options#maxBadSteps} consecutive skipped steps the run stops ({@link Status#DIVERGED})
 * with a checkpoint of the last good state and a message naming the likely cause.
 *
 * <h2>Stages</h2>
 * As torchtune splits a recipe: {@link RunSetup} (directory and lock, backend, tokenizer, model,
 * adapter, data, the resumed checkpoint and its fingerprint), {@link TrainingLoop} (the steps,
 * logging {@link MetricsRow}s through {@link MetricsLog}, evaluation, checkpoints),
 * {@link EarlyStopping} and {@link DivergenceReport}. A data-parallel run plugs in through
 * {@link Options#parallel} ({@link DataParallel}: the shard of windows, the sums over ranks
 * before each optimizer step, which rank writes the outputs).
 */
public final class TrainingRun {
    public static final String METRICS = "metrics.jsonl";
    /** Consecutive skipped steps after which a run stops (the CLI's --max-bad-steps default). */
    public static final int DEFAULT_MAX_BAD_STEPS = 5;
    private static final TrainingListener NO_LISTENER = new TrainingListener() {};

    private TrainingRun() {}

    /** How a run ended. */
    public enum Status {
        /** All steps done. */
        COMPLETED,
        /** Early stopping ended it (eval loss stopped improving). */
        EARLY_STOPPED,
        /** {@link Options#stopRequested} asked it to stop; a checkpoint was written. */
        INTERRUPTED,
        /** Too many consecutive steps had a non-finite loss or gradient; the last good state was checkpointed. */
        DIVERGED
    }

    /**
     * What the run did.
     *
     * @param steps       optimizer steps taken, counting those of a resumed run's earlier sessions
     * @param losses      the loss of every step (NaN for a skipped step)
     * @param initialEval the eval loss of the base model before the first step, or NaN
     * @param finalEval   the last eval loss, or NaN without an eval set
     * @param status      how it ended
     * @param checkpoint  the last checkpoint written (null when none was)
     * @param message     one line on how it ended
     */
    public record Summary(long steps, List<Double> losses, double initialEval, double finalEval, Status status, Path checkpoint,
            String message) {
        /** Whether early stopping ended the run. */
        public boolean stoppedEarly() {
            return status == Status.EARLY_STOPPED;
        }
    }

    /**
     * How to run.
     *
     * @param overwrite     replace a non-empty output directory (not with resume)
     * @param resume        null for a new run, else a previous run's output directory (its newest
     *                      valid checkpoint is used) or one of its checkpoint-N directories
     * @param maxBadSteps   consecutive skipped (non-finite) steps that stop the run, ≥ 1
     * @param stopRequested polled after every step: true makes the run checkpoint and return
     *                      {@link Status#INTERRUPTED}
     * @param listener      observes the run
     * @param parallel      this process's part in a data-parallel run ({@link DataParallel#single()}: alone)
     */
    public record Options(boolean overwrite, Path resume, int maxBadSteps, BooleanSupplier stopRequested, TrainingListener listener,
            DataParallel parallel) {
        public Options {
            if (maxBadSteps < 1) throw new IllegalArgumentException("max bad steps must be >= 1, got " + maxBadSteps);
            if (overwrite && resume != null) throw new IllegalArgumentException("overwrite and resume exclude each other");
            Objects.requireNonNull(stopRequested, "stopRequested");
            Objects.requireNonNull(listener, "listener");
            Objects.requireNonNull(parallel, "parallel");
        }

        public static Options defaults() {
            return new Options(false, null, DEFAULT_MAX_BAD_STEPS, () -> false, NO_LISTENER, DataParallel.single());
        }

        public Options withOverwrite(boolean o) {
            return new Options(o, resume, maxBadSteps, stopRequested, listener, parallel);
        }

        public Options withResume(Path dir) {
            return new Options(overwrite, dir, maxBadSteps, stopRequested, listener, parallel);
        }

        public Options withMaxBadSteps(int n) {
            return new Options(overwrite, resume, n, stopRequested, listener, parallel);
        }

        public Options withStopRequested(BooleanSupplier s) {
            return new Options(overwrite, resume, maxBadSteps, s, listener, parallel);
        }

        public Options withListener(TrainingListener l) {
            return new Options(overwrite, resume, maxBadSteps, stopRequested, l, parallel);
        }

        public Options withParallel(DataParallel p) {
            return new Options(overwrite, resume, maxBadSteps, stopRequested, listener, p);
        }
    }

    /**
     * Runs {@code cfg}, writing into {@code out}.
     *
     * @throws FormatException for unreadable inputs or a non-empty {@code out} without overwrite
     */
    public static Summary run(RunConfig cfg, Path out, boolean overwrite, PrintStream log) throws IOException {
        return run(cfg, out, overwrite, log, NO_LISTENER);
    }

    /** {@link #run(RunConfig, Path, boolean, PrintStream)} observed by {@code listener}. */
    public static Summary run(RunConfig cfg, Path out, boolean overwrite, PrintStream log, TrainingListener listener) throws IOException {
        return run(cfg, out, log, Options.defaults().withOverwrite(overwrite).withListener(listener));
    }

    /**
     * Runs or resumes {@code cfg}.
     *
     * @param out the output directory; with {@link Options#resume} it may be null (the resumed
     *            run's directory is used) and must otherwise name that directory
     * @throws FormatException          for unreadable inputs, a non-empty {@code out} without
     *                                  overwrite, a directory another run holds, no valid checkpoint
     *                                  to resume, or a checkpoint made with settings that train
     *                                  differently (naming them)
     * @throws IllegalArgumentException for a device that is not available
     */
    public static Summary run(RunConfig cfg, Path out, PrintStream log, Options o) throws IOException {
        Path dir = RunSetup.directory(out, o);
        // Of a data-parallel run only the writing rank (0) creates, locks and checks the directory:
        // the others write nothing there, and would otherwise find it locked by rank 0.
        boolean writes = o.parallel().writesOutputs();
        boolean created = writes && !Files.exists(dir);
        if (writes) Files.createDirectories(dir);
        boolean ok = false;
        try (RunLock lock = writes ? RunLock.acquire(dir) : null) {
            if (writes) RunSetup.checkEmpty(dir, o);
            Summary s;
            try (RunSetup setup = RunSetup.open(cfg, dir, log, o)) {
                s = new TrainingLoop(setup, log, o).run();
            }
            ok = true;
            return s;
        } finally {
            if (!ok && created && AtomicFiles.isEmptyDirectory(dir)) Files.deleteIfExists(dir);
        }
    }

    /** Token-mean loss of {@code rows} (no dropout, no gradients). */
    public static double evaluate(LoraTrainingModel model, List<Example> rows, int batch) {
        return evaluate(model, SimpleDataset.batches(rows, batch));
    }

    /** Token-mean loss over {@code batches} (no dropout, no gradients). */
    public static double evaluate(LoraTrainingModel model, List<Batch> batches) {
        double sum = 0;
        long n = 0;
        for (Batch b : batches) {
            sum += model.lossSum(b);
            n += b.targetTokens();
        }
        return sum / n;
    }
}
