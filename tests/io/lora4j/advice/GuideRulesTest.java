package io.lora4j.advice;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.advice.GuideRules.DatasetFacts;
import io.lora4j.advice.GuideRules.Finding;
import io.lora4j.advice.GuideRules.Severity;
import io.lora4j.train.RunConfig;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class GuideRulesTest {
    /** A config that follows the guide: no finding. Each test changes one key. */
    static Map<String, Object> good() {
        Map<String, Object> m = new HashMap<>();
        m.put("model", "m.bin");
        m.put("dataset", "d.jsonl");
        return m;
    }

    static RunConfig cfg(Object... kv) {
        Map<String, Object> m = good();
        for (int i = 0; i < kv.length; i += 2) m.put((String) kv[i], kv[i + 1]);
        return RunConfig.from(m);
    }

    static Optional<Finding> rule(RunConfig c, DatasetFacts f, String id) {
        return GuideRules.check(c, f).stream().filter(x -> x.rule().equals(id)).findFirst();
    }

    static Optional<Finding> rule(RunConfig c, String id) {
        return rule(c, DatasetFacts.unknown(), id);
    }

    @Test
    void defaultsFollowTheGuide() {
        assertEquals(List.of(), GuideRules.check(cfg()));
    }

    /** Above 2e-4 is advice with the guide's context (a higher rate may work better for longer training), not a warning. */
    @Test
    void learningRate() {
        Finding f = rule(cfg("learning_rate", 1e-3, "max_steps", 500), "learning-rate").orElseThrow();
        assertEquals(Severity.ADVICE, f.severity());
        assertTrue(f.found().contains("0.001") && f.found().contains("500 steps"), f.found());
        assertTrue(f.why().contains("2e-4") && f.why().contains("For longer training, a higher learning rate may work better"), f.why());
        assertEquals(Severity.WARNING, rule(cfg("learning_rate", 1e-6), "learning-rate").orElseThrow().severity());
        assertTrue(rule(cfg("learning_rate", 5e-6), "learning-rate").isEmpty());
        assertTrue(rule(cfg("learning_rate", 2e-4), "learning-rate").isEmpty());
    }

    @Test
    void epochs() {
        assertEquals(Severity.WARNING, rule(cfg("num_train_epochs", 5), "epochs").orElseThrow().severity());
        assertTrue(rule(cfg("num_train_epochs", 3), "epochs").isEmpty());
        // max_steps over a known row count: 100 rows / (2 x 8) = 7 steps per epoch; 50 steps = 7.1 epochs
        assertTrue(rule(cfg("max_steps", 50), new DatasetFacts(false, 100, -1), "epochs").isPresent());
        assertTrue(rule(cfg("max_steps", 14), new DatasetFacts(false, 100, -1), "epochs").isEmpty());
        assertTrue(rule(cfg("max_steps", 50), "epochs").isEmpty(), "rows unknown: no claim");
        // the case: 1000 steps over 134 rows = 111 epochs; the change lists every overfitting remedy
        Finding f = rule(cfg("max_steps", 1000, "per_device_train_batch_size", 2, "gradient_accumulation_steps", 4),
                new DatasetFacts(false, 134, -1), "epochs").orElseThrow();
        assertTrue(f.found().contains("max_steps 1000 over 134 rows is 58.8 epochs"), f.found());
        for (String k : List.of("weight_decay 0.1", "gradient_accumulation_steps 8", "more data", "lora4j scale", "--factor 0.5",
                "merge --model BASE", "--average", "early_stopping_patience", "lora_dropout 0.1"))
            assertTrue(f.change().contains(k), k + " in " + f.change());
    }

    @Test
    void alphaRank() {
        Finding low = rule(cfg("r", 16, "lora_alpha", 8), "alpha-rank").orElseThrow();
        assertEquals(Severity.WARNING, low.severity());
        assertTrue(low.change().contains("16") && low.change().contains("32"), low.change());
        assertEquals(Severity.ADVICE, rule(cfg("r", 8, "lora_alpha", 32), "alpha-rank").orElseThrow().severity());
        assertTrue(rule(cfg("r", 16, "lora_alpha", 32), "alpha-rank").isEmpty());
        assertTrue(rule(cfg("r", 16, "lora_alpha", 16), "alpha-rank").isEmpty());
    }

    /** The three rsLoRA cases: alpha is judged on the effective scale alpha/sqrt(r). */
    @Test
    void alphaOnTheRsloraScale() {
        assertTrue(rule(cfg("r", 64, "lora_alpha", 16, "use_rslora", true), "alpha-rank").isEmpty(), "scale 16/8 = 2: not 'alpha/r 0.25 < 1'");
        Finding big = rule(cfg("r", 64, "lora_alpha", 64, "use_rslora", true), "alpha-rank").orElseThrow();
        assertEquals(Severity.WARNING, big.severity(), "scale 64/8 = 8");
        assertTrue(big.found().contains("sqrt(r 64) = 8") && big.change().contains("lora_alpha: 8") && big.change().contains("16"), big.toString());
        assertTrue(big.why().contains("alpha/sqrt(r)"), big.why());
        Finding low = rule(cfg("r", 64, "lora_alpha", 4, "use_rslora", true), "alpha-rank").orElseThrow();
        assertEquals(Severity.WARNING, low.severity(), "scale 4/8 = 0.5");
        assertEquals(Severity.ADVICE, rule(cfg("r", 16, "lora_alpha", 12, "use_rslora", true), "alpha-rank").orElseThrow().severity(), "scale 3");
        assertEquals(Severity.WARNING, rule(cfg("r", 8, "lora_alpha", 64), "alpha-rank").orElseThrow().severity(), "alpha/r 8");
    }

    /** Rank 4 is not flagged: the guide's underfitting remedies say r "usually is between 4 and 64". */
    @Test
    void rank() {
        assertTrue(rule(cfg("r", 4, "lora_alpha", 8), "rank").isEmpty());
        assertTrue(rule(cfg("r", 2, "lora_alpha", 4), "rank").isPresent());
        assertTrue(rule(cfg("r", 256, "lora_alpha", 256, "use_rslora", true), "rank").isPresent());
        assertTrue(rule(cfg("r", 32, "lora_alpha", 32), "rank").isEmpty());
    }

    @Test
    void dropout() {
        assertTrue(rule(cfg("lora_dropout", 0.3), "dropout").isPresent());
        assertTrue(rule(cfg("lora_dropout", 0.1), "dropout").isEmpty());
        assertTrue(rule(cfg("num_train_epochs", 3), "dropout").isPresent(), "long run, dropout 0: suggest 0.1 against overfitting");
        assertTrue(rule(cfg("num_train_epochs", 3, "lora_dropout", 0.05), "dropout").isEmpty());
    }

    @Test
    void weightDecay() {
        assertEquals(Severity.WARNING, rule(cfg("weight_decay", 0.5), "weight-decay").orElseThrow().severity());
        assertEquals(Severity.ADVICE, rule(cfg("weight_decay", 0.0), "weight-decay").orElseThrow().severity());
        assertTrue(rule(cfg("weight_decay", 0.1), "weight-decay").isEmpty());
    }

    @Test
    void warmup() {
        assertTrue(rule(cfg("warmup_ratio", 0.0), "warmup").isPresent());
        assertTrue(rule(cfg("warmup_ratio", 0.3), "warmup").isPresent());
        Finding f = rule(cfg("warmup_ratio", 0.0, "warmup_steps", 1, "max_steps", 100), "warmup").orElseThrow();
        assertTrue(f.change().contains("5 to 10"), f.change());
        assertTrue(rule(cfg("warmup_ratio", 0.0, "warmup_steps", 8, "max_steps", 100), "warmup").isEmpty());
        assertTrue(rule(cfg("warmup_ratio", 0.0, "warmup_steps", 8), "warmup").isEmpty(), "total unknown: no claim");
    }

    @Test
    void scheduler() {
        assertTrue(rule(cfg("lr_scheduler_type", "constant"), "scheduler").isPresent());
        assertTrue(rule(cfg("lr_scheduler_type", "cosine"), "scheduler").isEmpty());
    }

    @Test
    void targetModules() {
        Finding f = rule(cfg("target_modules", List.of("q_proj", "v_proj")), "target-modules").orElseThrow();
        assertTrue(f.found().contains("gate_proj") && !f.found().contains("q_proj"), f.found());
        assertTrue(rule(cfg("target_modules", List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
                "target-modules").isEmpty());
    }

    @Test
    void effectiveBatchAndSplit() {
        assertTrue(rule(cfg("per_device_train_batch_size", 1, "gradient_accumulation_steps", 2), "effective-batch").isPresent());
        assertTrue(rule(cfg("per_device_train_batch_size", 4, "gradient_accumulation_steps", 8), "effective-batch").isPresent());
        assertTrue(rule(cfg("per_device_train_batch_size", 4, "gradient_accumulation_steps", 1), "effective-batch").isEmpty());
        Finding s = rule(cfg("per_device_train_batch_size", 16, "gradient_accumulation_steps", 1), "batch-split").orElseThrow();
        assertTrue(s.change().contains("gradient_accumulation_steps: 8"), s.change());
        assertTrue(rule(cfg("per_device_train_batch_size", 8, "gradient_accumulation_steps", 2), "batch-split").isEmpty());
    }

    @Test
    void responsesOnly() {
        assertTrue(rule(cfg(), new DatasetFacts(true, 10, -1), "responses-only").isEmpty(), "auto is on for chat");
        assertTrue(rule(cfg("train_on_responses_only", false), new DatasetFacts(true, 10, -1), "responses-only").isPresent());
        assertTrue(rule(cfg("train_on_responses_only", false), new DatasetFacts(false, 10, -1), "responses-only").isEmpty());
        assertTrue(rule(cfg("train_on_responses_only", true, "chat_template", "chatml"), new DatasetFacts(true, 10, -1), "responses-only").isEmpty());
        assertTrue(rule(cfg("dataset_format", "conversational", "train_on_responses_only", false), "responses-only").isPresent(),
                "format says chat when facts are unknown");
    }

    @Test
    void rslora() {
        Finding f = rule(cfg("r", 64, "lora_alpha", 64), "rslora").orElseThrow();
        assertTrue(f.change().contains("use_rslora: true with lora_alpha 8 to 16") && f.change().contains("scale 8 instead of 1"), f.change());
        assertTrue(rule(cfg("r", 64, "lora_alpha", 64, "use_rslora", true), "rslora").isEmpty());
        assertTrue(rule(cfg("r", 32, "lora_alpha", 32), "rslora").isEmpty());
    }

    /** Training start warns about exactly doctor's WARNING-level findings, weight decay included. */
    @Test
    void startWarningsAreDoctorsWarnings() {
        RunConfig c = cfg("learning_rate", 1e-2, "num_train_epochs", 4, "r", 16, "lora_alpha", 4, "weight_decay", 0.5,
                "target_modules", List.of("q_proj"));
        List<String> ids = GuideRules.startWarnings(c, DatasetFacts.unknown()).stream().map(Finding::rule).toList();
        assertEquals(List.of("epochs", "alpha-rank", "weight-decay"), ids);
        assertEquals(GuideRules.check(c).stream().filter(f -> f.severity() == Severity.WARNING).toList(),
                GuideRules.startWarnings(c, DatasetFacts.unknown()));
    }

    @Test
    void loftqSpikeAndScale() {
        assertTrue(rule(cfg(), "loftq").isEmpty());
        Finding f = rule(cfg("init_lora_weights", "loftq", "load_in_4bit", true), "loftq").orElseThrow();
        assertTrue(f.why().contains("memory spike") && f.change().contains("lora4j plan") && !f.found().contains("cancels"), f.toString());
        Finding s2 = rule(cfg("init_lora_weights", "loftq", "load_in_4bit", true, "lora_alpha", 32), "loftq").orElseThrow();
        assertTrue(s2.found().contains("2 x the LoftQ correction") && s2.change().contains("lora_alpha: 16 for scale 1"), s2.toString());
    }

    @Test
    void evalAndEarlyStopping() {
        assertTrue(rule(cfg(), "eval").isEmpty(), "eval_split auto");
        assertTrue(rule(cfg("eval_split", 0), "eval").isPresent());
        assertTrue(rule(cfg("eval_split", 0, "eval_dataset", "e.jsonl"), "eval").isEmpty());
        assertTrue(rule(cfg("early_stopping_patience", 0), "early-stopping").isPresent());
        assertTrue(rule(cfg("early_stopping_patience", 0), new DatasetFacts(false, 10, -1, 0), "early-stopping").isEmpty(), "no eval rows");
    }
}
