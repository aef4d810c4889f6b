package io.lora4j.bench;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LayerWeights;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelFormat;
import io.lora4j.model.ModelLoader;
import io.lora4j.model.Projection;
import io.lora4j.model.ProjectionWeight;
import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.ops.Backends;
import io.lora4j.plan.MemoryPlanner;
import io.lora4j.plan.PlanSettings;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.MemoryTracker;
import io.lora4j.tensor.Tensor;
import io.lora4j.train.CheckpointMode;
import io.lora4j.train.LoraTrainingModel;
import io.lora4j.train.LrSchedule;
import io.lora4j.train.TrainConfig;
import io.lora4j.train.Trainer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * Peak memory and step time of one LoRA optimizer step per gradient-checkpointing mode, on the CPU,
 * one thread (r 16, alpha 16, all seven projections, no dropout, batch 1, every token trained):
 * <ul>
 *   <li>{@code stories15M}: the real model at seq 256 (6 layers, dim 288, vocab 32000);
 *   <li>{@code synthetic}: 8 layers, hidden 1024, MLP 2816, 16 heads / 4 KV heads of 64, vocab 32000
 *       (untied), random fp32 weights, seq 2048: a shape where activations dominate.
 * </ul>
 * Time is JMH's single-shot time of a whole step (forward, backward, clipping, AdamW). Memory comes
 * from {@link MemoryTracker}: before each step the peaks are reset, after it the step's peaks are
 * read; at trial end one JSON line per (model, mode) goes to {@code -Dlora4j.bench.memoryOut}
 * (default target/memory-bench.jsonl) with the peaks per category and the step's peak above the
 * resident state (weights, adapter, gradients, AdamW: {@link MemoryPlanner#residentBytes}), with the
 * planner's prediction of that figure on the CPU and on CUDA (where unsloth's inputs leave the device).
 * The ratios to mode {@code none} in the same run are the figures to report.
 */
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xmx2g"})
@Threads(1)
public class MemoryBench {
    static final int STORIES_SEQ = 256, SYNTH_SEQ = 2048;

    /** The synthetic shape: hidden 1024, MLP 2816 (≈ 8/3·1024, rounded to 256 as Llama), 16 heads / 4 KV heads of 64, vocab 32000. */
    static LlamaConfig syntheticConfig() {
        return new LlamaConfig("llama", 1024, 2816, 8, 16, 4, 64, 1e-5, 10000.0, null, 32000, 4096, false, 1, List.of(2), "float32");
    }

    /** Shared between the two benchmarks: one model, one trainer, the tracker readings. */
    @State(Scope.Benchmark)
    public abstract static class Base {
        @Param({"none", "true", "unsloth", "chunked"})
        public String mode;

        LlamaWeights w;
        LoraAdapter adapter;
        LoraTrainingModel model;
        Trainer trainer;
        List<Batch> window;
        long liveBefore;
        final Map<MemoryCategory, Long> peaks = new EnumMap<>(MemoryCategory.class), live0 = new EnumMap<>(MemoryCategory.class);
        long stepPeak;

        abstract LlamaWeights load() throws IOException;

        abstract int seq();

        abstract String name();

        @Setup(Level.Trial)
        public void setup() throws Exception {
            NativeLibrary.setNumThreads(1);
            w = load();
            adapter = LoraAdapter.create(Backends.cpu(), w.config(), LoraConfig.defaults());
            model = new LoraTrainingModel(Backends.cpu(), w, adapter);
            trainer = new Trainer(model, TrainConfig.defaults().withBatch(1, 1).withSchedule(2e-4, 0, LrSchedule.CONSTANT, 0.01, 1.0, 1_000_000), 1_000_000);
            model.setCheckpointing(CheckpointMode.parse(mode));
            Random r = new Random(7);
            int[] ids = new int[seq()];
            ids[0] = 1;
            for (int i = 1; i < ids.length; i++) ids[i] = 3 + r.nextInt(w.config().vocabSize() - 3);
            window = List.of(Batch.of(List.of(Example.allTokens(ids)), 0));
        }

        @Setup(Level.Invocation)
        public void resetPeaks() {
            MemoryTracker.GLOBAL.resetPeaks();
            liveBefore = MemoryTracker.GLOBAL.liveTotal(Device.CPU);
            for (MemoryCategory c : MemoryCategory.values()) live0.put(c, MemoryTracker.GLOBAL.live(Device.CPU, c));
        }

        @TearDown(Level.Invocation)
        public void readPeaks() {
            for (MemoryCategory c : MemoryCategory.values())
                peaks.merge(c, MemoryTracker.GLOBAL.peak(Device.CPU, c) - live0.get(c), Math::max);
            stepPeak = Math.max(stepPeak, MemoryTracker.GLOBAL.peakTotal(Device.CPU) - liveBefore);
        }

        @TearDown(Level.Trial)
        public void tearDown() throws IOException {
            CheckpointMode m = CheckpointMode.parse(mode);
            PlanSettings ps = PlanSettings.defaults().withDevice(Device.CPU).withBatch(1).withSeqLen(seq()).withCheckpointing(m, 0);
            long predicted = MemoryPlanner.estimate(w.config(), ps).peakTotal() - MemoryPlanner.residentBytes(w.config(), ps);
            PlanSettings pc = ps.withDevice(Device.CUDA);
            long predictedCuda = MemoryPlanner.estimate(w.config(), pc).peakTotal() - MemoryPlanner.residentBytes(w.config(), pc);
            StringBuilder sb = new StringBuilder();
            sb.append(String.format(Locale.ROOT, "{\"model\": \"%s\", \"mode\": \"%s\", \"seq\": %d, \"group\": %d, \"step_peak_bytes\": %d, "
                    + "\"predicted_step_peak_bytes\": %d, \"predicted_cuda_device_step_peak_bytes\": %d", name(), mode, seq(), model.checkpointGroup(),
                    stepPeak, predicted, predictedCuda));
            for (MemoryCategory c : MemoryCategory.values())
                sb.append(String.format(Locale.ROOT, ", \"%s\": %d", c.name().toLowerCase(Locale.ROOT), peaks.get(c)));
            sb.append("}\n");
            Path out = Path.of(System.getProperty("lora4j.bench.memoryOut", "target/memory-bench.jsonl"));
            if (out.getParent() != null) Files.createDirectories(out.getParent());
            Files.writeString(out, sb, StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
            trainer.close();
            model.close();
            adapter.close();
            w.close();
        }
    }

    @State(Scope.Benchmark)
    public static class Stories extends Base {
        @Override LlamaWeights load() throws IOException {
            String cache = System.getenv().getOrDefault("LORA4J_CACHE", System.getProperty("user.home") + "/.cache/lora4j");
            return ModelLoader.load(Path.of(cache, "stories15M.bin"));
        }

        @Override int seq() { return STORIES_SEQ; }

        @Override String name() { return "stories15M"; }
    }

    @State(Scope.Benchmark)
    public static class Synthetic extends Base {
        @Override LlamaWeights load() {
            LlamaConfig c = syntheticConfig();
            Random r = new Random(11);
            Tensor emb = rand(r, 0.02f, 0f, c.vocabSize(), c.hiddenSize());
            List<LayerWeights> layers = new ArrayList<>();
            for (int l = 0; l < c.numHiddenLayers(); l++) {
                Map<Projection, ProjectionWeight> p = new EnumMap<>(Projection.class);
                for (Projection pr : Projection.values()) p.put(pr, new ProjectionWeight.Dense(rand(r, 0.02f, 0f, pr.shape(c))));
                layers.add(new LayerWeights(rand(r, 0.1f, 1f, c.hiddenSize()), p, rand(r, 0.1f, 1f, c.hiddenSize())));
            }
            return new LlamaWeights(c, emb, layers, rand(r, 0.1f, 1f, c.hiddenSize()), rand(r, 0.02f, 0f, c.vocabSize(), c.hiddenSize()),
                    ModelFormat.HF, null, null);
        }

        @Override int seq() { return SYNTH_SEQ; }

        @Override String name() { return "synthetic-8x1024"; }

        private static Tensor rand(Random r, float std, float mean, long... shape) {
            Tensor t = Tensor.allocate(DType.F32, MemoryCategory.WEIGHTS, shape);
            // uniform with the given std (±std·√3): the values only need a realistic scale, and this is fast
            float[] v = new float[(int) t.numel()];
            float a = std * (float) Math.sqrt(3);
            for (int i = 0; i < v.length; i++) v[i] = mean + a * (2 * r.nextFloat() - 1);
            t.floatPointer().put(v);
            return t;
        }
    }

    /** stories15M, seq 256: cheap, so more shots. */
    @Benchmark
    @Warmup(iterations = 3)
    @Measurement(iterations = 9)
    public double stories15M(Stories s) {
        return s.trainer.step(s.window).loss();
    }

    /** The synthetic 8 x 1024 model at seq 2048: seconds per step, so few shots. */
    @Benchmark
    @Warmup(iterations = 1)
    @Measurement(iterations = 3)
    public double synthetic(Synthetic s) {
        return s.trainer.step(s.window).loss();
    }
}
