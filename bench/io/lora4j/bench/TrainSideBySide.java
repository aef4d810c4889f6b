package io.lora4j.bench;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.HostAllocator;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import io.lora4j.train.CheckpointMode;
import io.lora4j.train.LoraTrainingModel;
import io.lora4j.train.LrSchedule;
import io.lora4j.train.TrainConfig;
import io.lora4j.train.Trainer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * lora4j's side of scripts/bench-train.sh: LoRA optimizer steps (stories15M fp32, r 16, alpha 16,
 * all seven projections, no dropout, AdamW, clipping, no activation checkpointing) on the batch of a JSON file that the PyTorch
 * peer (scripts/reference/torch_train_peer.py --data) trains on too: {"input_ids": [[...]],
 * "labels": [[...]]}, B rows of S, labels aligned to input_ids (HF; the loss shifts). In the same
 * process it times OpenBLAS sgemm on the step's largest GEMM shape ([B·S, d]·[d, hidden]), the
 * ceiling of the step's FLOP rate, and on lm_head's chunk shape ([240, d]·[d, V]ᵀ, the step's
 * largest FLOP share) for reference. host_cache: the host allocator's reused and fresh blocks per
 * timed step; cpu: the same step and sgemm rates per second of the calling thread's CPU time
 * (at 1 thread all of the work; far steadier than wall time on a loaded machine). Prints one
 * JSON line.
 *
 * <p>Usage: TrainSideBySide MODEL DATA.json STEPS   (threads: LORA4J_NUM_THREADS, 1 for quoted figures)
 */
public final class TrainSideBySide {
    public static void main(String[] args) throws Exception {
        Path model = Path.of(args[0]);
        JsonObject data = JsonParser.parseString(Files.readString(Path.of(args[1]))).getAsJsonObject();
        int steps = Integer.parseInt(args[2]);
        List<Example> rows = new ArrayList<>();
        long labelled = 0;
        for (int b = 0; b < data.getAsJsonArray("input_ids").size(); b++) {
            JsonArray ids = data.getAsJsonArray("input_ids").get(b).getAsJsonArray(), lab = data.getAsJsonArray("labels").get(b).getAsJsonArray();
            int[] i = new int[ids.size()], l = new int[lab.size()];
            for (int k = 0; k < i.length; k++) i[k] = ids.get(k).getAsInt();
            for (int k = 0; k < l.length; k++) l[k] = lab.get(k).getAsInt();
            for (int k = 1; k < l.length; k++) if (l[k] != Example.IGNORE_INDEX) labelled++; // targets after the shift
            rows.add(new Example(i, l));
        }
        int batch = rows.size(), seq = rows.get(0).inputIds().length;
        List<Batch> window = List.of(Batch.of(rows, 0));
        double[] ms = new double[steps], cpuMs = new double[steps];
        long hits0 = 0, misses0 = 0;
        LlamaConfig c;
        try (LlamaWeights w = ModelLoader.load(model, ModelLoader.Options.defaults());
             LoraAdapter adapter = LoraAdapter.create(Backends.cpu(), w.config(), LoraConfig.defaults());
             LoraTrainingModel m = new LoraTrainingModel(Backends.cpu(), w, adapter);
             // no activation checkpointing, as the peer: TrainConfig's default (unsloth) would recompute every
             // layer's forward in the backward, work that stepFlops does not count and the peer does not do
             Trainer trainer = new Trainer(m, TrainConfig.defaults().withBatch(batch, 1)
                     .withSchedule(2e-4, 0, LrSchedule.CONSTANT, 0.01, 1.0, 1_000_000).withCheckpointing(CheckpointMode.NONE), 1_000_000)) {
            c = w.config();
            for (int s = 0; s < steps + 2; s++) {
                if (s == 2) {
                    hits0 = HostAllocator.GLOBAL.hits();
                    misses0 = HostAllocator.GLOBAL.misses();
                }
                long c0 = THREADS.getCurrentThreadCpuTime(), t0 = System.nanoTime();
                trainer.step(window);
                if (s >= 2) { // two warm-up steps, as the peer
                    ms[s - 2] = (System.nanoTime() - t0) / 1e6;
                    cpuMs[s - 2] = (THREADS.getCurrentThreadCpuTime() - c0) / 1e6;
                }
            }
        }
        double[] sorted = ms.clone();
        Arrays.sort(sorted);
        double median = median(ms), cpuMedian = median(cpuMs);
        long t = (long) batch * seq;
        double hitsPerStep = (double) (HostAllocator.GLOBAL.hits() - hits0) / steps;
        double missesPerStep = (double) (HostAllocator.GLOBAL.misses() - misses0) / steps;
        double[] gemm = sgemmGflops(Backends.cpu(), t, c.hiddenSize(), c.intermediateSize());
        double[] head = sgemmGflops(Backends.cpu(), LoraTrainingModel.CE_CHUNK_TOKENS, c.hiddenSize(), c.vocabSize());
        double flops = stepFlops(c, batch, seq, labelled);
        System.out.println(String.format(Locale.ROOT,
                "{\"side\": \"lora4j\", \"batch\": %d, \"seq\": %d, \"labelled\": %d, \"threads\": %d, \"cpu_threads_note\": \"%s\","
                        + " \"train_step\": {\"median_ms\": %.2f, \"min_ms\": %.2f, \"max_ms\": %.2f, \"all_ms\": %s},"
                        + " \"tokens_per_second\": %.1f, \"step_gflop\": %.3f, \"step_gflops_per_s\": %.2f, \"sgemm_gflops_per_s\": %.2f,"
                        + " \"sgemm_head_gflops_per_s\": %.2f, \"cpu\": {\"step_median_ms\": %.2f, \"all_ms\": %s,"
                        + " \"step_gflops_per_cpu_s\": %.2f, \"sgemm_gflops_per_cpu_s\": %.2f, \"sgemm_head_gflops_per_cpu_s\": %.2f},"
                        + " \"host_cache\": {\"hits_per_step\": %.1f, \"misses_per_step\": %.1f}}",
                batch, seq, labelled, NativeLibrary.numThreads(), NativeLibrary.blasName(), median, sorted[0], sorted[steps - 1],
                Arrays.toString(ms), t / (median / 1000), flops / 1e9, flops / 1e9 / (median / 1000), gemm[0], head[0],
                cpuMedian, Arrays.toString(cpuMs), flops / 1e9 / (cpuMedian / 1000), gemm[1], head[1], hitsPerStep, missesPerStep));
    }

    private static final java.lang.management.ThreadMXBean THREADS = java.lang.management.ManagementFactory.getThreadMXBean();

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        int n = s.length;
        return n % 2 == 1 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    }

    /**
     * Multiply-adds × 2 of one step's necessary math: every projection forward and its input
     * gradient (frozen W: no weight gradient), LoRA forward and backward, causal attention
     * (QKᵀ and PV forward, four products backward, half the S² pairs), and lm_head forward and
     * input gradient on the labelled positions only. Elementwise ops are left out.
     */
    static double stepFlops(LlamaConfig c, int batch, int seq, long labelled) {
        double d = c.hiddenSize(), h = c.intermediateSize(), kv = (double) c.numKeyValueHeads() * c.headDim(), r = 16;
        double t = (double) batch * seq;
        double proj = 2 * (d * d + d * kv * 2 + d * d + 3 * d * h); // y = x Wᵀ per token
        double lora = 2 * r * ((d + d) * 2 + (d + kv) * 2 + (d + h) * 3); // x Aᵀ and (xA) Bᵀ per token
        double att = 2 * 2 * (seq / 2.0) * d; // QKᵀ and PV per query token, causal half
        double perLayer = t * (proj * 2 + lora * 3 + att * 3);
        double head = labelled * 2 * d * c.vocabSize() * 2;
        return c.numHiddenLayers() * perLayer + head;
    }

    /**
     * GFLOP/s of OpenBLAS sgemm on [t, d]·[d, hidden]ᵀ through the same backend, median of 7: per
     * wall second and per second of the calling thread's CPU time (at 1 thread, all of its work).
     */
    static double[] sgemmGflops(Backend be, long t, long d, long hidden) {
        try (Tensor a = be.allocate(DType.F32, MemoryCategory.WORKSPACE, t, d);
             Tensor b = be.allocate(DType.F32, MemoryCategory.WORKSPACE, hidden, d);
             Tensor out = be.allocate(DType.F32, MemoryCategory.WORKSPACE, t, hidden)) {
            double[] s = new double[7], cs = new double[7];
            for (int i = -2; i < s.length; i++) {
                long c0 = THREADS.getCurrentThreadCpuTime(), t0 = System.nanoTime();
                be.sgemm(false, true, t, hidden, d, 1f, a, d, b, d, 0f, out, hidden);
                if (i >= 0) {
                    s[i] = (System.nanoTime() - t0) / 1e9;
                    cs[i] = (THREADS.getCurrentThreadCpuTime() - c0) / 1e9;
                }
            }
            double gflop = 2.0 * t * d * hidden / 1e9;
            return new double[] {gflop / median(s), gflop / median(cs)};
        }
    }
}
