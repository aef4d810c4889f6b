package io.lora4j.advice;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
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
        new TrainingMonitor(out, GuideRulesTest.cfg("r", 16, "lora_alpha", 8, "learning_rate", 1e-3, "num_train_epochs", 5)).onStart(0, 100);
        String t = text();
        assertEquals(3, count(t, "lora4j: warning: "), t);
        assertTrue(t.contains("alpha") && t.contains("learning_rate") && t.contains("num_train_epochs 5"), t);
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
