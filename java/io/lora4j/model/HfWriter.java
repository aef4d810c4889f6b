package io.lora4j.model;

import com.google.gson.JsonObject;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.SafeTensorsDir;
import io.lora4j.io.SafeTensorsWriter;
import io.lora4j.io.TorchDtypes;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Halfs;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Writes a plain HF directory (config.json + model.safetensors) with every weight in one dtype
 * (F32, BF16 or F16; fp32 to 16-bit rounds to nearest even). NF4 projections are dequantized.
 * A tied model writes no lm_head. The directory appears atomically.
 */
public final class HfWriter {
    private HfWriter() {}

    /**
     * @param dtype      the dtype of every tensor written
     * @param overwrite  replace an existing non-empty directory
     * @param extraFiles files copied in under their own names (tokenizer files)
     */
    public record Options(DType dtype, boolean overwrite, List<Path> extraFiles) {
        public Options {
            if (dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16)
                throw new IllegalArgumentException("HF weights are written as F32, BF16 or F16, not " + dtype);
            extraFiles = extraFiles == null ? List.of() : List.copyOf(extraFiles);
        }

        public static Options of(DType dtype) {
            return new Options(dtype, false, List.of());
        }
    }

    /** Writes {@code w} to {@code out}; returns the size of model.safetensors. */
    public static long write(LlamaWeights w, Path out, Options o) throws IOException {
        AtomicFiles.checkOutput(out.toAbsolutePath(), o.overwrite());
        List<Tensor> made = new ArrayList<>();
        try {
            SafeTensorsWriter st = new SafeTensorsWriter().metadata("format", "pt");
            st.add(LlamaWeights.EMBED, convert(w.embedding(), o.dtype(), made));
            for (int l = 0; l < w.layers().size(); l++) {
                LayerWeights layer = w.layer(l);
                st.add(LlamaWeights.inputNormName(l), convert(layer.inputLayernorm(), o.dtype(), made));
                Architecture arch = w.config().architecture();
                for (Projection p : Projection.values()) {
                    if (arch.fusedProjections() && p != p.fusedLeader()) continue; // written with its leader
                    Projection[] group = arch.fusedProjections() ? p.fusedGroup() : new Projection[] {p};
                    Tensor t = dense(layer.projection(group[0]), made);
                    if (group.length > 1) { // Phi-3: the fused module's rows, [Q | K | V] or [gate | up]
                        Tensor[] parts = new Tensor[group.length];
                        for (int i = 0; i < group.length; i++)
                            parts[i] = convert(i == 0 ? t : dense(layer.projection(group[i]), made), DType.F32, made);
                        t = concatRows(parts, made);
                    }
                    st.add(arch.weightName(p, l), convert(t, o.dtype(), made));
                }
                st.add(LlamaWeights.postNormName(l), convert(layer.postAttentionLayernorm(), o.dtype(), made));
                for (var e : layer.extras().entrySet()) st.add("model.layers." + l + "." + e.getKey(), convert(e.getValue(), o.dtype(), made));
            }
            st.add(LlamaWeights.NORM, convert(w.norm(), o.dtype(), made));
            if (!w.tied()) st.add(LlamaWeights.LM_HEAD, convert(w.lmHead(), o.dtype(), made));
            JsonObject config = w.configJson() != null ? w.configJson() : w.config().toJson();
            config.remove("quantization_config");
            config.addProperty("torch_dtype", TorchDtypes.name(o.dtype()));
            long[] size = new long[1];
            AtomicFiles.writeDirectory(out, o.overwrite(), tmp -> {
                size[0] = st.write(tmp.resolve(SafeTensorsDir.SINGLE));
                LlamaConfig.writeJson(config, tmp.resolve(LlamaConfig.FILE));
                Bnb4bitWriter.copyExtras(o.extraFiles(), tmp);
            });
            return size[0];
        } finally {
            for (Tensor t : made) t.close();
        }
    }

    /** A projection's dense weight: the tensor itself, or the dequantized NF4 (recorded in made). */
    private static Tensor dense(ProjectionWeight pw, List<Tensor> made) {
        if (pw instanceof ProjectionWeight.Dense d) return d.tensor();
        Tensor t = Nf4.dequantize(Backends.cpu(), ((ProjectionWeight.Quantized) pw).weight());
        made.add(t);
        return t;
    }

    /** F32 host matrices of equal width stacked by rows into a new tensor (recorded in made). */
    private static Tensor concatRows(Tensor[] parts, List<Tensor> made) {
        long rows = 0, in = parts[0].dim(1);
        for (Tensor p : parts) rows += p.dim(0);
        Tensor out = Tensor.allocate(DType.F32, MemoryCategory.WORKSPACE, rows, in);
        made.add(out);
        java.nio.FloatBuffer dst = out.buffer().asFloatBuffer();
        for (Tensor p : parts) dst.put(p.buffer().asFloatBuffer());
        return out;
    }

    /** {@code t} itself when it already has {@code dtype}, else a converted host copy (recorded in made). */
    static Tensor convert(Tensor t, DType dtype, List<Tensor> made) {
        t.requireHost();
        if (t.dtype() == dtype) return t;
        Tensor out = Tensor.allocate(dtype, MemoryCategory.WORKSPACE, t.shape());
        made.add(out);
        float[] v = t.toFloats();
        ByteBuffer b = out.buffer();
        switch (dtype) {
            case F32: b.asFloatBuffer().put(v); break;
            case BF16: for (int i = 0; i < v.length; i++) b.putShort(2 * i, Halfs.floatToBf16(v[i])); break;
            case F16: for (int i = 0; i < v.length; i++) b.putShort(2 * i, Halfs.fromFloat(v[i])); break;
            default: throw new IllegalArgumentException("cannot convert to " + dtype);
        }
        return out;
    }
}
