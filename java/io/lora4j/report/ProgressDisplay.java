package io.lora4j.report;

import io.lora4j.train.TrainingListener;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.function.LongSupplier;

/**
 * A one-line progress bar for {@code lora4j train} on a terminal, redrawn in place with a carriage
 * return on stderr: {@code step 12/100 [####......] 12% loss 1.2345 lr 2.00e-04 1,234 tok/s ETA 1:23}.
 * When not on a terminal it draws nothing and {@link #drawsProgress()} is false, so the run keeps
 * its plain per-step log lines (for files and CI logs).
 */
public final class ProgressDisplay implements TrainingListener {
    static final int BAR_WIDTH = 20;
    /** Redraw at most this often (ns), except the last step, so fast steps don't flood the terminal. */
    static final long MIN_REDRAW_NS = 100_000_000L;

    private final PrintStream err;
    private final boolean terminal;
    private final LongSupplier clock;
    private long startNs;
    private long startStep;
    private long lastDrawNs = Long.MIN_VALUE;
    private int lastWidth;

    /** Draws on {@code err} when {@code terminal}; see {@link #isTerminal(Map)}. */
    public ProgressDisplay(PrintStream err, boolean terminal) {
        this(err, terminal, System::nanoTime);
    }

    ProgressDisplay(PrintStream err, boolean terminal, LongSupplier clock) {
        if (err == null) throw new IllegalArgumentException("err is null");
        this.err = err;
        this.terminal = terminal;
        this.clock = clock;
    }

    /** Whether this process talks to a terminal that redraws: a console and TERM not "dumb". */
    public static boolean isTerminal(Map<String, String> env) {
        return System.console() != null && !"dumb".equals(env.get("TERM"));
    }

    @Override
    public boolean drawsProgress() {
        return terminal;
    }

    @Override
    public void onStart(long startStep, long totalSteps) {
        this.startStep = startStep;
        this.startNs = clock.getAsLong();
    }

    @Override
    public void onStep(long step, long totalSteps, double loss, double learningRate, double gradNorm, double tokensPerSecond) {
        if (!terminal) return;
        long now = clock.getAsLong();
        if (step < totalSteps && lastDrawNs != Long.MIN_VALUE && now - lastDrawNs < MIN_REDRAW_NS) return;
        lastDrawNs = now;
        double eta = etaSeconds(step - startStep, totalSteps - step, (now - startNs) / 1e9);
        draw(line(step, totalSteps, loss, learningRate, tokensPerSecond, eta));
    }

    @Override
    public void onEval(long step, double evalLoss) {
        if (!terminal) return;
        clear();
        err.printf(Locale.ROOT, "eval at step %d: loss %.4f%n", step, evalLoss);
        err.flush();
        lastDrawNs = Long.MIN_VALUE; // redraw the bar at the next step
    }

    @Override
    public void onEnd(long steps, Path outDir) {
        if (!terminal || lastWidth == 0) return;
        err.println();
        err.flush();
        lastWidth = 0;
    }

    private void draw(String line) {
        StringBuilder sb = new StringBuilder("\r").append(line);
        // Blank out what is left of a longer previous line (no ANSI codes needed).
        for (int i = line.length(); i < lastWidth; i++) sb.append(' ');
        err.print(sb);
        err.flush();
        lastWidth = line.length();
    }

    private void clear() {
        if (lastWidth == 0) return;
        err.print("\r" + " ".repeat(lastWidth) + "\r");
        lastWidth = 0;
    }

    /**
     * Seconds left at the mean pace so far: elapsed / done × remaining; NaN before the first step.
     *
     * @param done      steps taken since the start (or resume)
     * @param remaining steps still to take
     * @param elapsed   seconds since the start
     */
    static double etaSeconds(long done, long remaining, double elapsed) {
        if (done <= 0 || elapsed < 0) return Double.NaN;
        return Math.max(0, remaining) * elapsed / done;
    }

    /** "1:05", "1:02:03", or "?" when unknown. */
    static String formatDuration(double seconds) {
        if (!Double.isFinite(seconds)) return "?";
        long s = Math.round(seconds);
        long h = s / 3600, m = s / 60 % 60, sec = s % 60;
        return h > 0 ? String.format(Locale.ROOT, "%d:%02d:%02d", h, m, sec) : String.format(Locale.ROOT, "%d:%02d", m, sec);
    }

    /** The progress line without the carriage return. */
    static String line(long step, long total, double loss, double lr, double tokensPerSecond, double etaSeconds) {
        double frac = total > 0 ? Math.min(1, (double) step / total) : 0;
        int filled = (int) Math.round(frac * BAR_WIDTH);
        String bar = "#".repeat(filled) + ".".repeat(BAR_WIDTH - filled);
        return String.format(Locale.ROOT, "step %d/%d [%s] %3d%% loss %s lr %.2e %s tok/s ETA %s", step, total, bar, Math.round(frac * 100),
                Double.isFinite(loss) ? String.format(Locale.ROOT, "%.4f", loss) : "-", lr,
                Double.isFinite(tokensPerSecond) ? String.format(Locale.ROOT, "%,.0f", tokensPerSecond) : "-", formatDuration(etaSeconds));
    }
}
