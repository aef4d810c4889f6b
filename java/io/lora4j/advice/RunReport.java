package io.lora4j.advice;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import io.lora4j.io.FormatException;
import io.lora4j.io.TextFiles;
import io.lora4j.train.RunConfig;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Explains a finished (or stopped) run from its metrics.jsonl, for {@code lora4j doctor --run DIR}:
 * the loss and eval curve in a few numbers, then the overfitting and underfitting signals the
 * {@link TrainingMonitor} wrote as event rows. A run without event rows (an older lora4j) is
 * replayed through a monitor, row by row, to find them.
 *
 * @param text    what to print
 * @param signals the signals found (event "signal" names), in order
 */
public record RunReport(String text, List<String> signals) {
    public static final String METRICS = "metrics.jsonl";

    /**
     * Reads {@code dir}/metrics.jsonl; {@code config} (may be null) gives the remedies the run's values.
     *
     * @throws FormatException when the file is missing or a line is not a JSON object
     */
    public static RunReport explain(Path dir, RunConfig config) throws IOException {
        Path file = dir.resolve(METRICS);
        if (!Files.isRegularFile(file)) throw new FormatException(file, "not found: give a run's output directory");
        List<JsonObject> rows = new ArrayList<>();
        int n = 0;
        for (String line : TextFiles.readUtf8(file).split("\n", -1)) {
            n++;
            if (line.isBlank()) continue;
            try {
                JsonElement e = JsonParser.parseString(line);
                if (!e.isJsonObject()) throw new FormatException(file, "line " + n + " is not a JSON object");
                rows.add(e.getAsJsonObject());
            } catch (JsonParseException e) {
                throw new FormatException(file, "line " + n + " is not JSON: " + e.getMessage());
            }
        }
        StringBuilder sb = new StringBuilder();
        long lastStep = 0;
        double firstLoss = Double.NaN, lastLoss = Double.NaN, baseEval = Double.NaN, lastEval = Double.NaN, bestEval = Double.NaN;
        long bestStep = -1;
        List<JsonObject> events = new ArrayList<>();
        for (JsonObject r : rows) {
            if (r.has("event")) {
                events.add(r);
                continue;
            }
            if (!r.has("step")) continue;
            long step = r.get("step").getAsLong();
            lastStep = Math.max(lastStep, step);
            if (r.has("loss") && !r.has("skipped")) {
                double l = r.get("loss").getAsDouble();
                if (Double.isNaN(firstLoss)) firstLoss = l;
                lastLoss = l;
            }
            if (r.has("eval_loss")) {
                double e = r.get("eval_loss").getAsDouble();
                if (step == 0) baseEval = e;
                lastEval = e;
                if (Double.isNaN(bestEval) || e < bestEval) {
                    bestEval = e;
                    bestStep = step;
                }
            }
        }
        sb.append(String.format(Locale.ROOT, "run %s: %d steps, train loss %.4f -> %.4f", dir, lastStep, firstLoss, lastLoss));
        if (!Double.isNaN(lastEval))
            sb.append(String.format(Locale.ROOT, ", eval loss %s -> %.4f (best %.4f at step %d)",
                    Double.isNaN(baseEval) ? "?" : String.format(Locale.ROOT, "%.4f", baseEval), lastEval, bestEval, bestStep));
        else
            sb.append(", no eval loss (no eval set: overfitting cannot be seen; eval_split: auto or eval_dataset)");
        sb.append('\n');
        List<String> signals = new ArrayList<>();
        if (events.isEmpty()) events = replay(rows, config, lastStep);
        if (events.isEmpty()) {
            sb.append("no overfitting or underfitting signal (guide: Avoiding Overfitting & Underfitting)\n");
        } else {
            for (JsonObject e : events) {
                signals.add(e.get("signal").getAsString());
                sb.append(String.format(Locale.ROOT, "step %d: %s: %s%n  remedies, most specific first:%n", e.get("step").getAsLong(),
                        e.get("event").getAsString(), e.get("message").getAsString()));
                int i = 1;
                for (JsonElement x : e.getAsJsonArray("remedies")) sb.append("    ").append(i++).append(". ").append(x.getAsString()).append('\n');
            }
        }
        return new RunReport(sb.toString(), List.copyOf(signals));
    }

    /** The events a monitor finds when the rows are played through it. */
    private static List<JsonObject> replay(List<JsonObject> rows, RunConfig config, long total) {
        List<JsonObject> found = new ArrayList<>();
        PrintStream sink = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
        TrainingMonitor m = new TrainingMonitor(sink, null);
        if (config != null) m = new TrainingMonitor(sink, config, GuideRules.DatasetFacts.unknown(), TrainingMonitor.DEFAULT_RISING_EVALS);
        m.onEventLog(found::add);
        m.onStart(0, total);
        for (JsonObject r : rows) {
            if (!r.has("step") || r.has("event")) continue;
            long step = r.get("step").getAsLong();
            if (r.has("loss") && !r.has("skipped"))
                m.onStep(step, total, r.get("loss").getAsDouble(), num(r, "learning_rate"), num(r, "grad_norm"), num(r, "tokens_per_second"));
            if (r.has("eval_loss")) m.onEval(step, r.get("eval_loss").getAsDouble());
        }
        return found;
    }

    private static double num(JsonObject r, String k) {
        return r.has(k) ? r.get(k).getAsDouble() : Double.NaN;
    }
}
