package io.lora4j.train;

import com.google.gson.JsonObject;
import io.lora4j.data.Batch;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.ops.Backend;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.MemoryTracker;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.List;
import java.util.Locale;
import java.util.Optional;

/**
 * One session of a {@link TrainingRun} (torchtune's recipe {@code train}): from step 0 or a
 * checkpoint to the end, a stop request or divergence. Each step: train one window
 * ({@link Trainer}, which sums over data-parallel ranks), log a {@link MetricsRow}, evaluate,
 * apply {@link EarlyStopping}, stop with a {@link DivergenceReport} after too many skipped steps,
 * checkpoint. Only a rank that {@link DataParallel#writesOutputs() writes outputs} writes metrics,
 * checkpoints and the adapter.
 */
final class TrainingLoop {
    private final RunSetup setup;
    private final TrainConfig tc;
    private final Path out;
    private final Backend backend;
    private final LoraAdapter adapter;
    private final PrintStream log;
    private final TrainingRun.Options opts;
    private final DataParallel parallel;
    private final TrainingListener listener;
    private final long total, perEpoch;
    private final String baseName;
    private final TrainingCheckpoint.Loaded resumed;
    private final TrainingState state;
    private final EarlyStopping earlyStopping;
    private final DivergenceReport divergence;
    /** Checkpoint steps on disk, oldest first (save_total_limit). */
    private final Deque<Long> kept = new ArrayDeque<>();
    private Path lastCheckpoint;

    TrainingLoop(RunSetup setup, PrintStream log, TrainingRun.Options opts) throws IOException {
        this.setup = setup;
        this.tc = setup.train;
        this.out = setup.out;
        this.backend = setup.backend;
        this.adapter = setup.adapter();
        this.log = log;
        this.opts = opts;
        this.parallel = opts.parallel();
        this.listener = opts.listener();
        this.total = setup.total;
        this.perEpoch = setup.perEpoch;
        this.baseName = setup.cfg.model().toString();
        this.resumed = setup.resumed;
        this.earlyStopping = new EarlyStopping(tc);
        this.divergence = new DivergenceReport(setup.data, tc.learningRate());
        if (resumed != null) {
            state = resumed.state();
            kept.addAll(TrainingCheckpoint.stepsUpTo(out, state.step));
            lastCheckpoint = resumed.dir();
        } else {
            state = new TrainingState();
            state.totalSteps = total;
            state.fingerprint = setup.fingerprint;
        }
    }

    TrainingRun.Summary run() throws IOException {
        List<Batch> evalBatches = setup.data.eval().isEmpty() ? null : setup.data.evalBatches(tc.perDeviceTrainBatchSize());
        MemoryTracker.GLOBAL.resetPeaks();
        try (LoraTrainingModel model = new LoraTrainingModel(backend, setup.base, adapter, setup.cfg.weightDtype(), setup.cfg.bf16());
             Trainer trainer = new Trainer(model, tc, total, parallel.exchange(), parallel.shard().firstMicroBatch(tc.gradientAccumulationSteps()));
             MetricsLog metrics = openMetrics()) {
            log.printf(Locale.ROOT, "training: %d steps (%d per epoch), batch %d x accumulation %d, %d LoRA parameters (r %d, alpha %s, %s), warmup %d, %s%n",
                    total, perEpoch, tc.perDeviceTrainBatchSize(), tc.gradientAccumulationSteps(), adapter.parameterCount(), setup.cfg.lora().r(),
                    EarlyStopping.plain(setup.cfg.lora().loraAlpha()), setup.cfg.lora().targetModuleNames(), trainer.warmupSteps(), backend.description());
            if (model.bf16())
                log.printf(Locale.ROOT, "mixed precision: activations kept for the backward in bf16, compute and accumulation fp32 (bf16: %s)%n",
                        setup.cfg.bf16() == null ? "auto" : "true");
            listener.onData(setup.data.stats(), perEpoch);
            listener.onEventLog(row -> {
                try {
                    metrics.write(row);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
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
                metrics.write(MetricsRow.baseEval(state.initialEval));
                log.printf(Locale.ROOT, "step 0/%d  eval_loss %.4f (base model)%n", total, state.initialEval);
                listener.onEval(0, state.initialEval);
            }
            return loop(model, trainer, metrics, evalBatches);
        }
    }

    /** Token-mean eval loss: this rank's share of the batches, loss and target count summed over the ranks. */
    private double evaluate(LoraTrainingModel model, List<Batch> batches) {
        double sum = 0;
        long n = 0;
        for (Batch b : parallel.shard().evalBatches(batches)) {
            sum += model.lossSum(b);
            n += b.targetTokens();
        }
        double[] total = parallel.exchange().sumLossAndTargets(sum, n);
        return total[0] / total[1];
    }

    private MetricsLog openMetrics() throws IOException {
        if (!parallel.writesOutputs()) return MetricsLog.discarding();
        Path file = out.resolve(TrainingRun.METRICS);
        return resumed == null ? MetricsLog.create(file) : MetricsLog.resume(file, state.step);
    }

    /** This rank's windows of {@code epoch} (all of them without data parallelism). */
    private List<List<Batch>> windows(int epoch) {
        return parallel.shard().windows(setup.data, epoch, tc.perDeviceTrainBatchSize(), tc.gradientAccumulationSteps());
    }

    private TrainingRun.Summary loop(LoraTrainingModel model, Trainer trainer, MetricsLog metrics, List<Batch> evalBatches) throws IOException {
        long t0 = System.nanoTime();
        double runtimeBefore = state.runtimeSeconds;
        TrainingState lastGood = state.copy();
        List<Batch> lastGoodWindow = null;
        List<List<Batch>> windows = windows(state.epoch);
        TrainingRun.Status status = state.finished ? TrainingRun.Status.COMPLETED : null;
        String message = null;
        while (status == null && state.step < total) {
            if (state.window >= windows.size()) {
                state.epoch++;
                state.window = 0;
                windows = windows(state.epoch);
            }
            List<Batch> window = windows.get(state.window);
            Trainer.StepResult r = trainer.step(window);
            long step = r.step();
            state.window++;
            state.step = step;
            state.updates = trainer.updates();
            state.losses.add(r.skipped() ? Double.NaN : r.loss());
            state.gradNorms.add(r.gradNorm());
            boolean evalNow = evalBatches != null && (step % tc.evalEvery(total) == 0 || step == total);
            Double evalLoss = evalNow ? evaluate(model, evalBatches) : null;
            if (r.skipped()) {
                onSkipped(r, window, evalLoss, metrics);
            } else {
                lastGoodWindow = window;
                onGood(r, evalLoss, metrics);
            }
            listener.onStep(step, total, r.skipped() ? Double.NaN : r.loss(), r.learningRate(), r.gradNorm(), r.tokens() / r.seconds());
            Optional<String> stopEarly = Optional.empty();
            if (evalLoss != null) {
                listener.onEval(step, evalLoss);
                state.lastEval = evalLoss;
                state.evals.add(new double[] {step, evalLoss});
                stopEarly = earlyStopping.onEval(state, step, evalLoss, total);
                stopEarly.ifPresent(log::println);
            }
            state.runtimeSeconds = runtimeBefore + (System.nanoTime() - t0) / 1e9;
            if (!r.skipped()) lastGood = state.copy();
            if (state.badSteps.size() >= opts.maxBadSteps()) {
                Path ck = checkpoint(trainer, metrics, lastGood);
                message = divergence.explain(model, state, lastGood, lastGoodWindow, ck);
                log.println(message);
                status = TrainingRun.Status.DIVERGED;
                break;
            }
            if (stopEarly.isPresent()) {
                state.finished = true;
                status = TrainingRun.Status.EARLY_STOPPED;
                break;
            }
            if (tc.saveSteps() > 0 && step % tc.saveSteps() == 0 && step < total) checkpoint(trainer, metrics, state);
            if (step < total && opts.stopRequested().getAsBoolean()) {
                Path ck = isCheckpointOf(step) ? lastCheckpoint : checkpoint(trainer, metrics, state);
                message = String.format(Locale.ROOT, "interrupted at step %d of %d: checkpoint written to %s", step, total, ck);
                log.println(message);
                status = TrainingRun.Status.INTERRUPTED;
            }
        }
        if (status == null) {
            state.finished = true;
            status = TrainingRun.Status.COMPLETED;
        }
        if (status == TrainingRun.Status.COMPLETED || status == TrainingRun.Status.EARLY_STOPPED) {
            if (evalBatches != null && Double.isNaN(state.lastEval)) state.lastEval = evaluate(model, evalBatches);
            if (!isCheckpointOf(state.step)) checkpoint(trainer, metrics, state);
            if (parallel.writesOutputs()) adapter.writeInto(out, baseName);
            metrics.write(finalRow());
            message = String.format(Locale.ROOT, "done: %d steps, adapter written to %s (final checkpoint %s); peak memory %.1f MiB", state.step,
                    out, lastCheckpoint.getFileName(), MemoryTracker.GLOBAL.peakTotal(backend.device()) / 1048576.0);
            log.println(message);
            metrics.sync();
            listener.onEnd(state.step, out);
        }
        return new TrainingRun.Summary(state.step, List.copyOf(state.losses), state.initialEval, state.lastEval, status, lastCheckpoint, message);
    }

    /** A skipped step: remember it for the divergence report, log its rows. */
    private void onSkipped(Trainer.StepResult r, List<Batch> window, Double evalLoss, MetricsLog metrics) throws IOException {
        int[] rows = DivergenceReport.rowIds(window);
        state.badSteps.add(new TrainingState.BadStep(r.step(), r.loss(), r.gradNorm(), rows));
        metrics.write(MetricsRow.skipped(r.step(), epochOf(r.step()), r.loss(), r.learningRate(), r.gradNorm(), rows, divergence.sourceLines(rows),
                evalLoss));
        log.printf(Locale.ROOT, "warning: step %d/%d skipped: loss %s, gradient norm %s are not all finite; parameters unchanged (%s)%n",
                r.step(), total, r.loss(), r.gradNorm(), divergence.describeRows(rows));
    }

    /** A good step: ends a run of bad steps; every logging_steps step (and at an eval) logs the means since the last row. */
    private void onGood(Trainer.StepResult r, Double evalLoss, MetricsLog metrics) throws IOException {
        long step = r.step();
        state.badSteps.clear();
        state.logLoss += r.loss();
        state.logTokens += r.tokens();
        state.logSeconds += r.seconds();
        state.logCount++;
        if (step % tc.loggingSteps() == 0 || step == total || evalLoss != null) {
            double loss = state.logLoss / state.logCount, rate = state.logTokens / state.logSeconds;
            metrics.write(MetricsRow.logged(step, epochOf(step), loss, r.learningRate(), r.gradNorm(), rate, evalLoss));
            if (!listener.drawsProgress())
                log.printf(Locale.ROOT, "step %d/%d  loss %.4f  lr %.3e  grad_norm %.4f  %.0f tok/s%s%n", step, total, loss, r.learningRate(),
                        r.gradNorm(), rate, evalLoss == null ? "" : String.format(Locale.ROOT, "  eval_loss %.4f", evalLoss));
            state.logLoss = 0;
            state.logTokens = 0;
            state.logSeconds = 0;
            state.logCount = 0;
        }
    }

    private double epochOf(long step) {
        return (double) step / perEpoch;
    }

    private boolean isCheckpointOf(long step) {
        return lastCheckpoint != null && TrainingCheckpoint.stepOf(lastCheckpoint) == step;
    }

    /**
     * Writes {@code s}'s checkpoint (the adapter and moments as they are now) and applies
     * save_total_limit. A rank that does not write outputs only notes where the writing rank puts it.
     */
    private Path checkpoint(Trainer trainer, MetricsLog metrics, TrainingState s) throws IOException {
        if (!parallel.writesOutputs()) {
            lastCheckpoint = out.resolve(TrainingCheckpoint.PREFIX + s.step);
            return lastCheckpoint;
        }
        metrics.sync();
        Path ck = TrainingCheckpoint.write(out, adapter, baseName, trainer.moments(), s);
        kept.remove(s.step);
        kept.addLast(s.step);
        while (tc.saveTotalLimit() > 0 && kept.size() > tc.saveTotalLimit())
            TrainingCheckpoint.delete(out.resolve(TrainingCheckpoint.PREFIX + kept.removeFirst()));
        lastCheckpoint = ck;
        return ck;
    }

    /**
     * The last row of metrics.jsonl: runtime, steps, mean train loss, last eval loss, peak memory by
     * category, and the peak of host memory the caching allocator reserved.
     */
    private JsonObject finalRow() {
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
        // what the host caching allocator held at its peak (tensors rounded up to size classes + free cached blocks)
        fin.addProperty("peak_host_reserved_bytes", MemoryTracker.GLOBAL.peakReserved(Device.CPU));
        return fin;
    }
}
