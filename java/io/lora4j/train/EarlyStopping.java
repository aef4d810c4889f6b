package io.lora4j.train;

import java.util.Locale;
import java.util.Optional;

/**
 * HF's {@code EarlyStoppingCallback}: an evaluation improves when its loss is below the best so
 * far by more than early_stopping_threshold; after early_stopping_patience evaluations in a row
 * without improvement the run stops (patience 0: never). Its state (best loss, evaluations since)
 * lives in {@link TrainingState}, so that a resumed run stops where the uninterrupted one would.
 */
final class EarlyStopping {
    private final double threshold;
    private final int patience;

    EarlyStopping(TrainConfig tc) {
        this.threshold = tc.earlyStoppingThreshold();
        this.patience = tc.earlyStoppingPatience();
    }

    /**
     * Records the evaluation at {@code step} in {@code state}.
     *
     * @return the line saying why the run stops here, or empty to go on (never at the last step:
     *         the run ends there anyway)
     */
    Optional<String> onEval(TrainingState state, long step, double evalLoss, long total) {
        if (evalLoss < state.bestEval - threshold) {
            state.bestEval = evalLoss;
            state.badEvals = 0;
        } else if (patience > 0 && ++state.badEvals >= patience && step < total) {
            return Optional.of(String.format(Locale.ROOT, "early stopping at step %d: eval_loss did not improve by more than %s for %d evaluations",
                    step, plain(threshold), state.badEvals));
        }
        return Optional.empty();
    }

    /** 0.01 as "0.01" and 2.0 as "2", as the user wrote them. */
    static String plain(double d) {
        return d == Math.rint(d) ? Long.toString((long) d) : Double.toString(d);
    }
}
