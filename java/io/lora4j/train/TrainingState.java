package io.lora4j.train;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import io.lora4j.io.FormatException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Everything of a {@link TrainingRun}'s loop that a resumed run needs to finish exactly as an
 * uninterrupted one, besides the tensors (adapter and AdamW moments): the step counters, the data
 * position, the early-stopping state, the logging accumulators and the loss history. Written as
 * {@value #FILE} in every checkpoint (HF keeps a file of that name; ours has its own keys).
 *
 * <p>Mutable: the loop updates one instance and checkpoints write {@link #toJson()} of it.
 */
final class TrainingState {
    static final String FILE = "trainer_state.json";
    /** Version of the layout below; a checkpoint of another version is refused, not guessed at. */
    static final int FORMAT = 1;

    /** A skipped step of the current run of consecutive bad steps, with the training-row indices of its window. */
    record BadStep(long step, double loss, double gradNorm, int[] rows) {}

    /** Optimizer steps taken (windows consumed) and AdamW updates applied. */
    long step, updates;
    long totalSteps;
    /** The next window to train: index {@code window} of epoch {@code epoch}'s windows (may equal their count: the epoch is done). */
    int epoch, window;
    /** Per step 1..step: the train loss and gradient norm (NaN loss for a skipped step). */
    final List<Double> losses = new ArrayList<>(), gradNorms = new ArrayList<>();
    /** Evaluations as (step, eval loss), step 0 being the base model. */
    final List<double[]> evals = new ArrayList<>();
    double initialEval = Double.NaN, lastEval = Double.NaN, bestEval = Double.POSITIVE_INFINITY;
    /** Evaluations since the best one (early stopping). */
    int badEvals;
    /** The current run of consecutive skipped steps (empty after a good step). */
    final List<BadStep> badSteps = new ArrayList<>();
    /** Sums since the last logged row (logging_steps > 1). */
    double logLoss, logSeconds;
    long logTokens;
    int logCount;
    /** Training wall time of all sessions so far (seconds). */
    double runtimeSeconds;
    /** The run ended normally or by early stopping: a resume only writes the final outputs again. */
    boolean finished;
    /** What the run's settings were (see {@link RunFingerprint}). */
    Map<String, String> fingerprint = Map.of();

    TrainingState copy() {
        TrainingState c = new TrainingState();
        c.step = step;
        c.updates = updates;
        c.totalSteps = totalSteps;
        c.epoch = epoch;
        c.window = window;
        c.losses.addAll(losses);
        c.gradNorms.addAll(gradNorms);
        for (double[] e : evals) c.evals.add(e.clone());
        c.initialEval = initialEval;
        c.lastEval = lastEval;
        c.bestEval = bestEval;
        c.badEvals = badEvals;
        c.badSteps.addAll(badSteps);
        c.logLoss = logLoss;
        c.logSeconds = logSeconds;
        c.logTokens = logTokens;
        c.logCount = logCount;
        c.runtimeSeconds = runtimeSeconds;
        c.finished = finished;
        c.fingerprint = fingerprint;
        return c;
    }

    /** Mean loss of the steps that were not skipped, or NaN. */
    double meanLoss() {
        double s = 0;
        int n = 0;
        for (double l : losses) {
            if (Double.isFinite(l)) {
                s += l;
                n++;
            }
        }
        return n == 0 ? Double.NaN : s / n;
    }

    String toJson() {
        JsonObject o = new JsonObject();
        o.addProperty("format", "lora4j-trainer-state");
        o.addProperty("version", FORMAT);
        o.addProperty("global_step", step);
        o.addProperty("optimizer_updates", updates);
        o.addProperty("max_steps", totalSteps);
        o.addProperty("epoch_index", epoch);
        o.addProperty("window_in_epoch", window);
        o.add("losses", array(losses));
        o.add("grad_norms", array(gradNorms));
        JsonArray ev = new JsonArray();
        for (double[] e : evals) {
            JsonObject x = new JsonObject();
            x.addProperty("step", (long) e[0]);
            x.add("eval_loss", num(e[1]));
            ev.add(x);
        }
        o.add("eval_history", ev);
        o.add("initial_eval_loss", num(initialEval));
        o.add("last_eval_loss", num(lastEval));
        o.add("best_eval_loss", num(bestEval));
        o.addProperty("early_stopping_bad_evals", badEvals);
        JsonArray bad = new JsonArray();
        for (BadStep b : badSteps) {
            JsonObject x = new JsonObject();
            x.addProperty("step", b.step());
            x.add("loss", num(b.loss()));
            x.add("grad_norm", num(b.gradNorm()));
            JsonArray rows = new JsonArray();
            for (int r : b.rows()) rows.add(r);
            x.add("row_ids", rows);
            bad.add(x);
        }
        o.add("consecutive_bad_steps", bad);
        JsonObject log = new JsonObject();
        log.addProperty("loss_sum", logLoss);
        log.addProperty("seconds", logSeconds);
        log.addProperty("tokens", logTokens);
        log.addProperty("count", logCount);
        o.add("log_accumulator", log);
        o.addProperty("train_runtime_seconds", runtimeSeconds);
        o.addProperty("finished", finished);
        JsonObject fp = new JsonObject();
        for (Map.Entry<String, String> e : fingerprint.entrySet()) fp.addProperty(e.getKey(), e.getValue());
        o.add("config_fingerprint", fp);
        return new GsonBuilder().setPrettyPrinting().serializeNulls().create().toJson(o) + "\n";
    }

    /**
     * Parses {@link #toJson()}'s output.
     *
     * @throws FormatException naming {@code file} and the bad field
     */
    static TrainingState fromJson(Path file, String json) throws FormatException {
        try {
            JsonElement root = JsonParser.parseString(json);
            if (!root.isJsonObject()) throw new FormatException(file, "expected a JSON object");
            JsonObject o = root.getAsJsonObject();
            if (!o.has("version") || o.get("version").getAsInt() != FORMAT)
                throw new FormatException(file, "trainer state version " + o.get("version") + ", this lora4j reads version " + FORMAT);
            TrainingState s = new TrainingState();
            s.step = o.get("global_step").getAsLong();
            s.updates = o.get("optimizer_updates").getAsLong();
            s.totalSteps = o.get("max_steps").getAsLong();
            s.epoch = o.get("epoch_index").getAsInt();
            s.window = o.get("window_in_epoch").getAsInt();
            for (JsonElement e : o.getAsJsonArray("losses")) s.losses.add(dbl(e));
            for (JsonElement e : o.getAsJsonArray("grad_norms")) s.gradNorms.add(dbl(e));
            for (JsonElement e : o.getAsJsonArray("eval_history")) {
                JsonObject x = e.getAsJsonObject();
                s.evals.add(new double[] {x.get("step").getAsLong(), dbl(x.get("eval_loss"))});
            }
            s.initialEval = dbl(o.get("initial_eval_loss"));
            s.lastEval = dbl(o.get("last_eval_loss"));
            s.bestEval = o.get("best_eval_loss").isJsonNull() ? Double.POSITIVE_INFINITY : o.get("best_eval_loss").getAsDouble();
            s.badEvals = o.get("early_stopping_bad_evals").getAsInt();
            for (JsonElement e : o.getAsJsonArray("consecutive_bad_steps")) {
                JsonObject x = e.getAsJsonObject();
                JsonArray rows = x.getAsJsonArray("row_ids");
                int[] r = new int[rows.size()];
                for (int i = 0; i < r.length; i++) r[i] = rows.get(i).getAsInt();
                s.badSteps.add(new BadStep(x.get("step").getAsLong(), dbl(x.get("loss")), dbl(x.get("grad_norm")), r));
            }
            JsonObject log = o.getAsJsonObject("log_accumulator");
            s.logLoss = log.get("loss_sum").getAsDouble();
            s.logSeconds = log.get("seconds").getAsDouble();
            s.logTokens = log.get("tokens").getAsLong();
            s.logCount = log.get("count").getAsInt();
            s.runtimeSeconds = o.get("train_runtime_seconds").getAsDouble();
            s.finished = o.get("finished").getAsBoolean();
            Map<String, String> fp = new LinkedHashMap<>();
            for (Map.Entry<String, JsonElement> e : o.getAsJsonObject("config_fingerprint").entrySet()) fp.put(e.getKey(), e.getValue().getAsString());
            s.fingerprint = fp;
            if (s.step < 0 || s.step > s.totalSteps || s.updates > s.step || s.losses.size() != s.step || s.gradNorms.size() != s.step
                    || s.epoch < 0 || s.window < 0)
                throw new FormatException(file, "inconsistent: step " + s.step + " of " + s.totalSteps + ", " + s.updates + " updates, "
                        + s.losses.size() + " losses, epoch " + s.epoch + " window " + s.window);
            return s;
        } catch (JsonParseException | IllegalStateException | NullPointerException | ClassCastException | UnsupportedOperationException
                | NumberFormatException e) {
            throw new FormatException(file, "not a lora4j trainer state: " + e.getMessage());
        }
    }

    /** Non-finite values are written as null (strict JSON) and read back as NaN. */
    private static JsonElement num(double d) {
        return Double.isFinite(d) ? new JsonPrimitive(d) : JsonNull.INSTANCE;
    }

    private static double dbl(JsonElement e) {
        return e == null || e.isJsonNull() ? Double.NaN : e.getAsDouble();
    }

    private static JsonArray array(List<Double> v) {
        JsonArray a = new JsonArray();
        for (double d : v) a.add(num(d));
        return a;
    }
}
