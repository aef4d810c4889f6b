package io.lora4j.train;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import io.lora4j.data.Batch;
import io.lora4j.data.DataConfig;
import io.lora4j.data.DataPipeline;
import io.lora4j.data.Example;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.FormatException;
import io.lora4j.lora.LoftQ;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.MemoryTracker;
import io.lora4j.tokenizer.Tokenizer;
import io.lora4j.tokenizer.Tokenizers;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Deque;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Random;

/**
 * One fine-tuning run end to end: load the base (dense or NF4), attach LoRA, read the data, run the
 * optimizer steps with logging, evaluation, checkpoints and early stopping, then write the PEFT
 * adapter and {@value #METRICS} into the output directory. Progress lines go to the given stream.
 */
public final class TrainingRun {
    public static final String METRICS = "metrics.jsonl";
    private static final Gson GSON = new GsonBuilder().serializeSpecialFloatingPointValues().create();

    private TrainingRun() {}

    /**
     * What the run did.
     *
     * @param steps       optimizer steps taken
     * @param losses      the loss of every step
     * @param initialEval the eval loss of the base model before the first step, or NaN
     * @param finalEval   the last eval loss, or NaN without an eval set
     * @param stoppedEarly whether early stopping ended the run
     */
    public record Summary(long steps, List<Double> losses, double initialEval, double finalEval, boolean stoppedEarly) {}

    /**
     * Runs {@code cfg}, writing into {@code out}.
     *
     * @throws FormatException for unreadable inputs or a non-empty {@code out} without overwrite
     */
    public static Summary run(RunConfig cfg, Path out, boolean overwrite, PrintStream log) throws IOException {
        AtomicFiles.checkOutput(out.toAbsolutePath(), overwrite);
        Backend backend;
        try {
            backend = Backends.select(cfg.device() == null ? Optional.empty() : Optional.of(Device.parse(cfg.device())));
        } catch (IllegalStateException e) {
            throw new IllegalArgumentException("device " + cfg.device() + ": " + e.getMessage());
        }
        Tokenizer tok = Tokenizers.load(tokenizerPath(cfg.model(), cfg.tokenizer()));
        LoraConfig lc = cfg.lora();
        boolean loftq = lc.init() == LoraConfig.Init.LOFTQ;
        ModelLoader.Options opts = (cfg.loadIn4bit() && !loftq ? ModelLoader.Options.in4bit() : ModelLoader.Options.defaults()).withBackend(backend);
        LlamaWeights loaded = ModelLoader.load(cfg.model(), opts);
        LlamaWeights base = loaded;
        LoraAdapter adapter = null;
        try {
            if (tok.vocabSize() != loaded.config().vocabSize())
                throw new FormatException(cfg.model(), "the tokenizer has " + tok.vocabSize() + " tokens, the model's vocabulary " + loaded.config().vocabSize());
            if (lc.bias() != LoraConfig.Bias.NONE)
                log.println("note: bias=" + lc.bias().peftName + " selects no parameter on Llama (it has no biases), as in PEFT");
            if (loftq) {
                LoftQ.Result r = LoftQ.initialize(backend, loaded, lc, Nf4.DEFAULT_BLOCKSIZE, true);
                base = r.weights();
                adapter = r.adapter();
                log.printf(Locale.ROOT, "LoftQ (%d iteration%s): relative error of the NF4 base %.4f -> %.4f with the adapter%n",
                        lc.loftqIter(), lc.loftqIter() == 1 ? "" : "s", r.errorBefore(), r.errorAfter());
            } else {
                adapter = LoraAdapter.create(backend, loaded.config(), lc);
            }
            TrainConfig tc = cfg.train();
            int maxLen = Math.min(tc.maxSeqLength(), loaded.config().maxPositionEmbeddings());
            DataConfig dc = cfg.data();
            if (dc.maxSeqLength() != maxLen)
                dc = new DataConfig(dc.dataset(), dc.evalDataset(), dc.evalSplit(), dc.datasetFormat(), dc.chatTemplate(),
                        dc.trainOnResponsesOnly(), dc.instructionPart(), dc.responsePart(), dc.lastResponseOnly(), dc.packing(), maxLen,
                        dc.groupByLength(), dc.maxBadRowFraction(), dc.seed());
            DataPipeline data = DataPipeline.build(dc, tok, tokenizerPath(cfg.model(), cfg.tokenizer()));
            log.println("data: " + data.stats().summary());
            Files.createDirectories(out);
            if (overwrite) for (Path p : list(out)) AtomicFiles.deleteRecursively(p);
            return loop(cfg, out, backend, base, adapter, data, log);
        } finally {
            if (adapter != null) adapter.close();
            if (base != loaded) for (var l : base.layers()) for (var pw : l.projections().values()) pw.close();
            loaded.close();
        }
    }

    private static List<Path> list(Path dir) throws IOException {
        try (var s = Files.list(dir)) {
            return s.toList();
        }
    }

    private static Summary loop(RunConfig cfg, Path out, Backend backend, LlamaWeights base, LoraAdapter adapter, DataPipeline data,
            PrintStream log) throws IOException {
        TrainConfig tc = cfg.train();
        List<Batch> evalBatches = data.eval().isEmpty() ? null : data.evalBatches(tc.perDeviceTrainBatchSize());
        // HF: steps per epoch = ceil(sequences / (batch x GA)); sequences count packed rows once.
        long total = tc.totalSteps(data.trainSequences());
        long perEpoch = tc.stepsPerEpoch(data.trainSequences());
        String baseName = cfg.model().toString();
        MemoryTracker.GLOBAL.resetPeaks();
        List<Double> losses = new ArrayList<>();
        double lastEval = Double.NaN, bestEval = Double.POSITIVE_INFINITY, initialEval = Double.NaN;
        int badEvals = 0;
        boolean stopped = false;
        Deque<Path> checkpoints = new ArrayDeque<>();
        try (LoraTrainingModel model = new LoraTrainingModel(backend, base, adapter);
             Trainer trainer = new Trainer(model, tc, total);
             BufferedWriter metrics = Files.newBufferedWriter(out.resolve(METRICS), StandardCharsets.UTF_8,
                     StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING)) {
            log.printf(Locale.ROOT, "training: %d steps (%d per epoch), batch %d x accumulation %d, %d LoRA parameters (r %d, alpha %s, %s), warmup %d, %s%n",
                    total, perEpoch, tc.perDeviceTrainBatchSize(), tc.gradientAccumulationSteps(), adapter.parameterCount(), cfg.lora().r(),
                    fmt(cfg.lora().loraAlpha()), cfg.lora().targetModuleNames(), trainer.warmupSteps(), backend.description());
            // The base model's eval loss (every lora_B is still zero), so that a run shows what it changed.
            initialEval = evalBatches == null ? Double.NaN : evaluate(model, evalBatches);
            if (evalBatches != null) {
                JsonObject j0 = new JsonObject();
                j0.addProperty("step", 0);
                j0.addProperty("epoch", 0.0);
                j0.addProperty("eval_loss", initialEval);
                metrics.write(GSON.toJson(j0));
                metrics.newLine();
                log.printf(Locale.ROOT, "step 0/%d  eval_loss %.4f (base model)%n", total, initialEval);
            }
            int epoch = 0;
            List<List<Batch>> windows = data.steps(epoch, tc.perDeviceTrainBatchSize(), tc.gradientAccumulationSteps());
            int wi = 0;
            double logLoss = 0, logSeconds = 0;
            long logTokens = 0;
            int logCount = 0;
            long t0 = System.nanoTime();
            for (long step = 1; step <= total; step++) {
                if (wi == windows.size()) {
                    epoch++;
                    windows = data.steps(epoch, tc.perDeviceTrainBatchSize(), tc.gradientAccumulationSteps());
                    wi = 0;
                }
                Trainer.StepResult r = trainer.step(windows.get(wi++));
                losses.add(r.loss());
                logLoss += r.loss();
                logTokens += r.tokens();
                logSeconds += r.seconds();
                logCount++;
                boolean evalNow = evalBatches != null && ((tc.evalSteps() > 0 && step % tc.evalSteps() == 0) || step == total);
                Double evalLoss = evalNow ? evaluate(model, evalBatches) : null;
                if (step % tc.loggingSteps() == 0 || step == total || evalLoss != null) {
                    JsonObject j = new JsonObject();
                    j.addProperty("step", step);
                    j.addProperty("epoch", (double) step / perEpoch);
                    j.addProperty("loss", logLoss / logCount);
                    j.addProperty("learning_rate", r.learningRate());
                    j.addProperty("grad_norm", r.gradNorm());
                    j.addProperty("tokens_per_second", logTokens / logSeconds);
                    if (evalLoss != null) j.addProperty("eval_loss", evalLoss);
                    metrics.write(GSON.toJson(j));
                    metrics.newLine();
                    metrics.flush();
                    log.printf(Locale.ROOT, "step %d/%d  loss %.4f  lr %.3e  grad_norm %.4f  %.0f tok/s%s%n", step, total, logLoss / logCount,
                            r.learningRate(), r.gradNorm(), logTokens / logSeconds, evalLoss == null ? "" : String.format(Locale.ROOT, "  eval_loss %.4f", evalLoss));
                    logLoss = 0;
                    logTokens = 0;
                    logSeconds = 0;
                    logCount = 0;
                }
                if (evalLoss != null) {
                    lastEval = evalLoss;
                    if (evalLoss < bestEval - tc.earlyStoppingThreshold()) {
                        bestEval = evalLoss;
                        badEvals = 0;
                    } else if (tc.earlyStoppingPatience() > 0 && ++badEvals >= tc.earlyStoppingPatience() && step < total) {
                        log.printf(Locale.ROOT, "early stopping at step %d: eval_loss did not improve by more than %s for %d evaluations%n", step,
                                fmt(tc.earlyStoppingThreshold()), badEvals);
                        stopped = true;
                    }
                }
                if (tc.saveSteps() > 0 && step % tc.saveSteps() == 0 && step < total) {
                    Path ck = out.resolve("checkpoint-" + step);
                    adapter.save(ck, baseName, true);
                    checkpoints.addLast(ck);
                    while (tc.saveTotalLimit() > 0 && checkpoints.size() > tc.saveTotalLimit()) AtomicFiles.deleteRecursively(checkpoints.removeFirst());
                }
                if (stopped) break;
            }
            if (evalBatches != null && Double.isNaN(lastEval)) lastEval = evaluate(model, evalBatches);
            adapter.writeInto(out, baseName);
            JsonObject fin = new JsonObject();
            fin.addProperty("train_runtime_seconds", (System.nanoTime() - t0) / 1e9);
            fin.addProperty("steps", trainer.step());
            fin.addProperty("train_loss", losses.stream().mapToDouble(Double::doubleValue).average().orElse(Double.NaN));
            if (!Double.isNaN(lastEval)) fin.addProperty("eval_loss", lastEval);
            JsonObject peak = new JsonObject();
            Device dev = backend.device();
            for (Map.Entry<MemoryCategory, Long> e : MemoryTracker.GLOBAL.peaks(dev).entrySet())
                peak.addProperty(e.getKey().name().toLowerCase(Locale.ROOT), e.getValue());
            peak.addProperty("total", MemoryTracker.GLOBAL.peakTotal(dev));
            fin.add("peak_memory_bytes", peak);
            if (dev != Device.CPU) {
                JsonObject host = new JsonObject();
                for (Map.Entry<MemoryCategory, Long> e : MemoryTracker.GLOBAL.peaks(Device.CPU).entrySet())
                    host.addProperty(e.getKey().name().toLowerCase(Locale.ROOT), e.getValue());
                fin.add("peak_host_memory_bytes", host);
            }
            metrics.write(GSON.toJson(fin));
            metrics.newLine();
            log.printf(Locale.ROOT, "done: %d steps, adapter written to %s; peak memory %.1f MiB (%s)%n", trainer.step(), out,
                    MemoryTracker.GLOBAL.peakTotal(dev) / 1048576.0, peak);
        }
        return new Summary(losses.size(), List.copyOf(losses), initialEval, lastEval, stopped);
    }

    /** Token-mean loss of {@code rows} (no dropout, no gradients). */
    public static double evaluate(LoraTrainingModel model, List<Example> rows, int batch) {
        return evaluate(model, SimpleDataset.batches(rows, batch));
    }

    /** Token-mean loss over {@code batches} (no dropout, no gradients). */
    public static double evaluate(LoraTrainingModel model, List<Batch> batches) {
        double sum = 0;
        long n = 0;
        for (Batch b : batches) {
            sum += model.lossSum(b);
            n += b.targetTokens();
        }
        return sum / n;
    }

    private static String fmt(double d) {
        return d == Math.rint(d) ? Long.toString((long) d) : Double.toString(d);
    }

    /** The tokenizer path: explicit, else the model directory, else tokenizer.model/.bin/.json beside a .bin. */
    public static Path tokenizerPath(Path model, Path explicit) throws FormatException {
        if (explicit != null) return explicit;
        if (Files.isDirectory(model)) return model;
        Path dir = model.toAbsolutePath().getParent();
        for (String n : new String[] {"tokenizer.model", "tokenizer.bin", "tokenizer.json"}) {
            Path p = dir == null ? null : dir.resolve(n);
            if (p != null && Files.isRegularFile(p)) return p;
        }
        throw new FormatException(model, "no tokenizer.model, tokenizer.bin or tokenizer.json beside the model: give one (tokenizer: / --tokenizer PATH)");
    }
}
