package io.lora4j.cli;

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
}
