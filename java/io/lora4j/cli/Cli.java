package io.lora4j.cli;

import io.lora4j.train.RunConfig;
import java.nio.file.Path;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;

/** Option parsing helpers that turn bad values into {@link UsageException}s (exit 2). */
final class Cli {
    private Cli() {}

    /**
     * The run config of {@code --config YAML} with every option not in {@code own} as a
     * {@code --KEY VALUE} override; an invalid config is a usage error listing every problem.
     */
    static RunConfig runConfig(CommandLine cl, Set<String> own) throws UsageException, java.io.IOException {
        Map<String, String> overrides = new LinkedHashMap<>();
        for (Option opt : cl.getOptions()) if (!own.contains(opt.getLongOpt())) overrides.put(opt.getLongOpt(), opt.getValue());
        Path yaml = cl.hasOption("config") ? Path.of(cl.getOptionValue("config")) : null;
        if (yaml == null && overrides.isEmpty()) throw new UsageException("give --config run.yaml (and/or --KEY VALUE settings)");
        try {
            return RunConfig.load(yaml, overrides);
        } catch (IllegalArgumentException e) {
            throw new UsageException(e.getMessage());
        }
    }

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
