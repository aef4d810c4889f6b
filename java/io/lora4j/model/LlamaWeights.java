package io.lora4j.model;

import com.google.gson.JsonObject;
import io.lora4j.tensor.Tensor;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * The weights of a decoder model ({@link ModelFamily}) in HF layout (q and k rows in HF's rotate_half order). Dense
 * tensors may be views of a file mapping; projections are dense or NF4.
 *
 * <p>HF tensor names: {@value #EMBED} [vocab, hidden], per layer
 * {@code model.layers.{i}.input_layernorm.weight} [hidden], the seven projections (see
 * {@link Projection}), the family's extra tensors ({@link Architecture#layerTensors}), {@code model.layers.{i}.post_attention_layernorm.weight} [hidden], then
 * {@value #NORM} [hidden] and {@value #LM_HEAD} [vocab, hidden] (absent on disk when tied: then
 * {@link #lmHead()} is the embedding tensor itself).
 */
public final class LlamaWeights implements AutoCloseable {
    public static final String EMBED = "model.embed_tokens.weight";
    public static final String NORM = "model.norm.weight";
    public static final String LM_HEAD = "lm_head.weight";

    private final LlamaConfig config;
    private final Tensor embedding;
    private final List<LayerWeights> layers;
    private final Tensor norm;
    private final Tensor lmHead;
    private final ModelFormat format;
    private final Path source;
    private final JsonObject configJson;

    /**
     * @param lmHead     the classifier, or null when the config ties it to the embedding
     * @param configJson the config.json it was read from (kept to write it back unchanged), or null
     * @throws IllegalArgumentException when a shape disagrees with the config
     */
    public LlamaWeights(LlamaConfig config, Tensor embedding, List<LayerWeights> layers, Tensor norm, Tensor lmHead,
            ModelFormat format, Path source, JsonObject configJson) {
        this.config = config;
        this.embedding = embedding;
        this.layers = List.copyOf(layers);
        this.norm = norm;
        this.lmHead = config.tieWordEmbeddings() ? embedding : lmHead;
        this.format = format;
        this.source = source;
        this.configJson = configJson == null ? null : configJson.deepCopy();
        long d = config.hiddenSize(), v = config.vocabSize();
        check(EMBED, embedding.shape(), v, d);
        check(NORM, norm.shape(), d);
        if (this.lmHead == null) throw new IllegalArgumentException("untied model without " + LM_HEAD);
        check(LM_HEAD, this.lmHead.shape(), v, d);
        if (this.layers.size() != config.numHiddenLayers())
            throw new IllegalArgumentException(this.layers.size() + " layers, config says " + config.numHiddenLayers());
        for (int i = 0; i < this.layers.size(); i++) {
            LayerWeights l = this.layers.get(i);
            check(inputNormName(i), l.inputLayernorm().shape(), d);
            check(postNormName(i), l.postAttentionLayernorm().shape(), d);
            for (Projection p : Projection.values()) check(p.weightName(i), l.projection(p).shape(), p.shape(config));
            var wanted = config.architecture().layerTensors(config);
            for (Architecture.LayerTensor t : wanted) {
                Tensor e = l.extra(t.suffix());
                if (e == null) throw new IllegalArgumentException("layer " + i + " lacks " + t.name(i) + " (" + config.modelType() + ")");
                check(t.name(i), e.shape(), t.shape());
            }
            if (l.extras().size() != wanted.size())
                throw new IllegalArgumentException("layer " + i + " holds tensors a " + config.modelType() + " layer has not: " + l.extras().keySet());
        }
    }

    private static void check(String name, long[] actual, long... expected) {
        if (!Arrays.equals(actual, expected))
            throw new IllegalArgumentException(name + " has shape " + Arrays.toString(actual) + ", the config needs " + Arrays.toString(expected));
    }

    public static String inputNormName(int layer) {
        return "model.layers." + layer + ".input_layernorm.weight";
    }

    public static String postNormName(int layer) {
        return "model.layers." + layer + ".post_attention_layernorm.weight";
    }

    public LlamaConfig config() { return config; }
    /** [vocab, hidden] */
    public Tensor embedding() { return embedding; }
    public List<LayerWeights> layers() { return layers; }
    public LayerWeights layer(int i) { return layers.get(i); }
    /** Final RMSNorm weight [hidden]. */
    public Tensor norm() { return norm; }
    /** [vocab, hidden]; the embedding tensor itself when tied. */
    public Tensor lmHead() { return lmHead; }
    public boolean tied() { return config.tieWordEmbeddings(); }
    public ModelFormat format() { return format; }
    /** The file or directory loaded, or null for an in-memory model. */
    public Path source() { return source; }
    /** The original config.json object, or null (llama2.c and in-memory models). */
    public JsonObject configJson() { return configJson == null ? null : configJson.deepCopy(); }

    /** True when any projection is NF4. */
    public boolean quantized() {
        for (LayerWeights l : layers)
            for (ProjectionWeight w : l.projections().values()) if (w instanceof ProjectionWeight.Quantized) return true;
        return false;
    }

    /** Bytes of weight storage (NF4 projections: packed codes and scales). */
    public long storageBytes() {
        long n = embedding.bytes() + norm.bytes() + (tied() ? 0 : lmHead.bytes());
        for (LayerWeights l : layers) {
            n += l.inputLayernorm().bytes() + l.postAttentionLayernorm().bytes();
            for (Tensor t : l.extras().values()) n += t.bytes();
            for (ProjectionWeight w : l.projections().values()) n += w.storageBytes();
        }
        return n;
    }

    @Override
    public void close() {
        embedding.close();
        norm.close();
        if (lmHead != embedding) lmHead.close();
        for (LayerWeights l : layers) l.close();
    }
}
