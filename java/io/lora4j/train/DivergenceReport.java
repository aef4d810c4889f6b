package io.lora4j.train;

import io.lora4j.data.Batch;
import io.lora4j.data.DataPipeline;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.TreeSet;

/**
 * What the run says about skipped steps: the training rows of a window (indices and source lines),
 * and, after max_bad_steps consecutive skipped steps, the likely cause. The learning rate is
 * blamed when the adapter itself is broken (a window it trained on fine now gives a non-finite
 * loss) or the loss rose / the gradient norm exploded over the good steps before; otherwise the
 * data of the skipped windows.
 */
final class DivergenceReport {
    /** Training rows named in a message, at most. */
    private static final int MAX_ROWS_SHOWN = 20;
    /** Good steps before the bad run that the loss / gradient-norm trend looks at. */
    private static final int TREND_STEPS = 10;

    private final DataPipeline data;
    private final double learningRate;

    DivergenceReport(DataPipeline data, double learningRate) {
        this.data = data;
        this.learningRate = learningRate;
    }

    /**
     * The one-line reason for stopping after the consecutive bad steps of {@code state}.
     *
     * @param model      the model, to recheck {@code goodWindow} with the current adapter
     * @param good       the state after the last good step
     * @param goodWindow the window of that step (null when there was none)
     * @param ck         the checkpoint of {@code good}
     */
    String explain(LoraTrainingModel model, TrainingState state, TrainingState good, List<Batch> goodWindow, Path ck) {
        List<TrainingState.BadStep> bad = state.badSteps;
        Set<Integer> rows = new TreeSet<>();
        for (TrainingState.BadStep b : bad) for (int r : b.rows()) rows.add(r);
        int[] rowArr = rows.stream().mapToInt(Integer::intValue).toArray();
        double recheck = goodWindow == null ? Double.NaN : model.lossSum(goodWindow.get(0));
        boolean broken = goodWindow != null && !Double.isFinite(recheck);
        List<Double> l = new ArrayList<>(), g = new ArrayList<>();
        for (int i = 0; i < good.step; i++) {
            if (Double.isFinite(good.losses.get(i))) {
                l.add(good.losses.get(i));
                g.add(good.gradNorms.get(i));
            }
        }
        l = l.subList(Math.max(0, l.size() - TREND_STEPS), l.size());
        g = g.subList(Math.max(0, g.size() - TREND_STEPS), g.size());
        boolean rising = l.size() >= 2 && l.get(l.size() - 1) > 1.5 * Collections.min(l);
        boolean exploding = g.size() >= 2 && g.get(g.size() - 1) > 10 * Collections.min(g);
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "stopped: %d consecutive steps (%d-%d) had a non-finite loss or gradient and were skipped; likely cause: ",
                bad.size(), bad.get(0).step(), bad.get(bad.size() - 1).step()));
        if (broken || rising || exploding) {
            sb.append("learning_rate ").append(learningRate).append(" is too high (");
            List<String> why = new ArrayList<>();
            if (rising) why.add(String.format(Locale.ROOT, "the loss rose from %.4g to %.4g", Collections.min(l), l.get(l.size() - 1)));
            if (exploding) why.add(String.format(Locale.ROOT, "the gradient norm grew from %.3g to %.3g", Collections.min(g), g.get(g.size() - 1)));
            if (broken) why.add("the adapter now gives a non-finite loss on rows it trained on at step " + good.step);
            sb.append(String.join(", ", why)).append("): lower it and start again");
        } else {
            sb.append("the data of those windows (the adapter still gives a finite loss on earlier rows): check them");
        }
        sb.append("; ").append(describeRows(rowArr)).append("; the last good state (step ").append(good.step).append(") is in ").append(ck);
        return sb.toString();
    }

    /** The training-row indices of a window's micro-batches, sorted; empty when the batches do not carry them. */
    static int[] rowIds(List<Batch> window) {
        Set<Integer> ids = new TreeSet<>();
        for (Batch b : window) if (b.rowIds() != null) for (int[] r : b.rowIds()) for (int i : r) ids.add(i);
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }

    /** The 1-based source lines of training rows {@code rows}. */
    int[] sourceLines(int[] rows) {
        int[] lines = new int[rows.length];
        for (int i = 0; i < rows.length; i++) lines[i] = data.trainRows().get(rows[i]).line();
        return lines;
    }

    /** "training rows 3, 7 (lines 4, 8 of data.jsonl)", at most {@value #MAX_ROWS_SHOWN} of them. */
    String describeRows(int[] rows) {
        if (rows.length == 0) return "rows unknown";
        StringBuilder ids = new StringBuilder(), lines = new StringBuilder();
        Set<String> sources = new TreeSet<>();
        for (int i = 0; i < Math.min(rows.length, MAX_ROWS_SHOWN); i++) {
            DataPipeline.Row row = data.trainRows().get(rows[i]);
            ids.append(i == 0 ? "" : ", ").append(rows[i]);
            lines.append(i == 0 ? "" : ", ").append(row.line());
            sources.add(String.valueOf(row.source()));
        }
        String more = rows.length > MAX_ROWS_SHOWN ? " and " + (rows.length - MAX_ROWS_SHOWN) + " more" : "";
        return "training rows " + ids + more + " (lines " + lines + more + " of " + String.join(", ", sources) + ")";
    }
}
