package io.lora4j.train;

import com.google.gson.Gson;
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
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Deque;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.BooleanSupplier;

/**
 * One fine-tuning run end to end: load the base (dense or NF4), attach LoRA, read the data, run the
 * optimizer steps with logging, evaluation, checkpoints and early stopping, then write the PEFT
 * adapter and {@value #METRICS} into the output directory. Progress lines go to the given stream.
 *
 * <h2>Resuming and crash safety</h2>
 * Every save_steps step, and at the end, a full checkpoint ({@link TrainingCheckpoint}: adapter,
 * AdamW moments, loop state, manifest) is written atomically into {@code checkpoint-N}. A run
 * resumed from it ({@link Options#resume}) finishes with the same adapter bytes as one that was
 * never stopped: the step counters, data position (epoch, window), dropout seeds (a function of
 * seed and step), schedule and early-stopping state all come back. The output directory is locked
 * ({@link RunLock}) while a run writes into it. The caller can ask the run to stop
 * ({@link Options#stopRequested}, polled after every step): it checkpoints and returns
 * {@link Status#INTERRUPTED}; library code never exits the process.
 *
 * <p>A step whose loss or gradient is not finite is skipped ({@link Trainer}); after
 * {@link Options#maxBadSteps} consecutive skipped steps the run stops ({@link Status#DIVERGED})
 * with a checkpoint of the last good state and a message naming the likely cause.
 */
public final class TrainingRun {
    public static final String METRICS = "metrics.jsonl";
    /** Consecutive skipped steps after which a run stops (the CLI's --max-bad-steps default). */
    public static final int DEFAULT_MAX_BAD_STEPS = 5;
    /** Training rows named in a message, at most. */
    private static final int MAX_ROWS_SHOWN = 20;
    private static final TrainingListener NO_LISTENER = new TrainingListener() {};
    private static final Gson GSON_TREE = new Gson();

    private TrainingRun() {}

    /** How a run ended. */
    public enum Status {
        /** All steps done. */
        COMPLETED,
        /** Early stopping ended it (eval loss stopped improving). */
        EARLY_STOPPED,
        /** {@link Options#stopRequested} asked it to stop; a checkpoint was written. */
        INTERRUPTED,
        /** Too many consecutive steps had a non-finite loss or gradient; the last good state was checkpointed. */
        DIVERGED
    }

    /**
     * What the run did.
     *
     * @param steps       optimizer steps taken, counting those of a resumed run's earlier sessions
     * @param losses      the loss of every step (NaN for a skipped step)
     * @param initialEval the eval loss of the base model before the first step, or NaN
     * @param finalEval   the last eval loss, or NaN without an eval set
     * @param status      how it ended
     * @param checkpoint  the last checkpoint written (null when none was)
     * @param message     one line on how it ended
     */
    public record Summary(long steps, List<Double> losses, double initialEval, double finalEval, Status status, Path checkpoint,
            String message) {
        /** Whether early stopping ended the run. */
        public boolean stoppedEarly() {
            return status == Status.EARLY_STOPPED;
        }
    }

    /**
     * How to run.
     *
     * @param overwrite     replace a non-empty output directory (not with resume)
     * @param resume        null for a new run, else a previous run's output directory (its newest
     *                      valid checkpoint is used) or one of its checkpoint-N directories
     * @param maxBadSteps   consecutive skipped (non-finite) steps that stop the run, ≥ 1
     * @param stopRequested polled after every step: true makes the run checkpoint and return
     *                      {@link Status#INTERRUPTED}
     * @param listener      observes the run
     */
    public record Options(boolean overwrite, Path resume, int maxBadSteps, BooleanSupplier stopRequested, TrainingListener listener) {
        public Options {
            if (maxBadSteps < 1) throw new IllegalArgumentException("max bad steps must be >= 1, got " + maxBadSteps);
            if (overwrite && resume != null) throw new IllegalArgumentException("overwrite and resume exclude each other");
            Objects.requireNonNull(stopRequested, "stopRequested");
            Objects.requireNonNull(listener, "listener");
        }

        public static Options defaults() {
            return new Options(false, null, DEFAULT_MAX_BAD_STEPS, () -> false, NO_LISTENER);
        }

        public Options withOverwrite(boolean o) {
            return new Options(o, resume, maxBadSteps, stopRequested, listener);
        }

        public Options withResume(Path dir) {
            return new Options(overwrite, dir, maxBadSteps, stopRequested, listener);
        }

        public Options withMaxBadSteps(int n) {
            return new Options(overwrite, resume, n, stopRequested, listener);
        }

        public Options withStopRequested(BooleanSupplier s) {
            return new Options(overwrite, resume, maxBadSteps, s, listener);
        }

        public Options withListener(TrainingListener l) {
            return new Options(overwrite, resume, maxBadSteps, stopRequested, l);
        }
    }

    /**
     * Runs {@code cfg}, writing into {@code out}.
     *
     * @throws FormatException for unreadable inputs or a non-empty {@code out} without overwrite
     */
    public static Summary run(RunConfig cfg, Path out, boolean overwrite, PrintStream log) throws IOException {
        return run(cfg, out, overwrite, log, NO_LISTENER);
    }

    /** {@link #run(RunConfig, Path, boolean, PrintStream)} observed by {@code listener}. */
    public static Summary run(RunConfig cfg, Path out, boolean overwrite, PrintStream log, TrainingListener listener) throws IOException {
        return run(cfg, out, log, Options.defaults().withOverwrite(overwrite).withListener(listener));
    }

    /**
     * Runs or resumes {@code cfg}.
     *
     * @param out the output directory; with {@link Options#resume} it may be null (the resumed
     *            run's directory is used) and must otherwise name that directory
     * @throws FormatException          for unreadable inputs, a non-empty {@code out} without
     *                                  overwrite, a directory another run holds, no valid checkpoint
     *                                  to resume, or a checkpoint made with settings that train
     *                                  differently (naming them)
     * @throws IllegalArgumentException for a device that is not available
     */
    public static Summary run(RunConfig cfg, Path out, PrintStream log, Options o) throws IOException {
        Path dir;
        if (o.resume() != null) {
            dir = TrainingCheckpoint.choose(o.resume()).runDir();
            if (out != null && !(Files.exists(out) && Files.isSameFile(out.toAbsolutePath(), dir)))
                throw new IllegalArgumentException("the resumed run's directory is " + dir + ", not " + out + " (leave the output directory out)");
        } else {
            dir = Objects.requireNonNull(out, "out").toAbsolutePath().normalize();
            if (Files.exists(dir, LinkOption.NOFOLLOW_LINKS) && !Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS))
                throw new FormatException(dir, "exists and is not a directory");
        }
        boolean created = !Files.exists(dir);
        Files.createDirectories(dir);
        boolean ok = false;
        try (RunLock lock = RunLock.acquire(dir)) {
            if (o.resume() == null && !o.overwrite() && !ownFilesOnly(dir, Set.of(RunLock.FILE)))
                throw new FormatException(dir, "exists and is not empty (use --overwrite to replace it, or --resume to continue its run)");
            Summary s = prepare(cfg, dir, log, o);
            ok = true;
            return s;
        } finally {
            if (!ok && created && AtomicFiles.isEmptyDirectory(dir)) Files.deleteIfExists(dir);
        }
    }

    private static boolean ownFilesOnly(Path dir, Set<String> allowed) throws IOException {
        for (Path p : list(dir)) if (!allowed.contains(p.getFileName().toString())) return false;
        return true;
    }

    private static Summary prepare(RunConfig cfg, Path out, PrintStream log, Options o) throws IOException {
        TrainingCheckpoint.Choice choice = null;
        if (o.resume() != null) {
            // chosen again under the lock: a run that held the directory may have written a newer one
            choice = TrainingCheckpoint.choose(o.resume());
            for (String s : choice.skipped()) log.println("warning: skipped " + s);
        }
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
                // LoftQ also changes the base (W - BA quantized): a resumed run recomputes it, deterministically
                LoftQ.Result r = LoftQ.initialize(backend, loaded, lc, Nf4.DEFAULT_BLOCKSIZE, true);
                LoftQ.releaseDenseProjections(loaded); // the start-up spike ends here (MemoryPlanner.loftqStartupBytes)
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
            long total = tc.totalSteps(data.trainSequences());
            Map<String, String> fingerprint = RunFingerprint.of(cfg, data, total);
            TrainingCheckpoint.Loaded resumed = null;
            if (choice != null) {
                resumed = TrainingCheckpoint.load(choice.checkpoint());
                List<String> diff = RunFingerprint.differences(resumed.state().fingerprint, fingerprint);
                if (!diff.isEmpty())
                    throw new FormatException(choice.checkpoint().resolve(TrainingState.FILE), "was made with settings that train differently: "
                            + String.join("; ", diff) + " (resume with the checkpoint's settings, or start a new run)");
                float[] v;
                try (LoraAdapter saved = LoraAdapter.load(choice.checkpoint(), backend, loaded.config())) {
                    v = saved.toFloats();
                }
                adapter.close();
                adapter = LoraAdapter.of(backend, loaded.config(), lc, v);
                TrainingCheckpoint.removeLeftovers(out);
            } else if (o.overwrite()) {
                for (Path p : list(out)) if (!p.getFileName().toString().equals(RunLock.FILE)) AtomicFiles.deleteRecursively(p);
            }
            return new Session(cfg, out, backend, base, adapter, data, log, o, total, fingerprint, resumed).run();
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

    /** One session of a run: from step 0 or a checkpoint to the end, a stop request or divergence. */
    private static final class Session {
        final RunConfig cfg;
        final TrainConfig tc;
        final Path out;
        final Backend backend;
        final LlamaWeights base;
        final LoraAdapter adapter;
        final DataPipeline data;
        final PrintStream log;
        final Options opts;
        final TrainingListener listener;
        final long total, perEpoch;
        final String baseName;
        final TrainingCheckpoint.Loaded resumed;
        final TrainingState state;
        /** Checkpoint steps on disk, oldest first (save_total_limit). */
        final Deque<Long> kept = new ArrayDeque<>();
        Path lastCheckpoint;

        Session(RunConfig cfg, Path out, Backend backend, LlamaWeights base, LoraAdapter adapter, DataPipeline data, PrintStream log, Options opts,
                long total, Map<String, String> fingerprint, TrainingCheckpoint.Loaded resumed) throws IOException {
            this.cfg = cfg;
            this.tc = cfg.train();
            this.out = out;
            this.backend = backend;
            this.base = base;
            this.adapter = adapter;
            this.data = data;
            this.log = log;
            this.opts = opts;
            this.listener = opts.listener();
            this.total = total;
            this.perEpoch = tc.stepsPerEpoch(data.trainSequences());
            this.baseName = cfg.model().toString();
            this.resumed = resumed;
            if (resumed != null) {
                state = resumed.state();
                kept.addAll(TrainingCheckpoint.stepsUpTo(out, state.step));
                lastCheckpoint = resumed.dir();
            } else {
                state = new TrainingState();
                state.totalSteps = total;
                state.fingerprint = fingerprint;
            }
        }

        Summary run() throws IOException {
            List<Batch> evalBatches = data.eval().isEmpty() ? null : data.evalBatches(tc.perDeviceTrainBatchSize());
            MemoryTracker.GLOBAL.resetPeaks();
            try (LoraTrainingModel model = new LoraTrainingModel(backend, base, adapter, cfg.weightDtype());
                 Trainer trainer = new Trainer(model, tc, total);
                 MetricsLog metrics = resumed == null ? MetricsLog.create(out.resolve(METRICS)) : MetricsLog.resume(out.resolve(METRICS), state.step)) {
                log.printf(Locale.ROOT, "training: %d steps (%d per epoch), batch %d x accumulation %d, %d LoRA parameters (r %d, alpha %s, %s), warmup %d, %s%n",
                        total, perEpoch, tc.perDeviceTrainBatchSize(), tc.gradientAccumulationSteps(), adapter.parameterCount(), cfg.lora().r(),
                        fmt(cfg.lora().loraAlpha()), cfg.lora().targetModuleNames(), trainer.warmupSteps(), backend.description());
                listener.onData(data.stats(), perEpoch);
                listener.onEventLog(row -> {
                    try {
                        metrics.write(row);
                    } catch (IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                });
                listener.onStart(resumed == null ? 0 : state.step, total);
                if (resumed != null) {
                    trainer.restore(state.step, state.updates, resumed.m(), resumed.v());
                    log.printf(Locale.ROOT, "resuming from %s: step %d of %d (epoch %d, window %d)%n", resumed.dir(), state.step, total,
                            state.epoch, state.window);
                } else if (evalBatches != null) {
                    // The base model's eval loss (every lora_B is still zero), so that a run shows what it changed.
                    state.initialEval = evaluate(model, evalBatches);
                    state.evals.add(new double[] {0, state.initialEval});
                    JsonObject j0 = new JsonObject();
                    j0.addProperty("step", 0);
                    j0.addProperty("epoch", 0.0);
                    j0.addProperty("eval_loss", state.initialEval);
                    metrics.write(j0);
                    log.printf(Locale.ROOT, "step 0/%d  eval_loss %.4f (base model)%n", total, state.initialEval);
                    listener.onEval(0, state.initialEval);
                }
                return loop(model, trainer, metrics, evalBatches);
            }
        }

        private Summary loop(LoraTrainingModel model, Trainer trainer, MetricsLog metrics, List<Batch> evalBatches) throws IOException {
            long t0 = System.nanoTime();
            double runtimeBefore = state.runtimeSeconds;
            TrainingState lastGood = state.copy();
            List<Batch> lastGoodWindow = null;
            List<List<Batch>> windows = data.steps(state.epoch, tc.perDeviceTrainBatchSize(), tc.gradientAccumulationSteps());
            Status status = state.finished ? Status.COMPLETED : null;
            String message = null;
            while (status == null && state.step < total) {
                if (state.window >= windows.size()) {
                    state.epoch++;
                    state.window = 0;
                    windows = data.steps(state.epoch, tc.perDeviceTrainBatchSize(), tc.gradientAccumulationSteps());
                }
                List<Batch> window = windows.get(state.window);
                Trainer.StepResult r = trainer.step(window);
                long step = r.step();
                state.window++;
                state.step = step;
                state.updates = trainer.updates();
                state.losses.add(r.skipped() ? Double.NaN : r.loss());
                state.gradNorms.add(r.gradNorm());
                double tps = r.tokens() / r.seconds();
                boolean evalNow = evalBatches != null && (step % tc.evalEvery(total) == 0 || step == total);
                Double evalLoss = evalNow ? evaluate(model, evalBatches) : null;
                if (r.skipped()) {
                    int[] rows = rowIds(window);
                    state.badSteps.add(new TrainingState.BadStep(step, r.loss(), r.gradNorm(), rows));
                    JsonObject j = new JsonObject();
                    j.addProperty("step", step);
                    j.addProperty("epoch", (double) step / perEpoch);
                    j.addProperty("skipped", true);
                    j.addProperty("loss", r.loss());
                    j.addProperty("grad_norm", r.gradNorm());
                    j.addProperty("learning_rate", r.learningRate());
                    j.add("row_ids", GSON_TREE.toJsonTree(rows));
                    j.add("source_lines", GSON_TREE.toJsonTree(sourceLines(rows)));
                    if (evalLoss != null) j.addProperty("eval_loss", evalLoss);
                    metrics.write(j);
                    log.printf(Locale.ROOT, "warning: step %d/%d skipped: loss %s, gradient norm %s are not all finite; parameters unchanged (%s)%n",
                            step, total, r.loss(), r.gradNorm(), describeRows(rows));
                } else {
                    state.badSteps.clear();
                    lastGoodWindow = window;
                    state.logLoss += r.loss();
                    state.logTokens += r.tokens();
                    state.logSeconds += r.seconds();
                    state.logCount++;
                    if (step % tc.loggingSteps() == 0 || step == total || evalLoss != null) {
                        double loss = state.logLoss / state.logCount, rate = state.logTokens / state.logSeconds;
                        JsonObject j = new JsonObject();
                        j.addProperty("step", step);
                        j.addProperty("epoch", (double) step / perEpoch);
                        j.addProperty("loss", loss);
                        j.addProperty("learning_rate", r.learningRate());
                        j.addProperty("grad_norm", r.gradNorm());
                        j.addProperty("tokens_per_second", rate);
                        if (evalLoss != null) j.addProperty("eval_loss", evalLoss);
                        metrics.write(j);
                        if (!listener.drawsProgress())
                            log.printf(Locale.ROOT, "step %d/%d  loss %.4f  lr %.3e  grad_norm %.4f  %.0f tok/s%s%n", step, total, loss,
                                    r.learningRate(), r.gradNorm(), rate, evalLoss == null ? "" : String.format(Locale.ROOT, "  eval_loss %.4f", evalLoss));
                        state.logLoss = 0;
                        state.logTokens = 0;
                        state.logSeconds = 0;
                        state.logCount = 0;
                    }
                }
                listener.onStep(step, total, r.skipped() ? Double.NaN : r.loss(), r.learningRate(), r.gradNorm(), tps);
                boolean stopEarly = false;
                if (evalLoss != null) {
                    listener.onEval(step, evalLoss);
                    state.lastEval = evalLoss;
                    state.evals.add(new double[] {step, evalLoss});
                    if (evalLoss < state.bestEval - tc.earlyStoppingThreshold()) {
                        state.bestEval = evalLoss;
                        state.badEvals = 0;
                    } else if (tc.earlyStoppingPatience() > 0 && ++state.badEvals >= tc.earlyStoppingPatience() && step < total) {
                        log.printf(Locale.ROOT, "early stopping at step %d: eval_loss did not improve by more than %s for %d evaluations%n", step,
                                fmt(tc.earlyStoppingThreshold()), state.badEvals);
                        stopEarly = true;
                    }
                }
                state.runtimeSeconds = runtimeBefore + (System.nanoTime() - t0) / 1e9;
                if (!r.skipped()) lastGood = state.copy();
                if (state.badSteps.size() >= opts.maxBadSteps()) {
                    Path ck = checkpoint(trainer, metrics, lastGood);
                    message = diverged(model, lastGood, lastGoodWindow, ck);
                    log.println(message);
                    status = Status.DIVERGED;
                    break;
                }
                if (stopEarly) {
                    state.finished = true;
                    status = Status.EARLY_STOPPED;
                    break;
                }
                if (tc.saveSteps() > 0 && step % tc.saveSteps() == 0 && step < total) checkpoint(trainer, metrics, state);
                if (step < total && opts.stopRequested().getAsBoolean()) {
                    Path ck = isCheckpointOf(step) ? lastCheckpoint : checkpoint(trainer, metrics, state);
                    message = String.format(Locale.ROOT, "interrupted at step %d of %d: checkpoint written to %s", step, total, ck);
                    log.println(message);
                    status = Status.INTERRUPTED;
                }
            }
            if (status == null) {
                state.finished = true;
                status = Status.COMPLETED;
            }
            if (status == Status.COMPLETED || status == Status.EARLY_STOPPED) {
                if (evalBatches != null && Double.isNaN(state.lastEval)) state.lastEval = evaluate(model, evalBatches);
                if (!isCheckpointOf(state.step)) checkpoint(trainer, metrics, state);
                adapter.writeInto(out, baseName);
                metrics.write(finalRow(trainer));
                message = String.format(Locale.ROOT, "done: %d steps, adapter written to %s (final checkpoint %s); peak memory %.1f MiB", state.step,
                        out, lastCheckpoint.getFileName(), MemoryTracker.GLOBAL.peakTotal(backend.device()) / 1048576.0);
                log.println(message);
                metrics.sync();
                listener.onEnd(state.step, out);
            }
            return new Summary(state.step, List.copyOf(state.losses), state.initialEval, state.lastEval, status, lastCheckpoint, message);
        }

        private boolean isCheckpointOf(long step) {
            return lastCheckpoint != null && TrainingCheckpoint.stepOf(lastCheckpoint) == step;
        }

        /** Writes {@code s}'s checkpoint (the adapter and moments as they are now) and applies save_total_limit. */
        private Path checkpoint(Trainer trainer, MetricsLog metrics, TrainingState s) throws IOException {
            metrics.sync();
            Path ck = TrainingCheckpoint.write(out, adapter, baseName, trainer.moments(), s);
            kept.remove(s.step);
            kept.addLast(s.step);
            while (tc.saveTotalLimit() > 0 && kept.size() > tc.saveTotalLimit())
                TrainingCheckpoint.delete(out.resolve(TrainingCheckpoint.PREFIX + kept.removeFirst()));
            lastCheckpoint = ck;
            return ck;
        }

        private JsonObject finalRow(Trainer trainer) {
            JsonObject fin = new JsonObject();
            fin.addProperty("train_runtime_seconds", state.runtimeSeconds);
            fin.addProperty("steps", state.step);
            fin.addProperty("train_loss", state.meanLoss());
            if (!Double.isNaN(state.lastEval)) fin.addProperty("eval_loss", state.lastEval);
            Device dev = backend.device();
            JsonObject peak = MemoryCategory.toJson(MemoryTracker.GLOBAL.peaks(dev));
            peak.addProperty("total", MemoryTracker.GLOBAL.peakTotal(dev));
            fin.add("peak_memory_bytes", peak);
            if (dev != Device.CPU) fin.add("peak_host_memory_bytes", MemoryCategory.toJson(MemoryTracker.GLOBAL.peaks(Device.CPU)));
            return fin;
        }

        /**
         * The one-line reason for stopping after consecutive bad steps. The learning rate is blamed
         * when the adapter itself is broken (a window it trained on fine now gives a non-finite
         * loss) or the loss rose / the gradient norm exploded over the good steps before; otherwise
         * the data of the skipped windows.
         */
        private String diverged(LoraTrainingModel model, TrainingState good, List<Batch> goodWindow, Path ck) {
            List<TrainingState.BadStep> bad = state.badSteps;
            Set<Integer> rows = new TreeSet<>();
            for (TrainingState.BadStep b : bad) for (int r : b.rows()) rows.add(r);
            int[] rowArr = rows.stream().mapToInt(Integer::intValue).toArray();
            double recheck = goodWindow == null ? Double.NaN : model.lossSum(goodWindow.get(0));
            boolean broken = goodWindow != null && !Double.isFinite(recheck);
            // the good steps before the bad run, at most the last 10
            List<Double> l = new ArrayList<>(), g = new ArrayList<>();
            for (int i = 0; i < good.step; i++) {
                if (Double.isFinite(good.losses.get(i))) {
                    l.add(good.losses.get(i));
                    g.add(good.gradNorms.get(i));
                }
            }
            l = l.subList(Math.max(0, l.size() - 10), l.size());
            g = g.subList(Math.max(0, g.size() - 10), g.size());
            boolean rising = l.size() >= 2 && l.get(l.size() - 1) > 1.5 * Collections.min(l);
            boolean exploding = g.size() >= 2 && g.get(g.size() - 1) > 10 * Collections.min(g);
            StringBuilder sb = new StringBuilder();
            sb.append(String.format(Locale.ROOT, "stopped: %d consecutive steps (%d-%d) had a non-finite loss or gradient and were skipped; likely cause: ",
                    bad.size(), bad.get(0).step(), bad.get(bad.size() - 1).step()));
            if (broken || rising || exploding) {
                sb.append("learning_rate ").append(tc.learningRate()).append(" is too high (");
                List<String> why = new ArrayList<>();
                if (rising) why.add(String.format(Locale.ROOT, "the loss rose from %.4g to %.4g", Collections.min(l), l.get(l.size() - 1)));
                if (exploding) why.add(String.format(Locale.ROOT, "the gradient norm grew from %.3g to %.3g", Collections.min(g), g.get(g.size() - 1)));
                if (broken) why.add("the adapter now gives a non-finite loss on rows it trained on at step " + good.step);
                sb.append(String.join(", ", why)).append("): lower it and start again");
            } else {
                sb.append("the data of those windows (the adapter still gives a finite loss on earlier rows): check them");
            }
            sb.append("; ").append(describeRows(rowArr)).append("; the last good state (step ").append(good.step).append(") is in ").append(ck);
            return sb.toString();
        }

        /** The training-row indices of a window's micro-batches, sorted; empty when the batches do not carry them. */
        private static int[] rowIds(List<Batch> window) {
            Set<Integer> ids = new TreeSet<>();
            for (Batch b : window) if (b.rowIds() != null) for (int[] r : b.rowIds()) for (int i : r) ids.add(i);
            return ids.stream().mapToInt(Integer::intValue).toArray();
        }

        private int[] sourceLines(int[] rows) {
            int[] lines = new int[rows.length];
            for (int i = 0; i < rows.length; i++) lines[i] = data.trainRows().get(rows[i]).line();
            return lines;
        }

        /** "training rows 3, 7 (lines 4, 8 of data.jsonl)", at most {@value #MAX_ROWS_SHOWN} of them. */
        private String describeRows(int[] rows) {
            if (rows.length == 0) return "rows unknown";
            StringBuilder ids = new StringBuilder(), lines = new StringBuilder();
            Set<String> sources = new TreeSet<>();
            for (int i = 0; i < Math.min(rows.length, MAX_ROWS_SHOWN); i++) {
                DataPipeline.Row row = data.trainRows().get(rows[i]);
                ids.append(i == 0 ? "" : ", ").append(rows[i]);
                lines.append(i == 0 ? "" : ", ").append(row.line());
                sources.add(String.valueOf(row.source()));
            }
            String more = rows.length > MAX_ROWS_SHOWN ? " and " + (rows.length - MAX_ROWS_SHOWN) + " more" : "";
            return "training rows " + ids + more + " (lines " + lines + more + " of " + String.join(", ", sources) + ")";
        }
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
