package io.lora4j.advice;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import io.lora4j.data.DataStats;
import io.lora4j.data.DatasetFormat;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class TrainingMonitorTest {
    private final ByteArrayOutputStream buf = new ByteArrayOutputStream();
    private final PrintStream out = new PrintStream(buf, true, StandardCharsets.UTF_8);

    private String text() {
        return buf.toString(StandardCharsets.UTF_8);
    }

    private static int count(String s, String what) {
        return s.split(java.util.regex.Pattern.quote(what), -1).length - 1;
    }

    @Test
    void startWarningsFromTheConfig() {
        new TrainingMonitor(out, GuideRulesTest.cfg("r", 16, "lora_alpha", 8, "learning_rate", 1e-3, "num_train_epochs", 5,
                "weight_decay", 0.3)).onStart(0, 100);
        String t = text();
        assertEquals(3, count(t, "lora4j: warning: "), t);
        assertTrue(t.contains("alpha") && t.contains("weight_decay 0.3") && t.contains("num_train_epochs 5"), t);
        assertFalse(t.contains("learning_rate 0.001"), "a learning rate above 2e-4 is advice, not a warning: " + t);
    }

    /** The run's own data facts reach the start warnings: epochs through max_steps (the 1000 steps over 134 rows). */
    @Test
    void epochsThroughMaxStepsFromTheRunsData() {
        TrainingMonitor m = new TrainingMonitor(out, GuideRulesTest.cfg("max_steps", 1000));
        m.onData(new DataStats(DatasetFormat.ALPACA, "alpaca", null, 141, 0, List.of(), 134, 7, 0, 0, 0, 134, 1000, 500, null, List.of()), 9);
        m.onStart(0, 1000);
        assertTrue(text().contains("max_steps 1000 over 134 rows is 111.1 epochs"), text());
    }

    private List<JsonObject> events(TrainingMonitor m) {
        List<JsonObject> rows = new ArrayList<>();
        m.onEventLog(rows::add);
        return rows;
    }

    @Test
    void flatLossAfterWarmupIsUnderfitting() {
        TrainingMonitor m = new TrainingMonitor(out, GuideRulesTest.cfg());
        List<JsonObject> ev = events(m);
        m.onStart(0, 50);
        for (int s = 1; s <= 50; s++) m.onStep(s, 50, s <= 3 ? 3.0 - 0.1 * s : 2.5 + 0.01 * Math.sin(s), s <= 3 ? 1e-4 * s : 2e-4 * (50 - s) / 47, 1.0, 1);
        assertEquals(1, ev.size(), text());
        assertEquals("loss-flat", ev.get(0).get("signal").getAsString());
        assertEquals("underfitting", ev.get(0).get("event").getAsString());
        String t = text();
        assertTrue(t.contains("barely moves after the warmup") && t.contains("1. raise learning_rate (now 2e-4, e.g. 4e-4)"), t);
        assertTrue(t.contains("more epochs: num_train_epochs 2") && t.contains("raise r and lora_alpha: r 32") && t.contains("per_device_train_batch_size 1"), t);
    }

    @Test
    void aLearningRunIsNotFlat() {
        TrainingMonitor m = new TrainingMonitor(out, GuideRulesTest.cfg());
        m.onStart(0, 50);
        for (int s = 1; s <= 50; s++) m.onStep(s, 50, 3.0 * Math.pow(0.98, s), s <= 3 ? 1e-4 * s : 2e-4 * (50 - s) / 47, 1.0 / s, 1);
        assertEquals("", text());
    }

    @Test
    void gradNormCollapseIsUnderfitting() {
        TrainingMonitor m = new TrainingMonitor(out, null);
        List<JsonObject> ev = events(m);
        m.onStart(0, 1000);
        for (int s = 1; s <= 20; s++) m.onStep(s, 1000, 3.0 - 0.05 * s, 2e-4 * (1000 - s) / 1000, s <= 10 ? 1.0 : 1e-3, 1);
        assertEquals(List.of("grad-norm-collapse"), ev.stream().map(e -> e.get("signal").getAsString()).toList(), text());
    }

    @Test
    void evalPlateauNearTheBaseIsUnderfitting() {
        TrainingMonitor m = new TrainingMonitor(out, null);
        List<JsonObject> ev = events(m);
        m.onEval(0, 2.00);
        m.onEval(10, 1.995);
        assertEquals(0, ev.size());
        m.onEval(20, 1.992);
        assertEquals("plateau-high", ev.get(0).get("signal").getAsString());
        // the same evals while the train loss still falls fast: not a plateau
        TrainingMonitor falling = new TrainingMonitor(out, null);
        List<JsonObject> none = events(falling);
        falling.onEval(0, 2.00);
        falling.onStep(1, 30, 2.0, 2e-4, 1, 1);
        falling.onEval(10, 1.995);
        falling.onStep(2, 30, 1.5, 2e-4, 1, 1);
        falling.onEval(20, 1.992);
        assertEquals(List.of(), none);
        assertTrue(text().contains("1. more epochs"), text());
    }

    @Test
    void overfittingSignalsCarryEveryRemedyAndAreEvents() {
        TrainingMonitor m = new TrainingMonitor(out, GuideRulesTest.cfg()).withAdapterDir("runs/a");
        List<JsonObject> ev = events(m);
        m.onStep(1, 10, 0.1, 2e-4, 1, 1);
        assertEquals("low-train-loss", ev.get(0).get("signal").getAsString());
        assertEquals(1L, ev.get(0).get("step").getAsLong());
        String t = text();
        assertTrue(t.contains("1. after training, LoRA alpha scaling x0.5: lora4j scale --adapter runs/a --factor 0.5"), t);
        assertTrue(t.contains("2. after training, weight averaging") && t.contains("--average"), t);
        for (String k : List.of("weight_decay 0.1", "gradient_accumulation_steps 16", "more data", "lora_dropout 0.1", "early_stopping_patience 3",
                "num_train_epochs 1 to 3", "learning_rate"))
            assertTrue(t.contains(k), k + " in " + t);
        assertEquals(9, ev.get(0).getAsJsonArray("remedies").size());
    }

    @Test
    void goodConfigStartsQuietly() {
        TrainingMonitor m = new TrainingMonitor(out, GuideRulesTest.cfg());
        m.onStart(0, 10);
        m.onStep(1, 10, 2.5, 2e-4, 1, 100);
        assertEquals("", text());
    }

    @Test
    void lowTrainLossWarnsOnce() {
        TrainingMonitor m = new TrainingMonitor(out, null);
        m.onStep(1, 10, 0.5, 2e-4, 1, 100);
        assertEquals("", text());
        m.onStep(2, 10, 0.19, 2e-4, 1, 100);
        m.onStep(3, 10, 0.1, 2e-4, 1, 100);
        assertEquals(1, count(text(), "likely overfitting"), text());
        assertTrue(text().contains("step 2"), text());
    }

    @Test
    void evalRisingWhileTrainFalls() {
        TrainingMonitor m = new TrainingMonitor(out, null);
        m.onEval(0, 3.0);
        m.onStep(1, 10, 2.0, 2e-4, 1, 1);
        m.onEval(1, 2.0);
        m.onStep(2, 10, 1.5, 2e-4, 1, 1);
        m.onEval(2, 2.1); // rise 1
        assertEquals("", text());
        m.onStep(3, 10, 1.0, 2e-4, 1, 1);
        m.onEval(3, 2.2); // rise 2 while train fell 2.0 -> 1.0
        m.onStep(4, 10, 0.9, 2e-4, 1, 1);
        m.onEval(4, 2.3);
        assertEquals(1, count(text(), "eval loss rose at 2 consecutive"), text());
        assertTrue(text().contains("1. evaluation early stopping"), "most specific first: " + text());
    }

    @Test
    void evalRisingWithTrainRisingIsNotOverfitting() {
        TrainingMonitor m = new TrainingMonitor(out, null);
        m.onStep(1, 10, 1.0, 2e-4, 1, 1);
        m.onEval(1, 2.0);
        m.onStep(2, 10, 1.2, 2e-4, 1, 1);
        m.onEval(2, 2.1);
        m.onStep(3, 10, 1.4, 2e-4, 1, 1);
        m.onEval(3, 2.2);
        assertEquals("", text());
    }

    @Test
    void aDipResetsTheStreak() {
        TrainingMonitor m = new TrainingMonitor(out, null, GuideRules.DatasetFacts.unknown(), 2);
        double[] evals = {2.0, 2.1, 1.9, 2.0, 1.8};
        for (int i = 0; i < evals.length; i++) {
            m.onStep(i + 1, 10, 2.0 - 0.1 * i, 2e-4, 1, 1);
            m.onEval(i + 1, evals[i]);
        }
        assertEquals("", text());
    }
}
