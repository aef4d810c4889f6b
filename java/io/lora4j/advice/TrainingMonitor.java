package io.lora4j.advice;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import io.lora4j.advice.Remedies.Signal;
import io.lora4j.data.DataStats;
import io.lora4j.train.RunConfig;
import io.lora4j.train.TrainingListener;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * Watches a run the way the guide's "Avoiding Overfitting &amp; Underfitting" section says to, and
 * prints each signal once with all of the guide's remedies, most specific first ({@link Remedies}):
 * <ul>
 *   <li>at the start, every WARNING-level rule {@code doctor} has for the config, from the run's own
 *       data facts ({@link GuideRules#startWarnings});</li>
 *   <li>overfitting: a train loss below 0.2; eval loss rising at {@code k} consecutive evaluations
 *       while the train loss falls;</li>
 *   <li>underfitting: a train loss that barely moves after the warmup; train and eval loss flat over
 *       the last 3 evaluations while the eval loss is still near the base model's; a gradient norm that collapses while the loss
 *       stays above 0.2.</li>
 * </ul>
 * Each signal is also written to metrics.jsonl as an event row ({@link #onEventLog}), so that
 * {@code lora4j doctor --run DIR} can explain a finished run. The thresholds of the underfitting
 * signals are lora4j's: the guide names the symptoms, not numbers.
 */
public final class TrainingMonitor implements TrainingListener {
    /**
     * The guide: "If your training loss drops below 0.2, your model is likely overfitting"
     * (Avoiding Overfitting &amp; Underfitting).
     */
    public static final double OVERFIT_LOSS = 0.2;
    /** Consecutive rising evaluations before the eval-loss warning, by default. */
    public static final int DEFAULT_RISING_EVALS = 2;
    /** "Barely moving": the mean train loss of the latest window fell less than 1 % below the first window after warmup. */
    public static final double FLAT_DROP = 0.01;
    /** Post-warmup steps per comparison window: a fifth of them, at least this many. */
    public static final int MIN_WINDOW = 5;
    /** "Plateau": the last two evaluations each moved less than 0.5 %. */
    public static final double PLATEAU_CHANGE = 0.005;
    /** "High": the eval loss is still within 3 % of the base model's. */
    public static final double HIGH_EVAL_DROP = 0.03;
    /** "Collapse": the recent gradient norm is below 1 % of the early post-warmup one. */
    public static final double GRAD_COLLAPSE = 0.01;

    private final PrintStream out;
    private final RunConfig config;
    private final int risingEvals;
    private final Set<String> said = new HashSet<>();
    private GuideRules.DatasetFacts facts;
    private EventLog events;
    private String adapterDir;

    private long total = -1;
    private double lastTrainLoss = Double.NaN;
    private double firstTrainLoss = Double.NaN;
    private double prevEval = Double.NaN;
    private int rising;
    /** Train loss at the evaluation before the current rising streak began. */
    private double trainAtStreakStart = Double.NaN;
    private double trainAtPrevEval = Double.NaN;
    private double prevLr = Double.NaN;
    private boolean warmedUp;
    private final List<Double> lossesAfterWarmup = new ArrayList<>();
    private final List<Double> gradsAfterWarmup = new ArrayList<>();
    private final List<Double> evals = new ArrayList<>();
    /** The train loss at each evaluation (NaN before the first step). */
    private final List<Double> trainAtEvals = new ArrayList<>();

    /** Warns on {@code out}; {@code config} may be null (then no start-time warnings and generic remedies). */
    public TrainingMonitor(PrintStream out, RunConfig config) {
        this(out, config, GuideRules.DatasetFacts.unknown(), DEFAULT_RISING_EVALS);
    }

    /**
     * @param facts       dataset facts until the run reports its own ({@link #onData}); may be unknown
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

    /** The adapter directory named in the post-training remedies (default "OUT"). */
    public TrainingMonitor withAdapterDir(String dir) {
        this.adapterDir = dir;
        return this;
    }

    private void warn(String id, String text) {
        if (said.add(id)) out.println("lora4j: warning: " + text);
    }

    /** Prints a run signal with its remedies once, and writes it to the event log. */
    private void signal(long step, Signal s, String text) {
        String id = s.name().toLowerCase(Locale.ROOT).replace('_', '-');
        if (!said.add(id)) return;
        List<String> remedies = Remedies.forSignal(config, s, adapterDir);
        String kind = s.overfitting ? "overfitting" : "underfitting";
        StringBuilder sb = new StringBuilder("lora4j: warning: ").append(text).append(" (guide: Avoiding Overfitting & Underfitting / ")
                .append(s.overfitting ? "Overfitting" : "Underfitting").append(")\n  remedies, most specific first:");
        for (int i = 0; i < remedies.size(); i++) sb.append("\n    ").append(i + 1).append(". ").append(remedies.get(i));
        out.println(sb);
        if (events != null) {
            JsonObject row = new JsonObject();
            row.addProperty("step", step);
            row.addProperty("event", kind);
            row.addProperty("signal", id);
            row.addProperty("message", text);
            JsonArray a = new JsonArray();
            for (String r : remedies) a.add(r);
            row.add("remedies", a);
            events.write(row);
        }
    }

    @Override
    public void onData(DataStats stats, long stepsPerEpoch) {
        facts = GuideRules.DatasetFacts.of(stats);
    }

    @Override
    public void onEventLog(EventLog log) {
        events = log;
    }

    @Override
    public void onStart(long startStep, long totalSteps) {
        total = totalSteps;
        if (config == null) return;
        for (GuideRules.Finding f : GuideRules.startWarnings(config, facts))
            warn(f.rule(), f.found() + "; " + f.change() + " (guide: " + f.section() + ")");
    }

    @Override
    public void onStep(long step, long totalSteps, double loss, double learningRate, double gradNorm, double tokensPerSecond) {
        total = totalSteps;
        // Warmup is over once the rate stops rising (linear, cosine and constant schedules alike).
        if (!warmedUp && !Double.isNaN(prevLr) && learningRate <= prevLr) warmedUp = true;
        prevLr = learningRate;
        if (!Double.isFinite(loss)) return;
        if (Double.isNaN(firstTrainLoss)) firstTrainLoss = loss;
        lastTrainLoss = loss;
        if (loss < OVERFIT_LOSS)
            signal(step, Signal.LOW_TRAIN_LOSS, String.format(Locale.ROOT,
                    "train loss %.4f at step %d is below 0.2: the model is likely overfitting", loss, step));
        if (!warmedUp) return;
        lossesAfterWarmup.add(loss);
        if (Double.isFinite(gradNorm)) gradsAfterWarmup.add(gradNorm);
        int k = window();
        int n = lossesAfterWarmup.size();
        if (n >= 2 * k && loss >= OVERFIT_LOSS) {
            double first = mean(lossesAfterWarmup.subList(0, k)), last = mean(lossesAfterWarmup.subList(n - k, n));
            if (last > first * (1 - FLAT_DROP))
                signal(step, Signal.LOSS_FLAT, String.format(Locale.ROOT, "train loss barely moves after the warmup: mean %.4f over the"
                        + " first %d steps after it, %.4f over the last %d (less than 1 %% lower): underfitting", first, k, last, k));
        }
        int g = gradsAfterWarmup.size();
        if (g >= MIN_WINDOW + 3 && loss >= OVERFIT_LOSS) {
            double early = median(gradsAfterWarmup.subList(0, MIN_WINDOW)), recent = median(gradsAfterWarmup.subList(g - 3, g));
            if (recent < GRAD_COLLAPSE * early)
                signal(step, Signal.GRAD_NORM_COLLAPSE, String.format(Locale.ROOT, "gradient norm collapsed from %.3g to %.3g (below 1 %%)"
                        + " while the train loss is still %.4f: the adapter has stopped learning (underfitting)", early, recent, loss));
        }
    }

    /** Post-warmup steps per comparison window. */
    private int window() {
        return (int) Math.max(MIN_WINDOW, total > 0 ? total / 5 : 0);
    }

    @Override
    public void onEval(long step, double evalLoss) {
        if (!Double.isFinite(evalLoss)) return;
        evals.add(evalLoss);
        // Step 0 (the base model) has no train loss yet: count from the first one seen.
        double trainNow = Double.isNaN(lastTrainLoss) ? firstTrainLoss : lastTrainLoss;
        trainAtEvals.add(trainNow);
        if (!Double.isNaN(prevEval) && evalLoss > prevEval) {
            if (rising == 0) trainAtStreakStart = Double.isNaN(trainAtPrevEval) ? firstTrainLoss : trainAtPrevEval;
            rising++;
            if (rising >= risingEvals && !Double.isNaN(trainNow) && !Double.isNaN(trainAtStreakStart) && trainNow < trainAtStreakStart)
                signal(step, Signal.EVAL_RISING, String.format(Locale.ROOT, "eval loss rose at %d consecutive evaluations (now %.4f at step %d)"
                        + " while the train loss fell (%.4f -> %.4f): overfitting", rising, evalLoss, step, trainAtStreakStart, trainNow));
        } else {
            rising = 0;
        }
        prevEval = evalLoss;
        trainAtPrevEval = trainNow;
        int n = evals.size();
        if (n >= 3 && step > 0) {
            double base = evals.get(0), a = evals.get(n - 3), b = evals.get(n - 2), c = evals.get(n - 1);
            boolean flat = Math.abs(b - a) < PLATEAU_CHANGE * a && Math.abs(c - b) < PLATEAU_CHANGE * b;
            // the train loss, where known, has not moved either: a fall of less than 1 % over the same evaluations
            double t0 = Double.isNaN(trainAtEvals.get(n - 3)) ? firstTrainLoss : trainAtEvals.get(n - 3), t1 = trainAtEvals.get(n - 1);
            boolean trainFlat = Double.isNaN(t0) || Double.isNaN(t1) || t1 > t0 * (1 - FLAT_DROP);
            if (flat && trainFlat && c > base * (1 - HIGH_EVAL_DROP) && c >= OVERFIT_LOSS)
                signal(step, Signal.PLATEAU_HIGH, String.format(Locale.ROOT, "train and eval loss have plateaued high: eval %.4f over the last 3"
                        + " evaluations (the base model's was %.4f, less than 3 %% lower): underfitting", c, base));
        }
    }

    private static double mean(List<Double> xs) {
        double s = 0;
        for (double x : xs) s += x;
        return s / xs.size();
    }

    private static double median(List<Double> xs) {
        double[] a = xs.stream().mapToDouble(Double::doubleValue).toArray();
        Arrays.sort(a);
        return a.length % 2 == 1 ? a[a.length / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
    }
}
