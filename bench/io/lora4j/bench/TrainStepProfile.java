package io.lora4j.bench;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.HostAllocator;
import io.lora4j.tensor.MemoryTracker;
import io.lora4j.train.CheckpointMode;
import io.lora4j.train.LoraTrainingModel;
import io.lora4j.train.LrSchedule;
import io.lora4j.train.TrainConfig;
import io.lora4j.train.Trainer;
import java.lang.reflect.InvocationHandler;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;

/**
 * Where one LoRA training step's time goes, by backend op: stories15M fp32, LoRA r 16 (alpha 16) on
 * all seven projections, no dropout, no activation checkpointing, AdamW + clipping, one batch of B rows × S random tokens (seed
 * 7, every position labelled: the full lm_head). Every {@link Backend} call of the step is timed
 * through a proxy (the CPU backend's ops are synchronous, so wall time per call is the op's time);
 * sgemm calls are keyed by their shape, so lm_head, the projections and the LoRA products show
 * apart. "outside the backend" is the step's wall time minus its ops: Java-side work, allocation
 * bookkeeping and the proxy itself. The same steps are also timed without the proxy, interleaved,
 * to show what the profiling costs. Threads: LORA4J_NUM_THREADS.
 *
 * <p>Prints one JSON object: {"threads", "blas", "plain_ms": [...], "profiled_ms": [...],
 * "plain_cpu_ms": [...], "profiled_cpu_ms": [...], "ops": {KEY: {"calls", "ms", "cpu_ms"}},
 * "host_cache": {...}} with per-step figures (ops summed over the profiled steps ÷ steps). cpu_ms
 * is the calling thread's CPU time (user + system, page faults included): at 1 thread the whole
 * step's work, and far less disturbed than wall time on a loaded machine. host_cache: the host allocator's hits and misses per measured step (both
 * models), its limit, and the peaks of allocated and reserved host bytes over the measured steps.
 * {@code -Dlora4j.host_cache_bytes=0} runs without the cache (every block fresh from the system).
 *
 * <p>Usage: TrainStepProfile MODEL [STEPS [B [S]]]   (defaults 5 steps after 2 warm-up, 4, 256)
 */
public final class TrainStepProfile {
    /** Accumulated wall time, calling-thread CPU time and calls of one op key. */
    private static final class Acc {
        long ns, cpuNs, calls;
    }

    private static final java.lang.management.ThreadMXBean THREADS = java.lang.management.ManagementFactory.getThreadMXBean();

    public static void main(String[] args) throws Exception {
        Path model = Path.of(args[0]);
        int steps = args.length > 1 ? Integer.parseInt(args[1]) : 5;
        int batch = args.length > 2 ? Integer.parseInt(args[2]) : 4, seq = args.length > 3 ? Integer.parseInt(args[3]) : 256;
        Backend cpu = Backends.cpu();
        Map<String, Acc> ops = new TreeMap<>();
        boolean[] recording = {false};
        InvocationHandler timing = (proxy, m, a) -> {
            long c0 = THREADS.getCurrentThreadCpuTime();
            long t0 = System.nanoTime();
            Object r;
            try {
                r = m.invoke(cpu, a);
            } catch (InvocationTargetException e) {
                throw e.getCause();
            }
            if (recording[0]) {
                Acc acc = ops.computeIfAbsent(key(m.getName(), a), k -> new Acc());
                acc.ns += System.nanoTime() - t0;
                acc.cpuNs += THREADS.getCurrentThreadCpuTime() - c0;
                acc.calls++;
            }
            return r;
        };
        Backend profiled = (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class}, timing);
        try (LlamaWeights w = ModelLoader.load(model, ModelLoader.Options.defaults())) {
            List<Batch> window = List.of(Batch.of(randomRows(batch, seq, w.config().vocabSize()), 0));
            // no activation checkpointing: the setup (a recomputing mode adds one more forward)
            TrainConfig tc = TrainConfig.defaults().withBatch(batch, 1).withSchedule(2e-4, 0, LrSchedule.CONSTANT, 0.01, 1.0, 1_000_000)
                    .withCheckpointing(CheckpointMode.NONE);
            double[] plain = new double[steps], prof = new double[steps], plainCpu = new double[steps], profCpu = new double[steps];
            long hits0 = 0, misses0 = 0;
            try (LoraAdapter a1 = LoraAdapter.create(cpu, w.config(), LoraConfig.defaults());
                 LoraTrainingModel m1 = new LoraTrainingModel(cpu, w, a1);
                 Trainer t1 = new Trainer(m1, tc, 1_000_000);
                 LoraAdapter a2 = LoraAdapter.create(cpu, w.config(), LoraConfig.defaults());
                 LoraTrainingModel m2 = new LoraTrainingModel(profiled, w, a2);
                 Trainer t2 = new Trainer(m2, tc, 1_000_000)) {
                for (int s = -2; s < steps; s++) { // two warm-up steps of each
                    if (s == 0) {
                        hits0 = HostAllocator.GLOBAL.hits();
                        misses0 = HostAllocator.GLOBAL.misses();
                        MemoryTracker.GLOBAL.resetPeaks();
                    }
                    long c0 = THREADS.getCurrentThreadCpuTime(), t0 = System.nanoTime();
                    t1.step(window);
                    long t1ns = System.nanoTime() - t0, c1ns = THREADS.getCurrentThreadCpuTime() - c0;
                    recording[0] = s >= 0;
                    c0 = THREADS.getCurrentThreadCpuTime();
                    t0 = System.nanoTime();
                    t2.step(window);
                    long t2ns = System.nanoTime() - t0, c2ns = THREADS.getCurrentThreadCpuTime() - c0;
                    recording[0] = false;
                    if (s >= 0) {
                        plain[s] = t1ns / 1e6;
                        prof[s] = t2ns / 1e6;
                        plainCpu[s] = c1ns / 1e6;
                        profCpu[s] = c2ns / 1e6;
                    }
                }
            }
            HostAllocator h = HostAllocator.GLOBAL;
            String cache = String.format(Locale.ROOT, "{\"limit_bytes\": %d, \"hits_per_step\": %.1f, \"misses_per_step\": %.1f,"
                    + " \"peak_allocated_bytes\": %d, \"peak_reserved_bytes\": %d}", h.cacheLimit(), (double) (h.hits() - hits0) / steps,
                    (double) (h.misses() - misses0) / steps, MemoryTracker.GLOBAL.peakTotal(Device.CPU), MemoryTracker.GLOBAL.peakReserved(Device.CPU));
            StringBuilder sb = new StringBuilder();
            sb.append(String.format(Locale.ROOT, "{\"threads\": %d, \"blas\": \"%s\", \"batch\": %d, \"seq\": %d, \"steps\": %d, \"plain_ms\": %s, \"profiled_ms\": %s,"
                    + " \"plain_cpu_ms\": %s, \"profiled_cpu_ms\": %s, \"ops\": {",
                    NativeLibrary.numThreads(), NativeLibrary.blasName(), batch, seq, steps, Arrays.toString(plain), Arrays.toString(prof),
                    Arrays.toString(plainCpu), Arrays.toString(profCpu)));
            List<String> rows = new ArrayList<>();
            for (Map.Entry<String, Acc> e : ops.entrySet())
                rows.add(String.format(Locale.ROOT, "\"%s\": {\"calls\": %.1f, \"ms\": %.3f, \"cpu_ms\": %.3f}", e.getKey(),
                        (double) e.getValue().calls / steps, e.getValue().ns / 1e6 / steps, e.getValue().cpuNs / 1e6 / steps));
            sb.append(String.join(", ", rows)).append("}, \"host_cache\": ").append(cache).append("}");
            System.out.println(sb);
        }
    }

    /** The op's name; sgemm with its shape and transposes ("sgemm 1024x32000x288 NT"). */
    private static String key(String method, Object[] a) {
        if (!method.equals("sgemm")) return method;
        return String.format(Locale.ROOT, "sgemm %dx%dx%d %s%s", (Long) a[2], (Long) a[3], (Long) a[4], (Boolean) a[0] ? "T" : "N",
                (Boolean) a[1] ? "T" : "N");
    }

    /** B rows of S uniform random token ids (seeded), every position labelled. */
    private static List<Example> randomRows(int batch, int seq, int vocab) {
        Random r = new Random(7);
        List<Example> rows = new ArrayList<>();
        for (int b = 0; b < batch; b++) {
            int[] ids = new int[seq];
            for (int i = 0; i < seq; i++) ids[i] = 3 + r.nextInt(vocab - 3);
            rows.add(new Example(ids, ids.clone()));
        }
        return rows;
    }
}
