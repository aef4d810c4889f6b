package io.lora4j.advice;

import io.lora4j.data.DataConfig;
import io.lora4j.data.DataStats;
import io.lora4j.data.DatasetFormat;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.Projection;
import io.lora4j.train.LrSchedule;
import io.lora4j.train.RunConfig;
import io.lora4j.train.TrainConfig;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * The rules of Unsloth's "LoRA Hyperparameters Guide" (/work/shared/reference, DESIGN.md intro),
 * checked against a {@link RunConfig} and, when known, facts about the dataset. Every finding
 * says what it found, what it would change, and why, in the guide's words, with the section.
 * Pure: reads nothing, prints nothing.
 */
public final class GuideRules {
    /** The guide's typical learning-rate range for LoRA/QLoRA ("2e-4 (0.0002) to 5e-6"). */
    public static final double LR_MIN = 5e-6, LR_MAX = 2e-4;
    /** The guide's recommended epochs ("1-3 epochs"). */
    public static final double MAX_EPOCHS = 3;
    /**
     * The smallest rank without advice: the guide's underfitting remedies say r "usually is between 4
     * and 64", and its rank table lists 8 to 128, so 4 to 128 pass.
     */
    public static final int RANK_MIN = 4, RANK_MAX = 128;
    /** The guide's dropout range: "0 (default) to 0.1". */
    public static final double DROPOUT_MAX = 0.1;
    /** The guide's weight decay: "0.01 (recommended) - 0.1". */
    public static final double WD_MIN = 0.01, WD_MAX = 0.1;
    /** The guide's effective batch size: "4 to 16, Recommended: 16 (from 2 * 8)". */
    public static final int EFFECTIVE_BATCH_MIN = 4, EFFECTIVE_BATCH_MAX = 16;
    /**
     * Largest per-device batch before lora4j suggests moving it into gradient accumulation. The
     * guide's table recommends batch 2 and says batch 32 "will likely fail on most GPUs"; 8 is
     * lora4j's line between the two, not the guide's number.
     */
    public static final int BATCH_SPLIT_MAX = 8;
    /** The guide's warmup: "5-10% of total steps". */
    public static final double WARMUP_MIN = 0.05, WARMUP_MAX = 0.10;
    /**
     * Rank from which lora4j suggests rsLoRA. The guide says only "particularly for higher ranks";
     * 64 is lora4j's threshold (the top half of the guide's rank table).
     */
    public static final int RSLORA_RANK = 64;
    /** The guide's alpha/rank: "alpha/rank = 1 or 2", "keep alpha/rank at least = 1". */
    public static final double SCALE_MIN = 1, SCALE_MAX = 2;
    /**
     * Effective scale from which a large alpha is a warning rather than advice: twice the guide's
     * largest (2). lora4j's line, not the guide's: rsLoRA with the guide's alpha = r at r 64 gives 8.
     */
    public static final double SCALE_WARN = 4;

    private GuideRules() {}

    /** How much a finding matters: a warning is a setting the guide says goes wrong; advice is a better choice. */
    public enum Severity {
        ADVICE, WARNING;

        public String label() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /**
     * One rule that applies.
     *
     * @param rule     stable id, e.g. "learning-rate"
     * @param severity advice or warning
     * @param found    what the config (or data) has
     * @param change   what the guide would change
     * @param why      the guide's reason (quoted or paraphrased)
     * @param section  the guide's section that says so
     */
    public record Finding(String rule, Severity severity, String found, String change, String why, String section) {
        /** Several lines: "[warning] rule: found / change / why (section)". */
        public String describe() {
            return "[" + severity.label() + "] " + rule + ": " + found + "\n  change: " + change + "\n  why:    " + why + " (guide: " + section + ")";
        }
    }

    /**
     * What is known about the training data; any field may be unknown. {@code doctor} counts rows
     * of the file(s); a training run counts sequences per epoch (rows after eval_split, text rows
     * split at max_seq_length, packing): the same number unless rows are split or packed.
     *
     * @param chat     whether rows are conversations (messages, sharegpt, alpaca): null when unknown
     * @param rows     training rows (after the eval split), or -1 when unknown
     * @param tokens   training tokens, or -1 when unknown
     * @param evalRows rows of the eval set (eval_dataset or eval_split), or -1 when unknown
     */
    public record DatasetFacts(Boolean chat, long rows, long tokens, long evalRows) {
        public DatasetFacts(Boolean chat, long rows, long tokens) {
            this(chat, rows, tokens, -1);
        }

        public static DatasetFacts unknown() {
            return new DatasetFacts(null, -1, -1, -1);
        }

        /** The facts a training run has: its data pipeline's statistics. */
        public static DatasetFacts of(DataStats s) {
            return new DatasetFacts(isChat(s.format()), s.trainSequences(), s.trainTokens(), s.evalRows());
        }

        /** Whether rows in {@code format} are turns of a conversation, which response-only masking applies to. */
        public static boolean isChat(DatasetFormat format) {
            return format == DatasetFormat.CONVERSATIONAL || format == DatasetFormat.SHAREGPT || format == DatasetFormat.ALPACA;
        }
    }

    /** Every rule, in the guide's order, without dataset facts. */
    public static List<Finding> check(RunConfig c) {
        return check(c, DatasetFacts.unknown());
    }

    /** Every rule, in the guide's order. */
    public static List<Finding> check(RunConfig c, DatasetFacts facts) {
        List<Finding> f = new ArrayList<>();
        learningRate(c, facts, f);
        epochs(c, facts, f);
        rank(c, f);
        alpha(c, f);
        dropout(c, facts, f);
        weightDecay(c, f);
        warmup(c, facts, f);
        scheduler(c, f);
        targetModules(c, f);
        effectiveBatch(c, f);
        batchSplit(c, f);
        responsesOnly(c, facts, f);
        rslora(c, f);
        evaluation(c, facts, f);
        loftq(c, f);
        return f;
    }

    /**
     * The rules a run warns about when it starts: every WARNING-level finding of {@link #check},
     * from the same facts, so that training and {@code doctor} never disagree.
     */
    public static List<Finding> startWarnings(RunConfig c, DatasetFacts facts) {
        List<Finding> f = check(c, facts);
        f.removeIf(x -> x.severity() != Severity.WARNING);
        return f;
    }

    static String num(double v) {
        if (v == Math.rint(v) && Math.abs(v) < 1e9) return Long.toString((long) v);
        if (Math.abs(v) < 1e-3) return String.format(Locale.ROOT, "%.0e", v).replace("e-0", "e-");
        return String.format(Locale.ROOT, "%.4g", v).replaceAll("\\.?0+$", "");
    }

    private static void learningRate(RunConfig c, DatasetFacts facts, List<Finding> f) {
        double lr = c.train().learningRate();
        String section = "Key Fine-tuning Hyperparameters / Learning Rate";
        if (lr > LR_MAX * 1.0000001) {
            long steps = totalSteps(c.train(), facts);
            f.add(new Finding("learning-rate", Severity.ADVICE, "learning_rate " + num(lr) + " is above the guide's 2e-4 starting point"
                    + (steps > 0 ? " (a run of " + steps + " steps)" : ""),
                    "learning_rate: 2e-4 for a short run; keep the higher rate only if a longer run does better with it",
                    "\"For normal LoRA/QLoRA fine-tuning, we recommend 2e-4 as a starting point\"; \"A high learning rate often leads to"
                            + " overfitting, especially during short training runs. For longer training, a higher learning rate may work"
                            + " better. It's best to experiment with both\"", section));
        } else if (lr < LR_MIN * 0.9999999) {
            f.add(new Finding("learning-rate", Severity.WARNING, "learning_rate " + num(lr) + " is below the guide's range 5e-6..2e-4",
                    "learning_rate: 2e-4 (LoRA/QLoRA start) or 5e-6 (RL)",
                    "typical range \"2e-4 (0.0002) to 5e-6\"; low learning rates \"can lead to overfitting or even prevent the model from"
                            + " learning\"", section));
        }
    }

    /** Epochs the run will make: num_train_epochs, or max_steps over the rows when both are known; NaN when unknown. */
    static double epochs(TrainConfig t, DatasetFacts facts) {
        if (t.maxSteps() <= 0) return t.numTrainEpochs();
        if (facts.rows() <= 0) return Double.NaN;
        return (double) t.maxSteps() / t.stepsPerEpoch(facts.rows());
    }

    /** Total optimizer steps, or -1 when unknown (epochs without a row count). */
    static long totalSteps(TrainConfig t, DatasetFacts facts) {
        if (t.maxSteps() > 0) return t.maxSteps();
        return facts.rows() > 0 ? t.totalSteps(facts.rows()) : -1;
    }

    private static void epochs(RunConfig c, DatasetFacts facts, List<Finding> f) {
        double e = epochs(c.train(), facts);
        if (e > MAX_EPOCHS + 1e-9) {
            String found = c.train().maxSteps() > 0
                    ? "max_steps " + c.train().maxSteps() + " over " + facts.rows() + " rows is " + String.format(Locale.ROOT, "%.1f", e) + " epochs"
                    : "num_train_epochs " + num(e);
            f.add(new Finding("epochs", Severity.WARNING, found + " (more than 3)",
                    String.join("; ", Remedies.overfitting(c, Remedies.Signal.TOO_MANY_EPOCHS)),
                    "\"Recommended: 1-3 epochs. For most instruction-based datasets, training for more than 3 epochs offers diminishing"
                            + " returns and increases the risk of overfitting\"",
                    "Key Fine-tuning Hyperparameters / Epochs; Avoiding Overfitting & Underfitting"));
        }
    }

    private static void rank(RunConfig c, List<Finding> f) {
        int r = c.lora().r();
        if (r < RANK_MIN || r > RANK_MAX)
            f.add(new Finding("rank", Severity.ADVICE, "r " + r + " is outside " + RANK_MIN + ".." + RANK_MAX, "r: 16 (or 32)",
                    "the rank table lists 8, 16, 32, 64, 128 and says \"Choose 16 or 32\"; against underfitting the guide says rank"
                            + " \"usually is between 4 and 64\"; a higher rank adds capacity and memory and \"can cause overfitting\"",
                    "Hyperparameters & Recommendations; Underfitting"));
    }

    /** "lora_alpha 16 / sqrt(r 64) = 2 (use_rslora)" or "lora_alpha 8 / r 16 = 0.5". */
    static String scaleText(LoraConfig l) {
        return l.useRslora()
                ? "lora_alpha " + num(l.loraAlpha()) + " / sqrt(r " + l.r() + ") = " + num(l.scaling()) + " (use_rslora)"
                : "lora_alpha " + num(l.loraAlpha()) + " / r " + l.r() + " = " + num(l.scaling());
    }

    /** The alphas that give the guide's scale 1 and 2 at rank r, with or without rsLoRA. */
    static String alphaChange(LoraConfig l) {
        double one = l.useRslora() ? Math.sqrt(l.r()) : l.r();
        return l.useRslora()
                ? "lora_alpha: " + num(one) + " (= sqrt(r): scale 1) to " + num(2 * one) + " (= 2 sqrt(r): scale 2)"
                : "lora_alpha: " + l.r() + " (= r) or " + 2 * l.r() + " (= 2r)";
    }

    /**
     * Alpha on the effective scale: alpha/r, or alpha/√r with rsLoRA. The guide states its rule on
     * alpha/r ("keep alpha/rank at least = 1", "alpha/rank = 1 or 2"); with rsLoRA the same update
     * strength is alpha/√r in 1..2, which is what this checks.
     */
    private static void alpha(RunConfig c, List<Finding> f) {
        LoraConfig l = c.lora();
        double scale = l.scaling();
        String section = "LoRA Alpha and Rank relationship";
        String on = l.useRslora() ? " (with use_rslora the update is scaled by alpha/sqrt(r), so the guide's alpha/rank rule is"
                + " applied to that scale)" : "";
        if (scale < SCALE_MIN - 1e-9) {
            f.add(new Finding("alpha-rank", Severity.WARNING, scaleText(l) + " < 1", alphaChange(l),
                    "the update is scaled by alpha/rank, \"so we should keep alpha/rank at least = 1\"" + on, section));
        } else if (scale > SCALE_MAX + 1e-9) {
            boolean far = scale > SCALE_WARN + 1e-9;
            f.add(new Finding("alpha-rank", far ? Severity.WARNING : Severity.ADVICE, scaleText(l) + " > 2"
                    + (far ? " (more than twice the guide's largest)" : ""), alphaChange(l),
                    "\"set the alpha to equal to the rank, or at least 2 times the rank. This means alpha/rank = 1 or 2\"" + on, section));
        }
    }

    private static void dropout(RunConfig c, DatasetFacts facts, List<Finding> f) {
        double p = c.lora().loraDropout();
        String section = "Avoiding Overfitting & Underfitting / lora_dropout";
        if (p > DROPOUT_MAX + 1e-9) {
            f.add(new Finding("dropout", Severity.ADVICE, "lora_dropout " + num(p) + " is above the guide's 0..0.1", "lora_dropout: 0 (or 0.1 against overfitting)",
                    "the guide recommends \"0 (default) to 0.1\" and calls dropout \"Not that useful\": for the short runs of fine-tuning"
                            + " it \"may be an unreliable regularizer\"",
                    section));
        } else if (p == 0 && epochs(c.train(), facts) >= MAX_EPOCHS - 1e-9) {
            f.add(new Finding("dropout", Severity.ADVICE, "lora_dropout 0 with " + num(epochs(c.train(), facts)) + " epochs",
                    "lora_dropout: 0.1 if eval loss rises (overfitting)",
                    "0 is the default, \"but we recommend a non-zero value if you suspect overfitting\"; against overfitting:"
                            + " \"Increase lora_dropout. Use a value like 0.1\"",
                    section));
        }
    }

    private static void weightDecay(RunConfig c, List<Finding> f) {
        double wd = c.train().weightDecay();
        String why = "weight decay penalizes large weights to prevent overfitting: \"0.01 (recommended) - 0.1\", \"Don't use too large numbers!\"";
        if (wd > WD_MAX + 1e-12)
            f.add(new Finding("weight-decay", Severity.WARNING, "weight_decay " + num(wd) + " is above 0.1", "weight_decay: 0.01", why,
                    "Hyperparameters & Recommendations"));
        else if (wd < WD_MIN - 1e-12)
            f.add(new Finding("weight-decay", Severity.ADVICE, "weight_decay " + num(wd) + " is below 0.01", "weight_decay: 0.01", why,
                    "Hyperparameters & Recommendations"));
    }

    private static void warmup(RunConfig c, DatasetFacts facts, List<Finding> f) {
        TrainConfig t = c.train();
        long total = totalSteps(t, facts);
        double frac;
        String found;
        if (t.warmupSteps() > 0) {
            if (total <= 0) return; // a step count against an unknown total: nothing to compare
            frac = (double) t.warmupSteps() / total;
            found = "warmup_steps " + t.warmupSteps() + " of " + total + " steps";
        } else {
            frac = t.warmupRatio();
            found = "warmup_ratio " + num(frac);
        }
        if (frac >= WARMUP_MIN - 1e-9 && frac <= WARMUP_MAX + 1e-9) return;
        long lo = Math.max(1, Math.round(WARMUP_MIN * total)), hi = Math.max(1, Math.round(WARMUP_MAX * total));
        String change = total > 0
                ? "warmup_steps: " + lo + (hi > lo ? " to " + hi : "") + " (or warmup_ratio: 0.05)"
                : "warmup_ratio: 0.05 to 0.1";
        f.add(new Finding("warmup", Severity.ADVICE, found + String.format(Locale.ROOT, " = %.1f %% of the steps", 100 * frac), change,
                "warmup \"gradually increases the learning rate at the start of training\": \"5-10% of total steps\"",
                "Hyperparameters & Recommendations"));
    }

    private static void scheduler(RunConfig c, List<Finding> f) {
        LrSchedule s = c.train().lrScheduler();
        if (s != LrSchedule.LINEAR && s != LrSchedule.COSINE)
            f.add(new Finding("scheduler", Severity.ADVICE, "lr_scheduler_type " + s.name().toLowerCase(Locale.ROOT), "lr_scheduler_type: linear (or cosine)",
                    "the scheduler \"adjusts the learning rate dynamically during training\": recommended \"linear or cosine\"",
                    "Hyperparameters & Recommendations"));
    }

    private static void targetModules(RunConfig c, List<Finding> f) {
        Set<Projection> t = c.lora().targetModules();
        if (t.containsAll(EnumSet.allOf(Projection.class))) return;
        List<String> missing = new ArrayList<>();
        for (Projection p : Projection.values()) if (!t.contains(p)) missing.add(p.moduleName);
        f.add(new Finding("target-modules", Severity.ADVICE, "target_modules lacks " + String.join(", ", missing),
                "target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]",
                "\"it's best to apply LoRA to both attention and MLP layers\": QLoRA-All \"performs best overall\"",
                "LoRA Target Modules and QLoRA vs LoRA"));
    }

    private static void effectiveBatch(RunConfig c, List<Finding> f) {
        TrainConfig t = c.train();
        long eff = (long) t.perDeviceTrainBatchSize() * t.gradientAccumulationSteps();
        if (eff >= EFFECTIVE_BATCH_MIN && eff <= EFFECTIVE_BATCH_MAX) return;
        f.add(new Finding("effective-batch", Severity.ADVICE,
                "effective batch " + t.perDeviceTrainBatchSize() + " x " + t.gradientAccumulationSteps() + " = " + eff + " is outside 4..16",
                "per_device_train_batch_size: 2, gradient_accumulation_steps: 8 (effective 16)",
                eff < EFFECTIVE_BATCH_MIN ? "\"A smaller Effective Batch Size may introduce more variance\"; \"4 to 16, Recommended: 16 (from 2 * 8)\""
                        : "the guide's range is \"4 to 16, Recommended: 16 (from 2 * 8)\"",
                "Gradient Accumulation and Batch Size equivalency / Effective Batch Size"));
    }

    private static void batchSplit(RunConfig c, List<Finding> f) {
        TrainConfig t = c.train();
        int b = t.perDeviceTrainBatchSize();
        if (b <= BATCH_SPLIT_MAX) return;
        long eff = (long) b * t.gradientAccumulationSteps();
        long newGa = (eff + 1) / 2;
        f.add(new Finding("batch-split", Severity.ADVICE, "per_device_train_batch_size " + b + " holds " + b + " sequences in memory at once",
                "per_device_train_batch_size: 2, gradient_accumulation_steps: " + newGa + " (same effective batch)",
                "\"To avoid OOM (out of memory) errors, always prefer to set a smaller batch_size and increase gradient_accumulation_steps\";"
                        + " with the gradient accumulation fix both give the same training",
                "The VRAM & Performance Trade-off"));
    }

    private static void responsesOnly(RunConfig c, DatasetFacts facts, List<Finding> f) {
        if (c.data() == null || !Boolean.FALSE.equals(c.data().trainOnResponsesOnly())) return;
        DatasetFormat fmt = c.data().datasetFormat();
        boolean chat = facts.chat() != null ? facts.chat() : DatasetFacts.isChat(fmt);
        if (!chat) return;
        f.add(new Finding("responses-only", Severity.ADVICE, "chat data trained on every token (train_on_responses_only false)",
                "train_on_responses_only: auto (the default: on for conversations) or true",
                "\"training on completions only increases accuracy by quite a bit, especially for multi-turn conversational finetunes\"",
                "Training on completions only, masking out inputs"));
    }

    private static void rslora(RunConfig c, List<Finding> f) {
        LoraConfig l = c.lora();
        if (l.r() < RSLORA_RANK || l.useRslora()) return;
        double root = Math.sqrt(l.r());
        f.add(new Finding("rslora", Severity.ADVICE, "r " + l.r() + " without use_rslora",
                "use_rslora: true with lora_alpha " + num(root) + " to " + num(2 * root) + " (alpha/sqrt(r) = 1 to 2); keeping lora_alpha "
                        + num(l.loraAlpha()) + " would make the scale " + num(l.loraAlpha() / root) + " instead of " + num(l.scaling()),
                "rank-stabilized LoRA \"can sometimes improve stability, particularly for higher ranks\"; by the rsLoRA paper"
                        + " \"theoretically this is the optimum\"; the effective scaling \"becomes lora_alpha / sqrt(r)\", so alpha must"
                        + " shrink with it to keep the guide's alpha/rank of 1 to 2",
                "LoRA Alpha and Rank relationship"));
    }

    /**
     * LoftQ: the guide says it "may cause a significant memory spike at the start of training"; and
     * with PEFT's split the adapter starts at s·L·R, the LoftQ correction only when s = 1.
     */
    private static void loftq(RunConfig c, List<Finding> f) {
        LoraConfig l = c.lora();
        if (l.init() != LoraConfig.Init.LOFTQ) return;
        boolean unit = Math.abs(l.scaling() - 1) < 1e-9;
        String scale = unit ? "" : "; with " + scaleText(l) + " the adapter starts at " + num(l.scaling()) + " x the LoftQ correction, as in"
                + " PEFT (at scale 2 that cancels its gain exactly)";
        f.add(new Finding("loftq", Severity.ADVICE, "init_lora_weights loftq: the dense base and its NF4 copy are both held at start-up" + scale,
                "check the spike with `lora4j plan --model M --load-in-4bit` (\"LoftQ start-up spike\")"
                        + (unit ? "" : "; lora_alpha: " + num(l.useRslora() ? Math.sqrt(l.r()) : l.r()) + " for scale 1"),
                "LoftQ \"can improve accuracy but may cause a significant memory spike at the start of training\"",
                "LoRA Hyperparameters in Unsloth / loftq_config"));
    }

    /**
     * Evaluation and early stopping: the guide's overfitting remedies rely on watching eval loss
     * ("enable evaluation and stop when the evaluation loss increases for a few steps").
     */
    private static void evaluation(RunConfig c, DatasetFacts facts, List<Finding> f) {
        DataConfig d = c.data();
        if (d == null) return;
        String section = "Avoiding Overfitting & Underfitting / Evaluation early stopping";
        String why = "\"Evaluation early stopping - enable evaluation and stop when the evaluation loss increases for a few steps\"";
        if (d.evalDataset() == null && d.evalSplit() == 0) {
            f.add(new Finding("eval", Severity.ADVICE, "no eval set (eval_split 0, no eval_dataset): overfitting cannot be seen",
                    "eval_split: auto (5 % of the rows, at most " + DataConfig.AUTO_EVAL_MAX_ROWS + ") or eval_dataset: FILE", why, section));
        } else if (c.train().earlyStoppingPatience() == 0 && facts.evalRows() != 0) {
            f.add(new Finding("early-stopping", Severity.ADVICE, "early_stopping_patience 0: training goes on while eval loss rises",
                    "early_stopping_patience: " + TrainConfig.DEFAULT_EARLY_STOPPING_PATIENCE, why, section));
        }
    }
}
