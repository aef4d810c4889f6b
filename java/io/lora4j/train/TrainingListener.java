package io.lora4j.train;

import com.google.gson.JsonObject;
import io.lora4j.data.DataStats;
import java.nio.file.Path;
import java.util.List;

/**
 * Observes a {@link TrainingRun}: progress display, the guide's run-time warnings, charts. Every
 * method has an empty default; listeners never change the run. Called on the training thread.
 */
public interface TrainingListener {
    /**
     * Before the first step (also after a resume).
     *
     * @param startStep  optimizer steps already done (0 for a fresh run)
     * @param totalSteps optimizer steps of the whole run
     */
    default void onStart(long startStep, long totalSteps) {}

    /**
     * Before {@link #onStart}: what the data pipeline read, and the optimizer steps per epoch it gives.
     */
    default void onData(DataStats stats, long stepsPerEpoch) {}

    /** Before {@link #onStart}: where the listener may write event rows into metrics.jsonl (each with a "step"). */
    default void onEventLog(EventLog log) {}

    /** Appends one row to the run's metrics.jsonl. */
    @FunctionalInterface
    interface EventLog {
        void write(JsonObject row);
    }

    /**
     * After each optimizer step.
     *
     * @param step            1-based optimizer step just taken
     * @param totalSteps      optimizer steps of the whole run
     * @param loss            the step's token-mean train loss (nats), NaN for a skipped step
     * @param learningRate    the rate the step used
     * @param gradNorm        global gradient norm before clipping
     * @param tokensPerSecond input positions per second of the step
     */
    default void onStep(long step, long totalSteps, double loss, double learningRate, double gradNorm, double tokensPerSecond) {}

    /** After an evaluation at {@code step} (0: the base model, before training). */
    default void onEval(long step, double evalLoss) {}

    /** After the adapter and metrics are written into {@code outDir}. */
    default void onEnd(long steps, Path outDir) {}

    /**
     * Whether this listener draws per-step progress itself (a terminal progress bar), so that the
     * run should not also print a plain log line per step.
     */
    default boolean drawsProgress() { return false; }

    /**
     * One listener that calls each of {@code listeners} in order; it draws progress when any of
     * them does.
     */
    static TrainingListener all(TrainingListener... listeners) {
        List<TrainingListener> ls = List.of(listeners);
        return new TrainingListener() {
            @Override public void onStart(long startStep, long totalSteps) {
                for (TrainingListener l : ls) l.onStart(startStep, totalSteps);
            }

            @Override public void onData(DataStats stats, long stepsPerEpoch) {
                for (TrainingListener l : ls) l.onData(stats, stepsPerEpoch);
            }

            @Override public void onEventLog(EventLog log) {
                for (TrainingListener l : ls) l.onEventLog(log);
            }

            @Override public void onStep(long step, long totalSteps, double loss, double lr, double gradNorm, double tps) {
                for (TrainingListener l : ls) l.onStep(step, totalSteps, loss, lr, gradNorm, tps);
            }

            @Override public void onEval(long step, double evalLoss) {
                for (TrainingListener l : ls) l.onEval(step, evalLoss);
            }

            @Override public void onEnd(long steps, Path outDir) {
                for (TrainingListener l : ls) l.onEnd(steps, outDir);
            }

            @Override public boolean drawsProgress() {
                return ls.stream().anyMatch(TrainingListener::drawsProgress);
            }
        };
    }
}
