package io.lora4j.model;

import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.SafeTensors.StDType;
import io.lora4j.io.SafeTensorsDir;
import io.lora4j.io.SafeTensorsWriter;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Writes an HF directory in the bnb-4bit layout that transformers + bitsandbytes save and load
 * ({@link Bnb4bit}): config.json with {@code quantization_config}, and model.safetensors in which
 * the seven projections of every layer are NF4 with their five companion tensors, while the
 * embedding, norms and lm_head keep their dtype (a tied model writes no lm_head). Dense
 * projections are quantized here; projections that are already NF4 are written as they are.
 * The directory appears atomically (temporary sibling + rename).
 */
public final class Bnb4bitWriter {
    private Bnb4bitWriter() {}

    /** bnb_4bit_compute_dtype values. */
    public enum ComputeDtype {
        FLOAT32("float32"), BFLOAT16("bfloat16");

        public final String torchName;

        ComputeDtype(String torchName) {
            this.torchName = torchName;
        }

        public static ComputeDtype parse(String s) {
            for (ComputeDtype c : values()) if (c.torchName.equals(s)) return c;
            throw new IllegalArgumentException("compute dtype '" + s + "' is not float32 or bfloat16");
        }
    }

    /**
     * @param blocksize    NF4 blocksize for dense projections (32..4096, power of two)
     * @param doubleQuant  double-quantize their absmax (bitsandbytes' compress_statistics)
     * @param computeDtype bnb_4bit_compute_dtype written to config.json
     * @param overwrite    replace an existing non-empty output directory
     * @param extraFiles   files copied into the directory under their own names (tokenizer files)
     */
    public record Options(int blocksize, boolean doubleQuant, ComputeDtype computeDtype, boolean overwrite, List<Path> extraFiles) {
        public Options {
            Nf4.checkBlocksize(blocksize);
            extraFiles = extraFiles == null ? List.of() : List.copyOf(extraFiles);
        }

        public static Options defaults() {
            return new Options(Nf4.DEFAULT_BLOCKSIZE, true, ComputeDtype.FLOAT32, false, List.of());
        }
    }

    /**
     * What was written.
     *
     * @param quantized   projections written as NF4
     * @param sourceBytes storage bytes of the weights given (dense projections at their dtype)
     * @param outputBytes size of the written model.safetensors
     * @param tensors     tensors in model.safetensors (companions included)
     * @param projectionSourceBytes storage of the seven projections as given
     * @param projectionNf4Bytes    storage of their NF4 form (packed codes and scales)
     */
    public record Summary(Path dir, int quantized, long sourceBytes, long outputBytes, int tensors,
            long projectionSourceBytes, long projectionNf4Bytes) {}

    /** Writes {@code w} to {@code out} in the bnb-4bit layout. */
    public static Summary write(LlamaWeights w, Path out, Options o) throws IOException {
        return write(w, out, o, Backends.cpu());
    }

    /** As {@link #write(LlamaWeights, Path, Options)}, quantizing on {@code backend} (host tensors). */
    public static Summary write(LlamaWeights w, Path out, Options o, Backend backend) throws IOException {
        if (w.config().architecture().fusedProjections())
            throw new IllegalArgumentException("bnb-4bit output of a model with fused projections (Phi-3's qkv_proj, gate_up_proj) "
                    + "is not supported; write it in 16 bits and load it with load_in_4bit");
        AtomicFiles.checkOutput(out.toAbsolutePath(), o.overwrite());
        List<Nf4Weight> made = new ArrayList<>();
        long[] result = new long[2];
        try {
            SafeTensorsWriter st = new SafeTensorsWriter().metadata("format", "pt");
            st.add(LlamaWeights.EMBED, w.embedding());
            boolean anyDq = false;
            int quantized = 0;
            long projSource = 0, projNf4 = 0;
            for (int l = 0; l < w.layers().size(); l++) {
                LayerWeights layer = w.layer(l);
                st.add(LlamaWeights.inputNormName(l), layer.inputLayernorm());
                for (Projection p : Projection.values()) {
                    ProjectionWeight pw = layer.projection(p);
                    projSource += pw.storageBytes();
                    Nf4Weight q;
                    if (pw instanceof ProjectionWeight.Quantized qw) {
                        q = qw.weight();
                    } else {
                        q = Nf4.quantize(backend, ((ProjectionWeight.Dense) pw).tensor(), o.blocksize(), o.doubleQuant());
                        made.add(q);
                    }
                    anyDq |= q.doubleQuant() != null;
                    projNf4 += q.storageBytes();
                    addNf4(st, p.weightName(l), q);
                    quantized++;
                }
                st.add(LlamaWeights.postNormName(l), layer.postAttentionLayernorm());
                for (var e : layer.extras().entrySet()) st.add("model.layers." + l + "." + e.getKey(), e.getValue());
            }
            st.add(LlamaWeights.NORM, w.norm());
            if (!w.tied()) st.add(LlamaWeights.LM_HEAD, w.lmHead());
            JsonObject config = w.configJson() != null ? w.configJson() : w.config().toJson();
            config.add("quantization_config", quantizationConfig(anyDq, o.computeDtype()));
            int tensors = st.size();
            int q = quantized;
            long ps = projSource, pn = projNf4;
            AtomicFiles.writeDirectory(out, o.overwrite(), tmp -> {
                result[0] = st.write(tmp.resolve(SafeTensorsDir.SINGLE));
                LlamaConfig.writeJson(config, tmp.resolve(LlamaConfig.FILE));
                copyExtras(o.extraFiles(), tmp);
            });
            return new Summary(out, q, w.storageBytes(), result[0], tensors, ps, pn);
        } finally {
            for (Nf4Weight m : made) m.close();
        }
    }

    static void copyExtras(List<Path> files, Path dir) throws IOException {
        for (Path f : files) {
            Path dst = dir.resolve(f.getFileName().toString());
            if (Files.exists(dst)) continue; // the model's own files win over extras of the same name
            AtomicFiles.copyFile(f, dst);
        }
    }

    /** Adds {@code name} and its companions as bitsandbytes names and stores them. */
    static void addNf4(SafeTensorsWriter st, String name, Nf4Weight q) {
        q.packed().requireHost();
        long packedBytes = q.packed().bytes();
        st.add(name, q.packed().reshape(packedBytes, 1));
        if (q.doubleQuant() != null) {
            st.add(name + Bnb4bit.ABSMAX, q.doubleQuant().qabsmax());
            st.addFloats(name + Bnb4bit.QUANT_MAP, new long[] {16}, Bnb4bit.nf4Code());
            st.add(name + Bnb4bit.NESTED_ABSMAX, q.doubleQuant().nestedAbsmax());
            st.addFloats(name + Bnb4bit.NESTED_QUANT_MAP, new long[] {256}, Bnb4bit.dynamicMap());
        } else {
            st.add(name + Bnb4bit.ABSMAX, q.absmax());
            st.addFloats(name + Bnb4bit.QUANT_MAP, new long[] {16}, Bnb4bit.nf4Code());
        }
        byte[] json = Bnb4bit.quantStateJson(q);
        st.add(name + Bnb4bit.QUANT_STATE_SUFFIX, StDType.U8, new long[] {json.length}, json);
    }

    /** transformers' BitsAndBytesConfig.to_dict() for NF4 4-bit. */
    public static JsonObject quantizationConfig(boolean doubleQuant, ComputeDtype computeDtype) {
        JsonObject q = new JsonObject();
        q.addProperty("_load_in_4bit", true);
        q.addProperty("_load_in_8bit", false);
        q.addProperty("bnb_4bit_compute_dtype", computeDtype.torchName);
        q.addProperty("bnb_4bit_quant_storage", "uint8");
        q.addProperty("bnb_4bit_quant_type", "nf4");
        q.addProperty("bnb_4bit_use_double_quant", doubleQuant);
        q.addProperty("llm_int8_enable_fp32_cpu_offload", false);
        q.addProperty("llm_int8_has_fp16_weight", false);
        q.add("llm_int8_skip_modules", JsonNull.INSTANCE);
        q.addProperty("llm_int8_threshold", new PyFloat(6.0));
        q.addProperty("load_in_4bit", true);
        q.addProperty("load_in_8bit", false);
        q.addProperty("quant_method", "bitsandbytes");
        return q;
    }
}
