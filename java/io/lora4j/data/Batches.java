package io.lora4j.data;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.Random;

/**
 * Turning {@link Example}s into {@link Batch}es: right padding to the longest row, HF's
 * length-grouped order, and packing several rows into one sequence.
 */
public final class Batches {
    /** HF LengthGroupedSampler: megabatches of this many batches are sorted by length. */
    public static final int MEGABATCH_MULTIPLIER = 50;

    private Batches() {}

    /**
     * Rows packed into one sequence: attention, positions and targets stay within each part.
     *
     * @param parts the rows, in order (their total length is at most the packing length)
     */
    public record Packed(List<Example> parts) {
        public Packed {
            if (parts.isEmpty()) throw new IllegalArgumentException("a packed sequence needs at least one row");
            parts = List.copyOf(parts);
        }

        public int length() {
            int n = 0;
            for (Example e : parts) n += e.length();
            return n;
        }

        /** Targets with loss: every part's predicted tokens (none across a part boundary). */
        public int predictedTokens() {
            int n = 0;
            for (Example e : parts) n += e.predictedTokens();
            return n;
        }
    }

    /** Consecutive batches of {@code batchSize} rows (the last may be smaller), in the given order. */
    public static List<Batch> padded(List<Example> rows, int batchSize, int padId) {
        List<Batch> out = new ArrayList<>();
        for (int i = 0; i < rows.size(); i += batchSize) out.add(Batch.of(rows.subList(i, Math.min(rows.size(), i + batchSize)), padId));
        return out;
    }

    /**
     * HF's {@code LengthGroupedSampler} order: a random permutation cut into megabatches of
     * {@value #MEGABATCH_MULTIPLIER} × batchSize, each sorted by length, longest first; the batch
     * holding the longest row of all goes first (so that memory runs out at once, if it does).
     *
     * @return indices into {@code lengths}, grouped into batches
     */
    public static List<int[]> lengthGrouped(int[] lengths, int batchSize, Random rnd) {
        Integer[] perm = permutation(lengths.length, rnd);
        int mega = MEGABATCH_MULTIPLIER * batchSize;
        List<int[]> batches = new ArrayList<>();
        for (int m = 0; m < perm.length; m += mega) {
            Integer[] mb = Arrays.copyOfRange(perm, m, Math.min(perm.length, m + mega));
            Arrays.sort(mb, Comparator.comparingInt((Integer i) -> lengths[i]).reversed());
            for (int b = 0; b < mb.length; b += batchSize) {
                int[] idx = new int[Math.min(batchSize, mb.length - b)];
                for (int k = 0; k < idx.length; k++) idx[k] = mb[b + k];
                batches.add(idx);
            }
        }
        int longest = 0;
        for (int b = 1; b < batches.size(); b++) if (lengths[batches.get(b)[0]] > lengths[batches.get(longest)[0]]) longest = b;
        Collections.swap(batches, 0, longest);
        return batches;
    }

    /** A seeded permutation of 0..n-1 (Fisher-Yates with {@code rnd}). */
    public static Integer[] permutation(int n, Random rnd) {
        Integer[] p = new Integer[n];
        for (int i = 0; i < n; i++) p[i] = i;
        for (int i = n - 1; i > 0; i--) {
            int j = rnd.nextInt(i + 1);
            Integer t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
        return p;
    }

    /**
     * Greedy packing in the given order: a row joins the current sequence while the total stays
     * within {@code maxLen}, else starts a new one. Rows must be at most {@code maxLen} long.
     */
    public static List<Packed> pack(List<Example> rows, int maxLen) {
        List<Packed> out = new ArrayList<>();
        List<Example> cur = new ArrayList<>();
        int len = 0;
        for (Example e : rows) {
            if (e.length() > maxLen) throw new IllegalArgumentException("a row of " + e.length() + " tokens does not fit max_seq_length " + maxLen);
            if (len + e.length() > maxLen && !cur.isEmpty()) {
                out.add(new Packed(cur));
                cur = new ArrayList<>();
                len = 0;
            }
            cur.add(e);
            len += e.length();
        }
        if (!cur.isEmpty()) out.add(new Packed(cur));
        return out;
    }

    /**
     * One batch of packed sequences, right-padded to the longest: positions restart at 0 for every
     * part, segments number the parts 1, 2, ... (padding is segment 0), and the last position of
     * every part targets {@link Example#IGNORE_INDEX}, so nothing is predicted across rows.
     */
    public static Batch packedBatch(List<Packed> seqs, int padId) {
        int s = 0;
        for (Packed p : seqs) s = Math.max(s, p.length());
        int b = seqs.size();
        int[][] ids = new int[b][s], tg = new int[b][s], pos = new int[b][s], seg = new int[b][s];
        for (int i = 0; i < b; i++) {
            Arrays.fill(ids[i], padId);
            Arrays.fill(tg[i], Example.IGNORE_INDEX);
            int off = 0, segment = 1;
            for (Example e : seqs.get(i).parts()) {
                int[] in = e.inputIds(), lab = e.labels();
                System.arraycopy(in, 0, ids[i], off, in.length);
                for (int j = 0; j < in.length; j++) {
                    pos[i][off + j] = j;
                    seg[i][off + j] = segment;
                    if (j + 1 < in.length) tg[i][off + j] = lab[j + 1];
                }
                off += in.length;
                segment++;
            }
        }
        return new Batch(ids, tg, pos, seg);
    }

    /**
     * Optimizer steps in an epoch of {@code sequences} rows (or packed sequences), as HF Trainer
     * counts them: ceil(sequences / (batchSize × gradAccum)); the last step may accumulate fewer
     * micro-batches.
     */
    public static int stepsPerEpoch(int sequences, int batchSize, int gradAccum) {
        if (batchSize < 1 || gradAccum < 1) throw new IllegalArgumentException("batch size and gradient accumulation must be >= 1");
        long per = (long) batchSize * gradAccum;
        return (int) ((sequences + per - 1) / per);
    }
}
