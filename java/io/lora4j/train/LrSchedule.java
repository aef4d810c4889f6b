package io.lora4j.train;

import java.util.Locale;

/**
 * HF's learning-rate schedules ({@code transformers.get_scheduler}), as a factor of the base rate.
 * {@code current} counts optimizer steps already taken (0 for the first step), as HF's
 * {@code LambdaLR} does: with warmup, the first step runs at rate 0.
 */
public enum LrSchedule {
    /** Warmup, then linear decay to 0 at the last step. */
    LINEAR("linear"),
    /** Warmup, then half a cosine period down to 0. */
    COSINE("cosine"),
    /** The base rate throughout (HF's "constant" ignores warmup). */
    CONSTANT("constant"),
    /** Warmup, then the base rate. */
    CONSTANT_WITH_WARMUP("constant_with_warmup");

    /** HF's {@code lr_scheduler_type} spelling. */
    public final String hfName;

    LrSchedule(String hfName) {
        this.hfName = hfName;
    }

    /** Parses an HF name ("linear", "cosine", "constant", "constant_with_warmup"). */
    public static LrSchedule parse(String s) {
        String n = s.trim().toLowerCase(Locale.ROOT);
        for (LrSchedule x : values()) if (x.hfName.equals(n)) return x;
        throw new IllegalArgumentException("lr_scheduler_type must be linear, cosine, constant or constant_with_warmup, got '" + s + "'");
    }

    /**
     * The multiplier of the base learning rate for the step after {@code current} completed ones.
     *
     * @param warmup warmup steps (≥ 0)
     * @param total  total optimizer steps (≥ 1)
     */
    public double factor(long current, long warmup, long total) {
        if (this == CONSTANT) return 1.0;
        if (current < warmup) return (double) current / Math.max(1, warmup);
        switch (this) {
            case LINEAR:
                return Math.max(0.0, (double) (total - current) / Math.max(1, total - warmup));
            case COSINE: {
                double progress = (double) (current - warmup) / Math.max(1, total - warmup);
                return Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * 0.5 * 2.0 * progress)));
            }
            default:
                return 1.0;
        }
    }

    /** HF's warmup: {@code warmup_steps} when > 0, else ceil(warmup_ratio · total). */
    public static long warmupSteps(long warmupSteps, double warmupRatio, long total) {
        return warmupSteps > 0 ? warmupSteps : (long) Math.ceil(warmupRatio * total);
    }
}
