package io.lora4j.report;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

class ProgressDisplayTest {
    @Test
    void etaIsMeanPaceTimesRemaining() {
        assertEquals(90.0, ProgressDisplay.etaSeconds(10, 90, 10.0), 1e-12);
        assertEquals(0.0, ProgressDisplay.etaSeconds(100, 0, 50.0), 1e-12);
        assertTrue(Double.isNaN(ProgressDisplay.etaSeconds(0, 10, 1.0)));
    }

    @Test
    void durations() {
        assertEquals("0:05", ProgressDisplay.formatDuration(4.6));
        assertEquals("1:05", ProgressDisplay.formatDuration(65));
        assertEquals("1:02:03", ProgressDisplay.formatDuration(3723));
        assertEquals("?", ProgressDisplay.formatDuration(Double.NaN));
    }

    @Test
    void lineContent() {
        String l = ProgressDisplay.line(25, 100, 1.23456, 2e-4, 1234.4, 83);
        assertEquals("step 25/100 [#####...............]  25% loss 1.2346 lr 2.00e-04 1,234 tok/s ETA 1:23", l);
        assertTrue(ProgressDisplay.line(1, 10, Double.NaN, 1e-5, Double.NaN, Double.NaN).contains("loss - lr 1.00e-05 - tok/s ETA ?"));
    }

    @Test
    void redrawsInPlaceOnATerminal() {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        long[] now = {0};
        ProgressDisplay p = new ProgressDisplay(new PrintStream(b, true, StandardCharsets.UTF_8), true, () -> now[0]);
        assertTrue(p.drawsProgress());
        p.onStart(0, 4);
        now[0] = 1_000_000_000L;
        p.onStep(1, 4, 2.0, 2e-4, 1, 500);
        now[0] = 2_000_000_000L;
        p.onStep(2, 4, 1.5, 2e-4, 1, 500);
        p.onEval(2, 1.7);
        now[0] = 2_010_000_000L;
        p.onStep(3, 4, 1.2, 2e-4, 1, 500);
        now[0] = 2_020_000_000L;
        p.onStep(4, 4, 1.1, 2e-4, 1, 500); // last step: drawn despite the throttle
        p.onEnd(4, Path.of("out"));
        String s = b.toString(StandardCharsets.UTF_8);
        assertTrue(s.startsWith("\rstep 1/4"), s);
        assertTrue(s.contains("\rstep 2/4") && s.contains("ETA 0:02"), s);
        assertTrue(s.contains("eval at step 2: loss 1.7000\n"), s);
        assertTrue(s.contains("\rstep 4/4") && s.endsWith("ETA 0:00" + System.lineSeparator()), s);
        assertEquals(2, s.split("\n", -1).length - 1, "only the eval line and the final newline end lines: " + s);
    }

    @Test
    void silentWithoutTerminal() {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        ProgressDisplay p = new ProgressDisplay(new PrintStream(b, true, StandardCharsets.UTF_8), false);
        assertFalse(p.drawsProgress());
        p.onStart(0, 2);
        p.onStep(1, 2, 1, 1e-4, 1, 1);
        p.onEval(1, 1);
        p.onEnd(2, Path.of("o"));
        assertEquals(0, b.size());
    }
}
