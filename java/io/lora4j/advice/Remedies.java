package io.lora4j.advice;

import io.lora4j.lora.LoraConfig;
import io.lora4j.train.RunConfig;
import io.lora4j.train.TrainConfig;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The guide's remedies for overfitting and underfitting ("Avoiding Overfitting &amp; Underfitting"),
 * each written with lora4j's config keys, the run's current values and, for the post-training
 * fixes, the commands that implement them ({@code lora4j scale}, {@code lora4j merge --average}).
 * Every signal lists all of the guide's remedies, the one that answers it most directly first.
 */
public final class Remedies {
    private Remedies() {}

    /** What was seen, which decides the order of the remedies. */
    public enum Signal {
        /** More than 3 epochs configured (doctor and training start). */
        TOO_MANY_EPOCHS(true, "epochs", "early-stopping", "weight-decay", "dropout", "batch", "data", "learning-rate", "scale", "average"),
        /** Eval loss rose at consecutive evaluations while the train loss fell. */
        EVAL_RISING(true, "early-stopping", "epochs", "weight-decay", "dropout", "batch", "data", "learning-rate", "scale", "average"),
        /** Train loss below 0.2. */
        LOW_TRAIN_LOSS(true, "scale", "average", "epochs", "early-stopping", "weight-decay", "dropout", "batch", "data", "learning-rate"),
        /** Train loss barely moved after the warmup. */
        LOSS_FLAT(false, "learning-rate", "epochs", "rank", "batch", "data"),
        /** Train and eval loss flat, eval loss still near the base model's. */
        PLATEAU_HIGH(false, "epochs", "rank", "learning-rate", "batch", "data"),
        /** The gradient norm collapsed while the loss stayed high. */
        GRAD_NORM_COLLAPSE(false, "learning-rate", "rank", "batch", "epochs", "data");

        /** Whether the signal means overfitting (else underfitting). */
        public final boolean overfitting;
        final List<String> order;

        Signal(boolean overfitting, String... order) {
            this.overfitting = overfitting;
            this.order = List.of(order);
        }
    }

    /** The remedies for {@code signal} with {@code c}'s values ({@code c} may be null: generic values). */
    public static List<String> forSignal(RunConfig c, Signal signal, String adapterDir) {
        Map<String, String> all = signal.overfitting ? overfittingTexts(c, adapterDir) : underfittingTexts(c);
        List<String> out = new ArrayList<>();
        for (String id : signal.order) out.add(all.get(id));
        return out;
    }

    /** The guide's overfitting remedies for {@code signal}, most specific first. */
    public static List<String> overfitting(RunConfig c, Signal signal) {
        return forSignal(c, signal, null);
    }

    private static Map<String, String> overfittingTexts(RunConfig c, String adapterDir) {
        TrainConfig t = c == null ? TrainConfig.defaults() : c.train();
        LoraConfig l = c == null ? LoraConfig.defaults() : c.lora();
        String out = adapterDir == null ? "OUT" : adapterDir;
        long eff = (long) t.perDeviceTrainBatchSize() * t.gradientAccumulationSteps();
        return Map.of(
                "epochs", "fewer epochs: num_train_epochs 1 to 3" + (t.maxSteps() > 0 ? " (or a smaller max_steps, now " + t.maxSteps() + ")"
                        : " (now " + GuideRules.num(t.numTrainEpochs()) + ")"),
                "early-stopping", "evaluation early stopping: keep an eval set (eval_split: auto or eval_dataset) with early_stopping_patience "
                        + (t.earlyStoppingPatience() > 0 ? t.earlyStoppingPatience() + " (set)" : TrainConfig.DEFAULT_EARLY_STOPPING_PATIENCE
                        + " (now 0)") + ": stop when eval loss rises",
                "weight-decay", t.weightDecay() < GuideRules.WD_MAX ? "more weight decay: weight_decay 0.1 (now " + GuideRules.num(t.weightDecay())
                        + "; the guide's 0.01 to 0.1)" : "weight decay: already " + GuideRules.num(t.weightDecay()) + ", at or above the guide's 0.1",
                "dropout", l.loraDropout() < GuideRules.DROPOUT_MAX ? "lora_dropout 0.1 (now " + GuideRules.num(l.loraDropout()) + ")"
                        : "lora_dropout: already " + GuideRules.num(l.loraDropout()) + ", at or above the guide's 0.1",
                "batch", "a larger effective batch: gradient_accumulation_steps " + 2 * t.gradientAccumulationSteps() + " (effective batch "
                        + eff + " -> " + 2 * eff + ")",
                "data", "more data: combine your dataset with higher-quality open datasets",
                "learning-rate", "adjust learning_rate (now " + GuideRules.num(t.learningRate()) + "): a high rate overfits short runs;"
                        + " for longer runs a higher one may work better: try both",
                "scale", "after training, LoRA alpha scaling x0.5: lora4j scale --adapter " + out + " --factor 0.5 --out " + out + "-half",
                "average", "after training, weight averaging (base + finetune) / 2: lora4j merge --model BASE --adapter " + out
                        + " --average --out merged");
    }

    private static Map<String, String> underfittingTexts(RunConfig c) {
        TrainConfig t = c == null ? TrainConfig.defaults() : c.train();
        LoraConfig l = c == null ? LoraConfig.defaults() : c.lora();
        int r2 = 2 * l.r();
        return Map.of(
                "learning-rate", "raise learning_rate (now " + GuideRules.num(t.learningRate()) + ", e.g. " + GuideRules.num(2 * t.learningRate())
                        + ") for a short run; for a long run try lowering it instead: test both",
                "epochs", t.maxSteps() > 0 ? "train longer: max_steps " + 2 * t.maxSteps() + " (now " + t.maxSteps() + "), watching eval loss"
                        : "more epochs: num_train_epochs " + GuideRules.num(Math.floor(t.numTrainEpochs()) + 1) + " (now "
                        + GuideRules.num(t.numTrainEpochs()) + "), watching eval loss",
                "rank", "raise r and lora_alpha: r " + r2 + ", lora_alpha " + r2 + " to " + 2 * r2 + " (now r " + l.r() + ", alpha "
                        + GuideRules.num(l.loraAlpha()) + "; r usually 4 to 64, bigger for smaller models or harder data)",
                "batch", "a smaller batch, down to 1: per_device_train_batch_size 1" + (t.gradientAccumulationSteps() > 1
                        ? ", gradient_accumulation_steps " + Math.max(1, t.gradientAccumulationSteps() / 2) : "") + " (now "
                        + t.perDeviceTrainBatchSize() + " x " + t.gradientAccumulationSteps() + "): updates more vigorously",
                "data", "a more domain-relevant, high-quality dataset for the target task");
    }
}
