package io.lora4j.gguf;

import io.lora4j.io.FormatException;
import io.lora4j.model.Architecture;
import io.lora4j.model.LayerWeights;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelFormat;
import io.lora4j.model.Projection;
import io.lora4j.model.ProjectionWeight;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads the weights of a GGUF model back into lora4j's layout (HF tensor order, q/k rows in
 * rotate-half order, every tensor dequantized to fp32): what llama.cpp computes with, for lora4j to
 * evaluate. The architecture comes from the caller's config (the one exported), checked against the
 * file's metadata and tensor shapes.
 */
public final class GgufModelImport {
    private GgufModelImport() {}

    /**
     * @throws FormatException when the file's architecture, block count, widths or tensor shapes differ from {@code c}
     */
    public static LlamaWeights load(GgufFile f, LlamaConfig c) throws IOException {
        GgufArchitecture arch = GgufArchitecture.of(c.modelType()).orElseThrow(() -> new FormatException(f.file(), "no GGUF mapping for " + c.modelType()));
        GgufValue a = f.get("general.architecture");
        if (a == null || !arch.name().equals(a.asString())) throw new FormatException(f.file(), "general.architecture is " + a + ", expected " + arch.name());
        expect(f, arch.name() + ".block_count", c.numHiddenLayers());
        expect(f, arch.name() + ".embedding_length", c.hiddenSize());
        expect(f, arch.name() + ".feed_forward_length", c.intermediateSize());
        expect(f, arch.name() + ".attention.head_count", c.numAttentionHeads());
        expect(f, arch.name() + ".attention.head_count_kv", c.numKeyValueHeads());
        List<Tensor> made = new ArrayList<>();
        try {
            Tensor embed = read(f, GgufArchitecture.TOKEN_EMBD + ".weight", 0, GgufArchitecture.Stored.IDENTITY, made, c.vocabSize(), c.hiddenSize());
            List<LayerWeights> layers = new ArrayList<>();
            for (int l = 0; l < c.numHiddenLayers(); l++) {
                Map<Projection, ProjectionWeight> m = new EnumMap<>(Projection.class);
                boolean fused = c.architecture().fusedProjections();
                for (Projection p : Projection.values()) {
                    if (fused && p != p.fusedLeader()) continue;
                    int heads = arch.permuteHeads(p, c);
                    Projection[] group = fused ? p.fusedGroup() : new Projection[] {p};
                    long[] s = {0, p.inFeatures(c)};
                    for (Projection q : group) s[0] += q.outFeatures(c);
                    Tensor whole = read(f, arch.weightName(l, p), heads == 0 ? 0 : (int) (s[0] / heads), arch.stored(arch.weightName(l, p), c), made, s);
                    if (group.length == 1) {
                        m.put(p, new ProjectionWeight.Dense(whole));
                        continue;
                    }
                    // a fused module (Phi-3): each projection gets a copy of its rows
                    float[] x = whole.toFloats();
                    int row = 0;
                    for (Projection q : group) {
                        int rows = (int) q.outFeatures(c);
                        Tensor part = Tensor.ofFloats(Arrays.copyOfRange(x, (int) (row * s[1]), (int) ((row + rows) * s[1])), rows, s[1]);
                        made.add(part);
                        m.put(q, new ProjectionWeight.Dense(part));
                        row += rows;
                    }
                }
                Map<String, Tensor> extras = new LinkedHashMap<>();
                for (Architecture.LayerTensor t : c.architecture().layerTensors(c))
                    extras.put(t.suffix(), norm(f, arch, c, arch.extraName(l, t.suffix()), made, t.shape()));
                layers.add(new LayerWeights(norm(f, arch, c, arch.inputNormName(l), made, c.hiddenSize()), m,
                        norm(f, arch, c, arch.postNormName(l), made, c.hiddenSize()), extras));
            }
            Tensor norm = norm(f, arch, c, GgufArchitecture.OUTPUT_NORM + ".weight", made, c.hiddenSize());
            boolean hasOutput = f.tensors().containsKey(GgufArchitecture.OUTPUT + ".weight");
            if (hasOutput == c.tieWordEmbeddings())
                throw new FormatException(f.file(), c.tieWordEmbeddings() ? "has output.weight but the model ties it to the embedding" : "has no output.weight");
            Tensor head = hasOutput ? read(f, GgufArchitecture.OUTPUT + ".weight", 0, GgufArchitecture.Stored.IDENTITY, made, c.vocabSize(),
                    c.hiddenSize()) : null;
            return new LlamaWeights(c, embed, layers, norm, head, ModelFormat.HF, f.file(), null);
        } catch (IOException | RuntimeException e) {
            for (Tensor t : made) t.close();
            throw e;
        }
    }

    private static void expect(GgufFile f, String key, long want) throws FormatException {
        GgufValue v = f.get(key);
        if (v == null || v.asLong() != want) throw new FormatException(f.file(), key + " is " + v + ", expected " + want);
    }

    /** A tensor that is not a projection, its values stored as the architecture says ({@link GgufArchitecture#stored}). */
    private static Tensor norm(GgufFile f, GgufArchitecture arch, LlamaConfig c, String name, List<Tensor> made, long... shape) throws IOException {
        return read(f, name, 0, arch.stored(name, c), made, shape);
    }

    /**
     * Tensor {@code name} as fp32 of row-major {@code shape}, q/k rows un-permuted when headDim &gt; 0,
     * values taken back from their stored form.
     */
    private static Tensor read(GgufFile f, String name, int headDim, GgufArchitecture.Stored stored, List<Tensor> made, long... shape)
            throws IOException {
        GgufFile.TensorInfo t = f.tensor(name);
        if (!Arrays.equals(t.shape(), shape))
            throw new FormatException(f.file(), name + " has shape " + Arrays.toString(t.shape()) + ", the model needs " + Arrays.toString(shape));
        float[] x = f.floats(t);
        if (!stored.identity()) stored.invert(x);
        if (headDim > 0) {
            int cols = (int) shape[1];
            float[] hf = new float[x.length];
            for (int row = 0; row < shape[0]; row++)
                System.arraycopy(x, row * cols, hf, (int) GgufArchitecture.sourceRow(row, headDim) * cols, cols);
            x = hf;
        }
        Tensor out = Tensor.ofFloats(x, shape);
        made.add(out);
        return out;
    }
}
