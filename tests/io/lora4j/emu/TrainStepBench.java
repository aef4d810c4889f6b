package io.lora4j.emu;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
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
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
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
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import org.bytedeco.javacpp.FloatPointer;

/**
 * lora4j's side of issue 15's training-step benchmark (scripts/device-check-java.sh; the peer is
 * scripts/reference/peft_train_step_peer.py on the same shapes): optimizer steps of a stack of
 * Llama-3.1-8B's shape with random weights made in this process (no checkpoint file), LoRA r 16,
 * alpha 16 on all seven projections, AdamW, clipping 1.0, on one batch of random token ids, every
 * position labelled. {@code lora}: the dense base in bf16 (CUDA's default storage); {@code qlora}:
 * the projections quantized to NF4 (blocksize 64, double quant) with bf16 compute, as bitsandbytes'
 * {@code bnb_4bit_compute_dtype=bfloat16}. Activations under the device's default mixed precision
 * (bf16 kept on CUDA). The peak is {@link MemoryTracker}'s device peak of live tensors over the
 * timed steps, weights included, as torch.cuda.max_memory_allocated counts it; the caching
 * allocator's reserved peak is printed beside it.
 *
 * <p>The weights are uniform in ±0.02·√3 (std 0.02, as HF's initializer_range), norms 1; the
 * values do not change the work. Layers and shapes come from CONFIG (an HF config.json), with
 * {@code num_hidden_layers} replaced by LAYERS; {@code --tiny} shrinks it to a shape the CPU or the
 * emulated library runs in seconds (hidden 64, intermediate 128, 4 heads, 2 KV heads, vocabulary
 * 256), for trying the script only. Prints one JSON line.
 *
 * <p>Usage: TrainStepBench CONFIG.json lora|qlora LAYERS SEQ BATCH STEPS cpu|cuda [none|true|unsloth] [--tiny]
 */
public final class TrainStepBench {
    private TrainStepBench() {}

    /** What --tiny changes in the config (scripts/reference/peft_train_step_peer.py's TINY: keep them equal). */
    static final Map<String, Integer> TINY = Map.of("hidden_size", 64, "intermediate_size", 128, "num_attention_heads", 4,
            "num_key_value_heads", 2, "head_dim", 16, "vocab_size", 256, "bos_token_id", 1, "eos_token_id", 2);

    /** The config with {@code layers} layers; {@code tiny} shrinks the widths (see the class comment). */
    static LlamaConfig config(Path file, int layers, boolean tiny) throws java.io.IOException {
        JsonObject o = JsonParser.parseString(Files.readString(file)).getAsJsonObject();
        o.addProperty("num_hidden_layers", layers);
        if (tiny) TINY.forEach(o::addProperty);
        return LlamaConfig.fromJson(o, file);
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 7) {
            System.err.println("usage: TrainStepBench CONFIG.json lora|qlora LAYERS SEQ BATCH STEPS cpu|cuda [none|true|unsloth] [--tiny]");
            System.exit(2);
        }
        boolean qlora = args[1].equals("qlora"), tiny = Arrays.asList(args).contains("--tiny");
        int layers = Integer.parseInt(args[2]), seq = Integer.parseInt(args[3]), batch = Integer.parseInt(args[4]);
        int steps = Integer.parseInt(args[5]);
        Device device = Device.parse(args[6]);
        CheckpointMode mode = args.length > 7 && !args[7].startsWith("--") ? CheckpointMode.parse(args[7]) : CheckpointMode.UNSLOTH;
        LlamaConfig c = config(Path.of(args[0]), layers, tiny);
        Backend be = Backends.get(device);

        long t0 = System.nanoTime();
        LlamaWeights w = randomWeights(c, be, qlora);
        double buildS = (System.nanoTime() - t0) / 1e9;
        Random r = new Random(17);
        List<Example> rows = new ArrayList<>();
        for (int b = 0; b < batch; b++) {
            int[] ids = new int[seq];
            for (int i = 0; i < seq; i++) ids[i] = 3 + r.nextInt(c.vocabSize() - 3);
            rows.add(new Example(ids, ids.clone()));
        }
        List<Batch> window = List.of(Batch.of(rows, 0));
        double[] ms = new double[steps];
        long peak, peakReserved;
        double firstLoss, lastLoss;
        try (w; LoraAdapter adapter = LoraAdapter.create(be, c, LoraConfig.defaults());
             LoraTrainingModel m = new LoraTrainingModel(be, w, adapter);
             Trainer trainer = new Trainer(m, TrainConfig.defaults().withBatch(batch, 1)
                     .withSchedule(2e-4, 0, LrSchedule.CONSTANT, 0.01, 1.0, 1_000_000).withCheckpointing(mode), 1_000_000)) {
            firstLoss = trainer.step(window).loss();
            trainer.step(window); // two warm-up steps (the peer does the same)
            MemoryTracker.GLOBAL.resetPeaks();
            lastLoss = firstLoss;
            for (int s = 0; s < steps; s++) {
                long s0 = System.nanoTime();
                lastLoss = trainer.step(window).loss(); // reads the loss back: the step has finished on the device
                ms[s] = (System.nanoTime() - s0) / 1e6;
            }
            peak = MemoryTracker.GLOBAL.peakTotal(be.device());
            peakReserved = MemoryTracker.GLOBAL.peakReserved(be.device());
            double median = median(ms), tokens = (double) batch * seq;
            System.out.println(String.format(Locale.ROOT,
                    "{\"side\": \"lora4j\", \"mode\": \"%s\", \"backend\": \"%s\", \"layers\": %d, \"hidden\": %d, \"vocab\": %d, \"seq\": %d,"
                            + " \"batch\": %d, \"checkpointing\": \"%s\", \"bf16\": %b, \"tiny\": %b, \"build_s\": %.1f,"
                            + " \"median_ms\": %.2f, \"min_ms\": %.2f, \"max_ms\": %.2f, \"all_ms\": %s, \"tokens_per_second\": %.1f,"
                            + " \"peak_bytes\": %d, \"peak_reserved_bytes\": %d, \"first_loss\": %.4f, \"last_loss\": %.4f}",
                    qlora ? "qlora" : "lora", be.description().replace("\"", "'"), layers, c.hiddenSize(), c.vocabSize(), seq, batch,
                    mode.name().toLowerCase(Locale.ROOT), m.bf16(), tiny, buildS, median, min(ms), max(ms), Arrays.toString(ms),
                    tokens / (median / 1000), peak, peakReserved, firstLoss, lastLoss));
        }
    }

    /**
     * Random weights of shape {@code c}: host fp32 tensors filled by a seeded xorshift, handed to the
     * training model, which converts them once (bf16 on CUDA); with {@code qlora} each projection is
     * uploaded alone, quantized to NF4 on the device and the fp32 copies dropped, as
     * ModelLoader's load_in_4bit does.
     */
    static LlamaWeights randomWeights(LlamaConfig c, Backend be, boolean qlora) {
        long[] state = {0x9E3779B97F4A7C15L};
        Tensor emb = fill(state, 0.02f, 0f, c.vocabSize(), c.hiddenSize());
        List<LayerWeights> layers = new ArrayList<>();
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            Map<Projection, ProjectionWeight> p = new EnumMap<>(Projection.class);
            for (Projection pr : Projection.values()) {
                Tensor host = fill(state, 0.02f, 0f, pr.shape(c));
                if (!qlora) {
                    p.put(pr, new ProjectionWeight.Dense(host));
                    continue;
                }
                Tensor src = be.device() == Device.CPU ? host : be.upload(host, MemoryCategory.WORKSPACE);
                Nf4Weight q;
                try {
                    q = Nf4.quantize(be, src, Nf4.DEFAULT_BLOCKSIZE, true).withComputeDtype(DType.BF16);
                } finally {
                    if (src != host) src.close();
                    host.close();
                }
                p.put(pr, new ProjectionWeight.Quantized(q));
            }
            layers.add(new LayerWeights(fill(state, 0f, 1f, c.hiddenSize()), p, fill(state, 0f, 1f, c.hiddenSize())));
        }
        Tensor head = c.tieWordEmbeddings() ? null : fill(state, 0.02f, 0f, c.vocabSize(), c.hiddenSize());
        return new LlamaWeights(c, emb, layers, fill(state, 0f, 1f, c.hiddenSize()), head, ModelFormat.HF, null, null);
    }

    /** A host F32 tensor of {@code mean} + uniform values of standard deviation {@code std}. */
    private static Tensor fill(long[] state, float std, float mean, long... shape) {
        Tensor t = Tensor.allocate(DType.F32, MemoryCategory.WEIGHTS, shape);
        FloatPointer fp = t.floatPointer();
        float[] chunk = new float[1 << 20];
        float scale = (float) (std * Math.sqrt(3) / (1L << 23));
        long x = state[0];
        for (long off = 0; off < t.numel(); off += chunk.length) {
            int n = (int) Math.min(chunk.length, t.numel() - off);
            for (int i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >>> 7;
                x ^= x << 17;
                chunk[i] = mean + scale * ((int) (x >>> 40) - (1 << 23)); // 24 random bits, centred
            }
            fp.position(off).put(chunk, 0, n);
        }
        fp.position(0);
        state[0] = x;
        return t;
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        int n = s.length;
        return n % 2 == 1 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    }

    private static double min(double[] v) {
        return Arrays.stream(v).min().orElse(Double.NaN);
    }

    private static double max(double[] v) {
        return Arrays.stream(v).max().orElse(Double.NaN);
    }
}
