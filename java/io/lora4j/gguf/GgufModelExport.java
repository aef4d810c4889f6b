package io.lora4j.gguf;

import io.lora4j.io.FormatException;
import io.lora4j.model.LayerWeights;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.Projection;
import io.lora4j.model.ProjectionWeight;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4;
import io.lora4j.tensor.Tensor;
import io.lora4j.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * Writes a model (base or merged) as one GGUF file that llama.cpp loads: the family's architecture
 * metadata and tensor names ({@link GgufArchitecture}), the tokenizer ({@link GgufTokenizer}), and
 * every weight in the type {@link GgufFileType} chooses for it. Weights are converted one tensor at
 * a time from the model as loaded (fp32/bf16/f16 tensors, NF4 projections dequantized), so the peak
 * is one tensor in fp32 plus its quantized rows.
 */
public final class GgufModelExport {
    private GgufModelExport() {}

    /** ggml's GGML_QNT_VERSION, written as general.quantization_version. */
    public static final int QUANTIZATION_VERSION = 2;
    /** Rows converted at a time: bounds the fp32 staging of a large tensor. */
    static final int CHUNK_ELEMENTS = 1 << 22;

    /**
     * @param fileType     the quantization of the file
     * @param name         general.name
     * @param tokenizer    the model's tokenizer, or null (the file then gets a placeholder vocabulary, {@link GgufTokenizer#placeholder})
     * @param tokenizerSource the file or directory the tokenizer came from
     * @param chatTemplate tokenizer.chat_template, or null
     */
    public record Options(GgufFileType fileType, String name, Tokenizer tokenizer, Path tokenizerSource, String chatTemplate) {}

    /**
     * What was written.
     *
     * @param bytes     the file size
     * @param types     tensors written per type
     * @param fallbacks tensors whose type fell back because their rows do not fit the block (name: type)
     */
    public record Summary(long bytes, Map<GgmlType, Integer> types, List<String> fallbacks) {}

    /**
     * Writes {@code w} to {@code out} (atomically).
     *
     * @throws FormatException          for a model family or tokenizer that has no GGUF form here
     * @throws IllegalArgumentException for a shape/quantization combination lora4j cannot write
     */
    public static Summary write(LlamaWeights w, Options o, Path out) throws IOException {
        LlamaConfig c = w.config();
        Path source = w.source() == null ? out : w.source();
        GgufArchitecture arch = GgufArchitecture.of(c.modelType()).orElseThrow(() -> new FormatException(source,
                "model_type '" + c.modelType() + "' has no GGUF export yet"));
        String why = arch.unsupported(c);
        if (why != null) throw new FormatException(source, "cannot be exported as GGUF: " + why);
        if (o.tokenizer() != null && o.tokenizer().vocabSize() > c.vocabSize())
            throw new FormatException(o.tokenizerSource(), "the tokenizer has " + o.tokenizer().vocabSize() + " tokens, more than the model's "
                    + c.vocabSize());
        GgufWriter gw = new GgufWriter();
        gw.put("general.architecture", GgufValue.string(arch.name()));
        gw.put("general.type", GgufValue.string("model"));
        gw.put("general.name", GgufValue.string(o.name()));
        arch.metadata(c, gw);
        gw.put("general.file_type", GgufValue.u32(o.fileType().ftype));
        gw.put("general.quantization_version", GgufValue.u32(QUANTIZATION_VERSION));
        if (o.tokenizer() != null) {
            GgufTokenizer.write(o.tokenizer(), o.tokenizerSource(), c.vocabSize(), o.chatTemplate(), gw);
        } else {
            GgufTokenizer.placeholder(c, gw);
            if (o.chatTemplate() != null) gw.put("tokenizer.chat_template", GgufValue.string(o.chatTemplate()));
        }

        boolean is70b = arch == GgufArchitecture.LLAMA && c.numHiddenLayers() == 80 && c.numAttentionHeads() != c.numKeyValueHeads();
        GgufFileType.Rule rule = o.fileType().rule(c.numHiddenLayers(), w.tied(), is70b);
        Map<GgmlType, Integer> counts = new EnumMap<>(GgmlType.class);
        List<String> fallbacks = new ArrayList<>();
        List<Planned> plan = new ArrayList<>();
        plan.add(new Planned(GgufArchitecture.TOKEN_EMBD + ".weight", w.embedding(), List.of(), 0, GgufArchitecture.Stored.IDENTITY));
        float[] ropeFactors = GgufArchitecture.ropeFreqFactors(c);
        List<Tensor> made = new ArrayList<>();
        if (ropeFactors != null) {
            Tensor f = Tensor.ofFloats(ropeFactors, ropeFactors.length);
            made.add(f);
            plan.add(new Planned(GgufArchitecture.ROPE_FREQS + ".weight", f, List.of(), 0, GgufArchitecture.Stored.IDENTITY));
        }
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            LayerWeights lw = w.layer(l);
            plan.add(plain(arch, c, arch.inputNormName(l), lw.inputLayernorm()));
            for (Projection p : new Projection[] {Projection.Q, Projection.K, Projection.V, Projection.O}) projection(plan, arch, c, lw, l, p);
            for (String suffix : arch.extras().keySet()) plan.add(plain(arch, c, arch.extraName(l, suffix), lw.extra(suffix)));
            plan.add(plain(arch, c, arch.postNormName(l), lw.postAttentionLayernorm()));
            for (Projection p : new Projection[] {Projection.GATE, Projection.UP, Projection.DOWN}) projection(plan, arch, c, lw, l, p);
        }
        plan.add(plain(arch, c, GgufArchitecture.OUTPUT_NORM + ".weight", w.norm()));
        if (!w.tied()) plan.add(new Planned(GgufArchitecture.OUTPUT + ".weight", w.lmHead(), List.of(), 0, GgufArchitecture.Stored.IDENTITY));

        try {
            for (Planned pl : plan) {
                long[] shape = pl.shape();
                long[] ne = new long[shape.length];
                for (int i = 0; i < shape.length; i++) ne[i] = shape[shape.length - 1 - i];
                GgmlType preferred = rule.preferred(pl.name, shape.length, ne[0]);
                GgmlType type = GgufFileType.fallback(preferred, ne[0]);
                if (preferred != type) fallbacks.add(pl.name + ": " + preferred.ggmlName() + " -> " + type.ggmlName());
                counts.merge(type, 1, Integer::sum);
                int headDim = pl.heads == 0 ? 0 : (int) (shape[0] / pl.heads);
                gw.addTensor(pl.name, type, ne, sink -> rows(pl, shape, headDim, type, sink));
            }
            long bytes = gw.write(out);
            return new Summary(bytes, counts, fallbacks);
        } finally {
            for (Tensor t : made) t.close();
        }
    }

    private static Planned plain(GgufArchitecture arch, LlamaConfig c, String name, Tensor t) {
        if (t == null) throw new IllegalArgumentException("the model has no tensor for " + name);
        return new Planned(name, t, List.of(), 0, arch.stored(name, c));
    }

    /**
     * Plans projection {@code p} of layer {@code l}; with fused projections (Phi-3) the module's
     * projections go out as one tensor of their rows in order, under its first one.
     */
    private static void projection(List<Planned> plan, GgufArchitecture arch, LlamaConfig c, LayerWeights lw, int l, Projection p) {
        boolean fused = c.architecture().fusedProjections();
        if (fused && p != p.fusedLeader()) return;
        List<ProjectionWeight> parts = new ArrayList<>();
        for (Projection q : fused ? p.fusedGroup() : new Projection[] {p}) parts.add(lw.projection(q));
        String name = arch.weightName(l, p);
        plan.add(new Planned(name, null, parts, arch.permuteHeads(p, c), arch.stored(name, c)));
    }

    /**
     * One tensor of the file: a plain tensor, or the rows of one or more (fused) projections, permuted
     * per head when heads &gt; 0, its values stored as {@code stored} says.
     */
    private record Planned(String name, Tensor tensor, List<ProjectionWeight> parts, int heads, GgufArchitecture.Stored stored) {
        long[] shape() {
            if (tensor != null) return tensor.shape();
            long[] s = parts.get(0).shape().clone();
            for (int i = 1; i < parts.size(); i++) s[0] += parts.get(i).shape()[0];
            return s;
        }
    }

    /** Streams the rows of a plan in {@code type}: its tensor, or its projections one after the other. */
    private static void rows(Planned src, long[] shape, int headDim, GgmlType type, GgufWriter.ByteSink sink) throws IOException {
        if (src.tensor != null) {
            rows(src.tensor, false, shape, headDim, src.stored, type, sink);
            return;
        }
        for (ProjectionWeight p : src.parts) {
            if (p instanceof ProjectionWeight.Dense d) rows(d.tensor(), false, p.shape(), headDim, src.stored, type, sink);
            else rows(Nf4.dequantize(Backends.cpu(), ((ProjectionWeight.Quantized) p).weight()), true, p.shape(), headDim, src.stored, type, sink);
        }
    }

    /**
     * Streams the rows of {@code t} (closed after when {@code own}) in {@code type}: fp32 rows in chunks
     * (rows permuted per head when {@code headDim} &gt; 0), stored as {@code stored} says, quantized into the sink.
     */
    private static void rows(Tensor t, boolean own, long[] shape, int headDim, GgufArchitecture.Stored stored, GgmlType type,
            GgufWriter.ByteSink sink) throws IOException {
        try {
            long cols = shape.length == 1 ? shape[0] : shape[1];
            long rows = shape.length == 1 ? 1 : shape[0];
            int chunkRows = (int) Math.max(1, Math.min(rows, CHUNK_ELEMENTS / cols));
            if (headDim > 0) chunkRows = Math.max(headDim, chunkRows / headDim * headDim); // whole heads
            for (long r0 = 0; r0 < rows; r0 += chunkRows) {
                int n = (int) Math.min(chunkRows, rows - r0);
                float[] x;
                try (Tensor view = t.slice(r0 * cols, n, cols)) {
                    x = view.toFloats();
                }
                if (!stored.identity()) stored.apply(x);
                if (headDim > 0) {
                    float[] p = new float[x.length];
                    for (int r = 0; r < n; r++)
                        System.arraycopy(x, (int) (GgufArchitecture.sourceRow(r, headDim) * cols), p, (int) (r * cols), (int) cols);
                    x = p;
                }
                ByteBuffer b = ByteBuffer.allocate((int) (type.rowBytes(cols) * n)).order(ByteOrder.LITTLE_ENDIAN);
                for (int r = 0; r < n; r++) GgmlQuants.quantizeRow(type, x, (int) (r * cols), (int) cols, b);
                sink.write(b.flip());
            }
        } finally {
            if (own) t.close();
        }
    }
}
