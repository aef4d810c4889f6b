package io.lora4j.report;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.FormatException;
import io.lora4j.train.TrainingListener;
import io.lora4j.train.TrainingRun;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Rectangle;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.jfree.chart.ChartFactory;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.chart.text.TextUtils;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;
import org.jfree.svg.SVGGraphics2D;

/**
 * Draws a run's loss curves from its {@code metrics.jsonl} into {@code loss.png} and
 * {@code loss.svg}: train loss and eval loss against the optimizer step (JFreeChart; SVG through
 * JFreeSVG's Graphics2D). Needs no display: sets {@code java.awt.headless} when it is unset.
 */
public final class LossChart {
    /** Image size in pixels (PNG) and user units (SVG). */
    public static final int WIDTH = 900, HEIGHT = 540;
    public static final String TRAIN_SERIES = "train loss", EVAL_SERIES = "eval loss";

    private LossChart() {}

    /** The two series read from a metrics file. */
    public record Curves(XYSeries train, XYSeries eval) {}

    /**
     * Writes {@code outDir/loss.png} and {@code outDir/loss.svg}, each atomically (temp + rename).
     *
     * @throws FormatException naming the file and line when a row is not a JSON object, has a
     *                         non-numeric step/loss/eval_loss, or when no row has a loss
     */
    public static void write(Path metricsJsonl, Path outDir) throws IOException {
        Curves c = read(metricsJsonl);
        if (System.getProperty("java.awt.headless") == null) System.setProperty("java.awt.headless", "true");
        JFreeChart chart = chart(c, "Loss: " + (metricsJsonl.toAbsolutePath().getParent() == null ? metricsJsonl.getFileName()
                : metricsJsonl.toAbsolutePath().getParent().getFileName()));
        Files.createDirectories(outDir);
        ByteArrayOutputStream png = new ByteArrayOutputStream();
        ChartUtils.writeChartAsPNG(png, chart, WIDTH, HEIGHT);
        AtomicFiles.writeBytes(outDir.resolve("loss.png"), png.toByteArray());
        AtomicFiles.writeBytes(outDir.resolve("loss.svg"), svg(chart).getBytes(StandardCharsets.UTF_8));
    }

    /**
     * A listener that draws {@code loss.png} and {@code loss.svg} from the finished run's
     * {@code metrics.jsonl}. The adapter is already written by then, so a chart that cannot be drawn
     * (no AWT in a trimmed runtime, say) is a warning on {@code log}, never a failed run.
     */
    public static TrainingListener onFinish(PrintStream log) {
        return new TrainingListener() {
            @Override
            public void onEnd(long steps, Path outDir) {
                try {
                    write(outDir.resolve(TrainingRun.METRICS), outDir);
                    log.println("loss curves: " + outDir.resolve("loss.png") + " and loss.svg");
                } catch (IOException | RuntimeException | LinkageError | java.awt.AWTError e) {
                    log.println("warning: loss chart not drawn: " + e);
                }
            }
        };
    }

    /**
     * The chart as an SVG document. JFreeChart draws rotated strings (the y-axis label) through
     * TextLayout by default, a workaround for old JDK bugs that JFreeSVG turns into outline paths;
     * switched off while drawing so that every label is searchable {@code <text>}.
     */
    static synchronized String svg(JFreeChart chart) {
        SVGGraphics2D g = new SVGGraphics2D(WIDTH, HEIGHT);
        boolean workaround = TextUtils.isUseDrawRotatedStringWorkaround();
        TextUtils.setUseDrawRotatedStringWorkaround(false);
        try {
            chart.draw(g, new Rectangle(0, 0, WIDTH, HEIGHT));
        } finally {
            TextUtils.setUseDrawRotatedStringWorkaround(workaround);
        }
        return g.getSVGDocument();
    }

    /**
     * Reads the train and eval losses. Rows without {@code step} (the final totals row) are
     * skipped; a row may hold only {@code eval_loss} (step 0, the base model); null or NaN losses
     * are left out.
     */
    public static Curves read(Path metricsJsonl) throws IOException {
        XYSeries train = new XYSeries(TRAIN_SERIES, true, true), eval = new XYSeries(EVAL_SERIES, true, true);
        int lineNo = 0;
        try (BufferedReader r = Files.newBufferedReader(metricsJsonl, StandardCharsets.UTF_8)) {
            for (String line; (line = r.readLine()) != null; ) {
                lineNo++;
                if (line.isBlank()) continue;
                JsonObject o;
                try {
                    JsonElement e = JsonParser.parseString(line);
                    if (!e.isJsonObject()) throw new FormatException(metricsJsonl, "line " + lineNo + ": expected a JSON object");
                    o = e.getAsJsonObject();
                } catch (JsonParseException e) {
                    throw new FormatException(metricsJsonl, "line " + lineNo + ": not valid JSON (" + e.getMessage() + ")");
                }
                if (!o.has("step")) continue;
                double step = number(o, "step", metricsJsonl, lineNo);
                double loss = number(o, "loss", metricsJsonl, lineNo);
                double evalLoss = number(o, "eval_loss", metricsJsonl, lineNo);
                if (Double.isFinite(step) && Double.isFinite(loss)) train.add(step, loss);
                if (Double.isFinite(step) && Double.isFinite(evalLoss)) eval.add(step, evalLoss);
            }
        }
        if (train.isEmpty() && eval.isEmpty()) throw new FormatException(metricsJsonl, "no row with a step and a loss or eval_loss");
        return new Curves(train, eval);
    }

    /** The member's number, NaN when absent or null; a FormatException when it is something else. */
    private static double number(JsonObject o, String key, Path file, int line) throws FormatException {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return Double.NaN;
        if (e instanceof JsonPrimitive p) {
            if (p.isNumber()) return p.getAsDouble();
            // Gson writes NaN/Infinity as bare literals; Python's json writes them the same way.
            if (p.isString() && p.getAsString().matches("NaN|-?Infinity")) return Double.NaN;
        }
        throw new FormatException(file, "line " + line + ": '" + key + "' must be a number, got " + e);
    }

    /** The chart of {@code c}: lines for train loss, lines with markers for eval loss. */
    public static JFreeChart chart(Curves c, String title) {
        XYSeriesCollection data = new XYSeriesCollection();
        data.addSeries(c.train());
        data.addSeries(c.eval());
        JFreeChart chart = ChartFactory.createXYLineChart(title, "optimizer step", "loss (nats per token)", data, PlotOrientation.VERTICAL,
                true, false, false);
        XYPlot plot = chart.getXYPlot();
        plot.setBackgroundPaint(Color.WHITE);
        plot.setDomainGridlinePaint(Color.LIGHT_GRAY);
        plot.setRangeGridlinePaint(Color.LIGHT_GRAY);
        XYLineAndShapeRenderer r = new XYLineAndShapeRenderer(true, false);
        r.setSeriesPaint(0, new Color(0x1f77b4));
        r.setSeriesPaint(1, new Color(0xd62728));
        r.setSeriesStroke(0, new BasicStroke(1.5f));
        r.setSeriesStroke(1, new BasicStroke(2f));
        r.setSeriesShapesVisible(1, true); // eval points are sparse: mark them
        plot.setRenderer(r);
        ((NumberAxis) plot.getRangeAxis()).setAutoRangeIncludesZero(false);
        ((NumberAxis) plot.getDomainAxis()).setStandardTickUnits(NumberAxis.createIntegerTickUnits()); // steps are integers
        chart.setBackgroundPaint(Color.WHITE);
        return chart;
    }
}
