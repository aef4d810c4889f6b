package io.lora4j.data;

/**
 * A micro-batch of B rows of equal length S (right-padded), ready for the model.
 *
 * <ul>
 *   <li>{@code inputIds[b][s]}: token ids (padding: the pad id, or any valid id);
 *   <li>{@code targets[b][s]}: the id to predict at position s (already shifted: the label of
 *       position s + 1), or {@link Example#IGNORE_INDEX} (padding, masked prompt tokens, the last
 *       position of a row, and row boundaries inside a packed row);
 *   <li>{@code positions[b][s]}: RoPE positions, restarting at 0 for every packed row;
 *   <li>{@code segments}: null, or per-position ids that differ between rows packed into one
 *       sequence, so that attention never crosses them;
 *   <li>{@code rowIds}: null (unknown), or per batch row the 0-based indices of the training rows
 *       it holds (one, or several when packed): indices into {@link DataPipeline#trainRows()}, the
 *       order of {@code lora4j data --dump}. Used to name the rows of a window that went wrong.
 * </ul>
 * The loss over a gradient-accumulation window divides by the number of non-ignored targets of
 * the whole window (DESIGN.md §4), which {@link #targetTokens()} counts per micro-batch.
 */
public record Batch(int[][] inputIds, int[][] targets, int[][] positions, int[][] segments, int[][] rowIds) {
    public Batch {
        int b = inputIds.length;
        if (b == 0) throw new IllegalArgumentException("empty batch");
        int s = inputIds[0].length;
        if (targets.length != b || positions.length != b || (segments != null && segments.length != b)
                || (rowIds != null && rowIds.length != b))
            throw new IllegalArgumentException("batch arrays disagree on the row count");
        for (int i = 0; i < b; i++)
            if (inputIds[i].length != s || targets[i].length != s || positions[i].length != s
                    || (segments != null && segments[i].length != s))
                throw new IllegalArgumentException("row " + i + " is not " + s + " long");
    }

    /** A batch whose rows' dataset indices are unknown. */
    public Batch(int[][] inputIds, int[][] targets, int[][] positions, int[][] segments) {
        this(inputIds, targets, positions, segments, null);
    }

    /** This batch with {@code ids[b]} = the training-row indices held by batch row b. */
    public Batch withRowIds(int[][] ids) {
        return new Batch(inputIds, targets, positions, segments, ids);
    }

    public int rows() {
        return inputIds.length;
    }

    public int seqLen() {
        return inputIds[0].length;
    }

    /** Targets that carry loss. */
    public long targetTokens() {
        long n = 0;
        for (int[] row : targets) for (int t : row) if (t != Example.IGNORE_INDEX) n++;
        return n;
    }

    /** One batch of right-padded, unpacked rows: targets shifted, positions 0..len-1. */
    public static Batch of(java.util.List<Example> rows, int padId) {
        int s = 0;
        for (Example e : rows) s = Math.max(s, e.length());
        int b = rows.size();
        int[][] ids = new int[b][s], tg = new int[b][s], pos = new int[b][s];
        for (int i = 0; i < b; i++) {
            int[] in = rows.get(i).inputIds(), lab = rows.get(i).labels();
            java.util.Arrays.fill(ids[i], padId);
            java.util.Arrays.fill(tg[i], Example.IGNORE_INDEX);
            System.arraycopy(in, 0, ids[i], 0, in.length);
            for (int j = 0; j + 1 < in.length; j++) tg[i][j] = lab[j + 1];
            for (int j = 0; j < s; j++) pos[i][j] = j;
        }
        return new Batch(ids, tg, pos, null);
    }
}
