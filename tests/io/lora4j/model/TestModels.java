package io.lora4j.model;

import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/** Real assets and small synthetic Llama models for the io/model/cli tests. */
public final class TestModels {
    private TestModels() {}

    /** $LORA4J_CACHE, else ~/.cache/lora4j (where scripts/fetch-assets.sh puts the assets). */
    public static Path cache() {
        String env = System.getenv("LORA4J_CACHE");
        return env != null && !env.isEmpty() ? Path.of(env) : Path.of(System.getProperty("user.home"), ".cache", "lora4j");
    }

    /** stories15M.bin in the cache (may be missing: check with Files.exists). */
    public static Path stories15M() {
        return cache().resolve("stories15M.bin");
    }

    public static final String MISSING = "asset missing: run scripts/fetch-assets.sh";

    /**
     * Writes a llama2.c v0 file with seeded uniform(-1, 1) weights (norms around 1).
     *
     * @return the fp32 payload in file order (after the header)
     */
    public static float[] writeLlama2c(Path file, int dim, int hidden, int layers, int heads, int kv, int vocab, int seqLen,
            boolean tied, long seed) throws IOException {
        Llama2c.Header h = new Llama2c.Header(dim, hidden, layers, heads, kv, vocab, seqLen, tied);
        long bytes = h.expectedBytes();
        int floats = (int) ((bytes - Llama2c.HEADER_BYTES) / 4);
        float[] data = new float[floats];
        Random r = new Random(seed);
        for (int i = 0; i < floats; i++) data[i] = r.nextFloat() * 2 - 1;
        ByteBuffer b = ByteBuffer.allocate((int) bytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(dim).putInt(hidden).putInt(layers).putInt(heads).putInt(kv).putInt(tied ? vocab : -vocab).putInt(seqLen);
        b.asFloatBuffer().put(data);
        Files.write(file, b.array());
        return data;
    }

    /** A small config: hidden 64, MLP 96, 2 layers, 4 heads of 16, {@code kv} KV heads, vocab 80. */
    public static LlamaConfig smallConfig(int kv, boolean tied) {
        return new LlamaConfig("llama", 64, 96, 2, 4, kv, 16, 1e-5, 10000.0, null, 80, 128, tied, 1, List.of(2), "float32");
    }

    /** A model of owned F32 tensors with seeded normal weights (std 0.05; norms 1 + noise; the family's biases and q/k norms likewise). */
    public static LlamaWeights random(LlamaConfig c, long seed) {
        return random(c, seed, 0.05f);
    }

    /** {@link #random(LlamaConfig, long)} with weights and biases of std {@code std}, norms 1 + noise of std 2·std. */
    public static LlamaWeights random(LlamaConfig c, long seed, float std) {
        Random r = new Random(seed);
        float ns = 2 * std;
        Tensor emb = rand(r, std, 0f, c.vocabSize(), c.hiddenSize());
        List<LayerWeights> layers = new ArrayList<>();
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            Map<Projection, ProjectionWeight> p = new EnumMap<>(Projection.class);
            for (Projection pr : Projection.values()) p.put(pr, new ProjectionWeight.Dense(rand(r, std, 0f, pr.shape(c))));
            Map<String, Tensor> extras = new java.util.LinkedHashMap<>();
            for (Architecture.LayerTensor t : c.architecture().layerTensors(c))
                extras.put(t.suffix(), t.suffix().endsWith(".bias") ? rand(r, std, 0f, t.shape()) : rand(r, ns, 1f, t.shape()));
            layers.add(new LayerWeights(rand(r, ns, 1f, c.hiddenSize()), p, rand(r, ns, 1f, c.hiddenSize()), extras));
        }
        Tensor norm = rand(r, ns, 1f, c.hiddenSize());
        Tensor head = c.tieWordEmbeddings() ? null : rand(r, std, 0f, c.vocabSize(), c.hiddenSize());
        return new LlamaWeights(c, emb, layers, norm, head, ModelFormat.HF, null, null);
    }

    static Tensor rand(Random r, float std, float mean, long... shape) {
        Tensor t = Tensor.allocate(DType.F32, MemoryCategory.WEIGHTS, shape);
        float[] v = new float[(int) t.numel()];
        for (int i = 0; i < v.length; i++) v[i] = mean + std * (float) r.nextGaussian();
        t.buffer().asFloatBuffer().put(v);
        return t;
    }
}
