package io.lora4j.bench;

import io.lora4j.model.LlamaModel;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.model.Sampler;
import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.Tensor;
import java.nio.file.Path;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * stories15M inference on one thread, with the same prompt and token counts as the PyTorch peer
 * (scripts/reference/torch_peer.py, run by scripts/bench.sh in the same invocation):
 * {@code decode64} = greedy decoding of 64 tokens after BOS + "Once upon a time" with the KV
 * cache (the prompt's prefill included, 69 decode steps); {@code prefill256} = one forward pass
 * over 256 tokens. {@code weights}: fp32 as stored, or the projections in NF4 (QLoRA's base).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xmx4g"})
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Threads(1)
@State(Scope.Benchmark)
public class InferenceBench {
    static final int[] PROMPT = {1, 9038, 2501, 263, 931};
    static final int NEW_TOKENS = 64;

    @Param({"fp32", "nf4"})
    public String weights;

    LlamaWeights w;
    LlamaModel model;
    int[] prefillIds;

    @Setup
    public void setup() throws Exception {
        NativeLibrary.setNumThreads(1);
        String cache = System.getenv().getOrDefault("LORA4J_CACHE", System.getProperty("user.home") + "/.cache/lora4j");
        Path p = Path.of(cache, "stories15M.bin");
        w = ModelLoader.load(p, weights.equals("nf4") ? ModelLoader.Options.in4bit() : ModelLoader.Options.defaults());
        model = LlamaModel.create(Backends.cpu(), w);
        Random r = new Random(7);
        prefillIds = new int[256];
        for (int i = 0; i < prefillIds.length; i++) prefillIds[i] = 3 + r.nextInt(31997);
    }

    @TearDown
    public void tearDown() {
        model.close();
        w.close();
    }

    @Benchmark
    public int decode64() {
        try (LlamaModel.KvCache c = model.newCache(PROMPT.length + NEW_TOKENS)) {
            float[] logits = null;
            for (int id : PROMPT) logits = model.decode(c, id);
            int next = 0;
            for (int i = 0; i < NEW_TOKENS; i++) {
                next = Sampler.argmax(logits);
                logits = model.decode(c, next);
            }
            return next;
        }
    }

    @Benchmark
    public float prefill256() {
        try (Tensor logits = model.forward(new int[][] {prefillIds})) {
            return logits.numel();
        }
    }
}
