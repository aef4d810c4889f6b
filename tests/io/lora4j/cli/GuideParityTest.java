package io.lora4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.train.TinyRun;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * doctor and train agree: a run prints every WARNING-level finding doctor has for its config (epochs
 * reached through max_steps, weight decay, alpha, learning rate), and the run monitor's signals land
 * in metrics.jsonl, where {@code doctor --run} explains them.
 */
class GuideParityTest {
    @TempDir
    Path dir;

    @Test
    void trainWarnsAboutWhatDoctorWarnsAboutAndDoctorExplainsTheRun() throws Exception {
        // 12 rows, batch 4 x GA 3: one step per epoch over the same rows, so with lr 1e-6 the loss
        // cannot move: 40 steps = 40 epochs, alpha/r 0.5, weight_decay 0.5, lr below 5e-6
        Path yaml = TinyRun.write(dir.resolve("assets"), "r: 4\nlora_alpha: 2\nweight_decay: 0.5\nmax_steps: 40\nlearning_rate: 1e-6\n"
                + "per_device_train_batch_size: 4\ngradient_accumulation_steps: 3\nmax_seq_length: 64\nearly_stopping_patience: 0\n"
                + "eval_steps: 4\ndevice: cpu\n");
        CliRun.Result doctor = CliRun.run("doctor", "--config", yaml.toString(), "--json");
        assertEquals(DoctorCommand.ADVICE, doctor.code(), doctor.err());
        List<String> warnings = new ArrayList<>(), rules = new ArrayList<>();
        for (JsonElement e : JsonParser.parseString(doctor.out()).getAsJsonArray()) {
            JsonObject f = e.getAsJsonObject();
            if (f.get("severity").getAsString().equals("warning")) {
                warnings.add(f.get("found").getAsString());
                rules.add(f.get("rule").getAsString());
            }
        }
        assertEquals(List.of("learning-rate", "epochs", "alpha-rank", "weight-decay"), rules, doctor.out());
        assertTrue(warnings.contains("max_steps 40 over 12 rows is 40.0 epochs (more than 3)"), warnings.toString());

        Path out = dir.resolve("run");
        CliRun.Result train = CliRun.run("train", "--config", yaml.toString(), "--out", out.toString());
        assertEquals(0, train.code(), train.err());
        for (String w : warnings) assertTrue(train.err().contains("lora4j: warning: " + w), "train says '" + w + "':\n" + train.err());

        List<String> signals = new ArrayList<>();
        for (String line : Files.readAllLines(out.resolve("metrics.jsonl"))) {
            JsonObject row = JsonParser.parseString(line).getAsJsonObject();
            if (row.has("event")) {
                assertEquals("underfitting", row.get("event").getAsString(), line);
                assertTrue(row.get("remedies").getAsJsonArray().size() == 5, line);
                signals.add(row.get("signal").getAsString());
            }
        }
        assertTrue(signals.contains("loss-flat"), signals + "\n" + train.err());
        assertTrue(train.err().contains("barely moves after the warmup") && train.err().contains("1. raise learning_rate (now 1e-6"), train.err());

        CliRun.Result explain = CliRun.run("doctor", "--run", out.toString());
        assertEquals(DoctorCommand.ADVICE, explain.code(), explain.out() + explain.err());
        assertTrue(explain.out().contains("underfitting: train loss barely moves") && explain.out().contains("remedies, most specific first"),
                explain.out());
    }

    /** A run without event rows (an older metrics.jsonl) is replayed through the monitor. */
    @Test
    void doctorRunReplaysMetricsWithoutEvents() throws Exception {
        Path run = Files.createDirectories(dir.resolve("old"));
        StringBuilder m = new StringBuilder("{\"step\":0,\"epoch\":0.0,\"eval_loss\":2.0}\n");
        double[] evals = {1.5, 1.4, 1.45, 1.5, 1.6};
        for (int s = 1; s <= 10; s++) {
            m.append(String.format(java.util.Locale.ROOT, "{\"step\":%d,\"loss\":%.3f,\"learning_rate\":%s,\"grad_norm\":1.0%s}%n", s, 2.0 - 0.15 * s,
                    s == 1 ? "1e-4" : String.valueOf(2e-4 * (11 - s) / 10), s % 2 == 0 ? ",\"eval_loss\":" + evals[s / 2 - 1] : ""));
        }
        Files.writeString(run.resolve("metrics.jsonl"), m);
        CliRun.Result r = CliRun.run("doctor", "--run", run.toString());
        assertEquals(DoctorCommand.ADVICE, r.code(), r.out() + r.err());
        assertTrue(r.out().contains("eval loss 2.0000 -> 1.6000 (best 1.4000 at step 4)"), r.out());
        assertTrue(r.out().contains("overfitting: eval loss rose at 2 consecutive evaluations") && r.out().contains("1. evaluation early stopping"),
                r.out());
        assertEquals(DoctorCommand.ADVICE, CliRun.run("doctor", "--run", run.toString(), "--json").code(), "--json alone needs no config");
        Files.writeString(run.resolve("metrics.jsonl"), "{\"step\":1,\"loss\":2.0}\nnot json\n");
        CliRun.Result bad = CliRun.run("doctor", "--run", run.toString());
        assertTrue(bad.code() != 0 && bad.err().contains("metrics.jsonl") && bad.err().contains("line 2"), bad.err());
    }
}
