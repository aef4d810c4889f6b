package io.lora4j.advice;

import io.lora4j.train.RunConfig;
import io.lora4j.train.TrainingListener;
import java.io.PrintStream;
import java.util.HashSet;
import java.util.Locale;
import java.util.Set;

/**
 * Prints the guide's run-time warnings, each at most once per run: at the start the config
 * mistakes of {@link GuideRules#startWarnings} (alpha/r &lt; 1, learning rate outside 5e-6..2e-4,
 * more than 3 epochs); during the run a train loss below 0.2 ("likely overfitting") and an eval
 * loss that rises at {@code k} consecutive evaluations while the train loss falls (overfitting).
 */
public final class TrainingMonitor implements TrainingListener {
    /**
     * The guide: "If your training loss drops below 0.2, your model is likely overfitting"
     * (Avoiding Overfitting &amp; Underfitting).
     */
    public static final double OVERFIT_LOSS = 0.2;
    /** Consecutive rising evaluations before the eval-loss warning, by default. */
    public static final int DEFAULT_RISING_EVALS = 2;

    private final PrintStream out;
    private final RunConfig config;
    private final GuideRules.DatasetFacts facts;
    private final int risingEvals;
    private final Set<String> said = new HashSet<>();

    private double lastTrainLoss = Double.NaN;
    private double firstTrainLoss = Double.NaN;
    private double prevEval = Double.NaN;
    private int rising;
    /** Train loss at the evaluation before the current rising streak began. */
    private double trainAtStreakStart = Double.NaN;
    private double trainAtPrevEval = Double.NaN;

    /** Warns on {@code out}; {@code config} may be null (then no start-time warnings). */
    public TrainingMonitor(PrintStream out, RunConfig config) {
        this(out, config, GuideRules.DatasetFacts.unknown(), DEFAULT_RISING_EVALS);
    }

    /**
     * @param facts       dataset facts for the epoch count under max_steps (may be unknown)
     * @param risingEvals consecutive rising evaluations that trigger the overfitting warning, &ge; 1
     */
    public TrainingMonitor(PrintStream out, RunConfig config, GuideRules.DatasetFacts facts, int risingEvals) {
        if (out == null) throw new IllegalArgumentException("out is null");
        if (risingEvals < 1) throw new IllegalArgumentException("risingEvals must be >= 1, got " + risingEvals);
        this.out = out;
        this.config = config;
        this.facts = facts == null ? GuideRules.DatasetFacts.unknown() : facts;
        this.risingEvals = risingEvals;
    }

    private void warn(String id, String text) {
        if (said.add(id)) out.println("lora4j: warning: " + text);
    }

    @Override
    public void onStart(long startStep, long totalSteps) {
        if (config == null) return;
        for (GuideRules.Finding f : GuideRules.startWarnings(config, facts))
            warn(f.rule(), f.found() + "; " + f.change() + " (guide: " + f.section() + ")");
    }

    @Override
    public void onStep(long step, long totalSteps, double loss, double learningRate, double gradNorm, double tokensPerSecond) {
        if (!Double.isFinite(loss)) return;
        if (Double.isNaN(firstTrainLoss)) firstTrainLoss = loss;
        lastTrainLoss = loss;
        if (loss < OVERFIT_LOSS)
            warn("low-train-loss", String.format(Locale.ROOT, "train loss %.4f at step %d is below 0.2: the model is likely overfitting"
                    + " (guide: Avoiding Overfitting & Underfitting; fewer epochs, a lower learning rate or lora_dropout 0.1 help)", loss, step));
    }

    @Override
    public void onEval(long step, double evalLoss) {
        if (!Double.isFinite(evalLoss)) return;
        // Step 0 (the base model) has no train loss yet: count from the first one seen.
        double trainNow = Double.isNaN(lastTrainLoss) ? firstTrainLoss : lastTrainLoss;
        if (!Double.isNaN(prevEval) && evalLoss > prevEval) {
            if (rising == 0) trainAtStreakStart = Double.isNaN(trainAtPrevEval) ? firstTrainLoss : trainAtPrevEval;
            rising++;
            if (rising >= risingEvals && !Double.isNaN(trainNow) && !Double.isNaN(trainAtStreakStart) && trainNow < trainAtStreakStart)
                warn("eval-rising", String.format(Locale.ROOT, "eval loss rose at %d consecutive evaluations (now %.4f at step %d) while the"
                        + " train loss fell (%.4f -> %.4f): overfitting; stop earlier or use fewer epochs"
                        + " (guide: Avoiding Overfitting & Underfitting)", rising, evalLoss, step, trainAtStreakStart, trainNow));
        } else {
            rising = 0;
        }
        prevEval = evalLoss;
        trainAtPrevEval = trainNow;
    }
}
