package io.lora4j.cli;

import java.util.Collection;
import java.util.Locale;
import org.apache.commons.cli.CommandLine;

/** Option parsing helpers that turn bad values into {@link UsageException}s (exit 2). */
final class Cli {
    private Cli() {}

    static int parseInt(CommandLine cl, String opt, int dflt) throws UsageException {
        String v = cl.getOptionValue(opt);
        if (v == null) return dflt;
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException("--" + opt + " '" + v + "' is not an integer");
        }
    }

    static long parseLong(CommandLine cl, String opt, long dflt) throws UsageException {
        String v = cl.getOptionValue(opt);
        if (v == null) return dflt;
        try {
            return Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException("--" + opt + " '" + v + "' is not an integer");
        }
    }

    static float parseFloat(CommandLine cl, String opt, float dflt) throws UsageException {
        String v = cl.getOptionValue(opt);
        if (v == null) return dflt;
        try {
            float f = Float.parseFloat(v.trim());
            if (Float.isNaN(f) || Float.isInfinite(f)) throw new NumberFormatException();
            return f;
        } catch (NumberFormatException e) {
            throw new UsageException("--" + opt + " '" + v + "' is not a finite number");
        }
    }

    /**
     * The candidate closest to {@code given} by edit distance (with transpositions, ignoring case and
     * treating '-' and '_' alike), or null when none is close: at most a third of the word's
     * length, between 1 and 3 edits, so "learning-rat" finds "learning_rate" and "xyz" finds nothing.
     */
    static String closest(String given, Collection<String> candidates) {
        String g = norm(given);
        int limit = Math.max(1, Math.min(3, g.length() / 3));
        String best = null;
        int bestD = Integer.MAX_VALUE;
        for (String c : candidates) {
            int d = editDistance(g, norm(c));
            if (d < bestD) {
                bestD = d;
                best = c;
            }
        }
        return bestD <= limit ? best : null;
    }

    private static String norm(String s) {
        return s.toLowerCase(Locale.ROOT).replace('-', '_');
    }

    /**
     * Edit distance with adjacent transpositions (optimal string alignment): insertions,
     * deletions, substitutions and swaps of two neighbours each cost 1, so "jsno" is 1 from "json".
     */
    static int editDistance(String a, String b) {
        int[][] d = new int[a.length() + 1][b.length() + 1];
        for (int i = 0; i <= a.length(); i++) d[i][0] = i;
        for (int j = 0; j <= b.length(); j++) d[0][j] = j;
        for (int i = 1; i <= a.length(); i++)
            for (int j = 1; j <= b.length(); j++) {
                int cost = a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1;
                d[i][j] = Math.min(Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1), d[i - 1][j - 1] + cost);
                if (i > 1 && j > 1 && a.charAt(i - 1) == b.charAt(j - 2) && a.charAt(i - 2) == b.charAt(j - 1))
                    d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
            }
        return d[a.length()][b.length()];
    }
}
