package io.lora4j.model;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import io.lora4j.io.FormatException;
import io.lora4j.io.SafeTensors;
import io.lora4j.io.SafeTensorsDir;
import io.lora4j.quant.Nf4;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What a model file or directory holds, read from headers only (no tensor data is touched except
 * the small quant_state JSONs): a safetensors file, an HF directory (plain or bnb-4bit) or a
 * llama2.c .bin.
 */
public final class ModelInspector {
    private ModelInspector() {}

    /** NF4 facts of a quantized weight, from its quant_state. */
    public record Nf4Info(long[] shape, int blocksize, String sourceDtype, boolean doubleQuant) {
        JsonObject toJson() {
            JsonObject o = new JsonObject();
            o.add("shape", longs(shape));
            o.addProperty("blocksize", blocksize);
            o.addProperty("source_dtype", sourceDtype);
            o.addProperty("double_quant", doubleQuant);
            return o;
        }
    }

    /**
     * One stored tensor.
     *
     * @param nf4    set on the packed weight of an NF4 projection
     * @param partOf set on an NF4 companion (absmax, quant_map, ...): the weight it belongs to
     */
    public record TensorInfo(String name, String dtype, long[] shape, long bytes, Nf4Info nf4, String partOf) {
        JsonObject toJson() {
            JsonObject o = new JsonObject();
            o.addProperty("name", name);
            o.addProperty("dtype", dtype);
            o.add("shape", longs(shape));
            o.addProperty("bytes", bytes);
            if (nf4 != null) o.add("nf4", nf4.toJson());
            if (partOf != null) o.addProperty("part_of", partOf);
            return o;
        }
    }

    /**
     * The result.
     *
     * @param format         "safetensors", "hf", "hf-bnb-4bit" or "llama2c"
     * @param config         config.json (or the llama2.c header as one), or null
     * @param parameterCount model parameters (NF4 weights at their logical size, companions excluded)
     * @param tensorBytes    bytes of all stored tensors
     * @param fileBytes      bytes of the files read
     */
    public record ModelInfo(Path path, String format, JsonObject config, List<TensorInfo> tensors, long parameterCount,
            long tensorBytes, long fileBytes, Map<String, String> metadata, List<String> notes) {

        /** The machine-readable form printed by {@code lora4j inspect --json}. */
        public JsonObject toJson() {
            JsonObject o = new JsonObject();
            o.addProperty("path", path.toString());
            o.addProperty("format", format);
            if (config != null) o.add("config", config.deepCopy());
            o.addProperty("parameters", parameterCount);
            o.addProperty("tensor_count", tensors.size());
            o.addProperty("tensor_bytes", tensorBytes);
            o.addProperty("file_bytes", fileBytes);
            JsonObject md = new JsonObject();
            metadata.forEach(md::addProperty);
            o.add("metadata", md);
            JsonArray n = new JsonArray();
            notes.forEach(n::add);
            o.add("notes", n);
            JsonArray t = new JsonArray();
            for (TensorInfo ti : tensors) t.add(ti.toJson());
            o.add("tensors", t);
            return o;
        }
    }

    /** Inspects {@code path}. */
    public static ModelInfo inspect(Path path) throws IOException {
        if (Files.isDirectory(path)) return inspectDir(path);
        if (!Files.exists(path)) throw new FormatException(path, "no such file or directory");
        if (path.getFileName().toString().endsWith(".safetensors")) {
            SafeTensors st = SafeTensors.open(path);
            List<String> notes = new ArrayList<>(st.notes());
            Acc acc = new Acc();
            acc.addFile(st, notes);
            acc.sort();
            return new ModelInfo(path, acc.anyNf4 ? "safetensors (bnb-4bit)" : "safetensors", null, acc.tensors, acc.params,
                    acc.bytes, st.fileSize(), st.metadata(), notes);
        }
        return inspectLlama2c(path);
    }

    private static ModelInfo inspectDir(Path dir) throws IOException {
        Path cfgFile = dir.resolve(LlamaConfig.FILE);
        if (!Files.isRegularFile(cfgFile)) throw new FormatException(dir, "no config.json: not an HF model directory");
        JsonObject cfg = ModelLoader.readJson(cfgFile);
        List<String> notes = new ArrayList<>();
        try {
            LlamaConfig.fromJson(cfg, cfgFile);
        } catch (FormatException e) {
            notes.add("config.json: " + e.problem());
        }
        SafeTensorsDir st = SafeTensorsDir.open(dir);
        Acc acc = new Acc();
        long fileBytes = 0;
        Map<String, String> metadata = new LinkedHashMap<>();
        for (SafeTensors f : st.files()) {
            acc.addFile(f, notes);
            fileBytes += f.fileSize();
            for (String s : f.notes()) notes.add(f.path().getFileName() + ": " + s);
            metadata.putAll(f.metadata());
        }
        acc.sort();
        return new ModelInfo(dir, acc.anyNf4 ? "hf-bnb-4bit" : "hf", cfg, acc.tensors, acc.params, acc.bytes, fileBytes, metadata, notes);
    }

    private static ModelInfo inspectLlama2c(Path file) throws IOException {
        Llama2c.Header h = Llama2c.readHeader(file);
        LlamaConfig cfg = h.config();
        JsonObject json = cfg.toJson();
        List<TensorInfo> tensors = new ArrayList<>();
        long params = 0, bytes = 0;
        Map<String, Projection> byName = Map.of("wq", Projection.Q, "wk", Projection.K, "wv", Projection.V, "wo", Projection.O,
                "w1", Projection.GATE, "w2", Projection.DOWN, "w3", Projection.UP);
        for (Llama2c.Array a : h.arrays()) {
            String name;
            switch (a.name()) {
                case "token_embedding_table": name = LlamaWeights.EMBED; break;
                case "rms_att_weight": name = LlamaWeights.inputNormName(a.layer()); break;
                case "rms_ffn_weight": name = LlamaWeights.postNormName(a.layer()); break;
                case "rms_final_weight": name = LlamaWeights.NORM; break;
                case "wcls": name = LlamaWeights.LM_HEAD; break;
                case "freq_cis_real": case "freq_cis_imag": name = a.name() + " (unused)"; break;
                default: name = byName.get(a.name()).weightName(a.layer());
            }
            tensors.add(new TensorInfo(name, "F32", a.shape(), a.bytes(), null, null));
            bytes += a.bytes();
            if (!a.name().startsWith("freq_cis")) params += a.floats();
        }
        List<String> notes = new ArrayList<>();
        notes.add("llama2.c v0 header: " + h);
        notes.add("q and k rows are stored in Meta's interleaved RoPE order; the loader permutes them to HF order");
        return new ModelInfo(file, "llama2c", json, tensors, params, bytes, Files.size(file), Map.of(), notes);
    }

    /** Accumulates tensor infos over files, attributing NF4 companions to their weight. */
    private static final class Acc {
        final List<TensorInfo> tensors = new ArrayList<>();
        long params;
        long bytes;
        boolean anyNf4;

        /** Natural name order: layers by number, each NF4 weight followed by its companions. */
        void sort() {
            tensors.sort((a, b) -> naturalCompare(a.name(), b.name()));
        }

        void addFile(SafeTensors st, List<String> notes) throws IOException {
            Map<String, Nf4Info> nf4 = new HashMap<>();
            Map<String, String> companionOf = new HashMap<>();
            for (String name : st.entries().keySet()) {
                if (!name.endsWith(Bnb4bit.QUANT_STATE_SUFFIX)) continue;
                String weight = name.substring(0, name.length() - Bnb4bit.QUANT_STATE_SUFFIX.length());
                Bnb4bit.QuantState qs = Bnb4bit.parseQuantState(st.bytes(name), st.path(), weight);
                nf4.put(weight, new Nf4Info(qs.shape(), qs.blocksize(), qs.dtype(), qs.doubleQuant()));
                for (String c : Bnb4bit.COMPANIONS) companionOf.put(weight + c, weight);
                anyNf4 = true;
                SafeTensors.Entry packed = st.entry(weight);
                long n = Tensor.numel(qs.shape());
                if (packed == null) notes.add(st.path().getFileName() + ": quant_state of '" + weight + "' but no packed weight");
                else if (packed.bytes() != (n + 1) / 2)
                    notes.add(weight + ": packed weight holds " + packed.bytes() + " bytes, shape " + Arrays.toString(qs.shape())
                            + " needs " + (n + 1) / 2);
                if (qs.blocksize() < Nf4.MIN_BLOCKSIZE) notes.add(weight + ": blocksize " + qs.blocksize() + " is below lora4j's minimum");
            }
            for (SafeTensors.Entry e : st.entries().values()) {
                Nf4Info q = nf4.get(e.name());
                String part = companionOf.get(e.name());
                tensors.add(new TensorInfo(e.name(), e.dtype().name(), e.shape(), e.bytes(), q, part));
                bytes += e.bytes();
                if (q != null) params += Tensor.numel(q.shape());
                else if (part == null) params += e.numel();
            }
        }
    }

    /** Compares names with digit runs as numbers ("layers.2" before "layers.10"). */
    static int naturalCompare(String a, String b) {
        int i = 0, j = 0;
        while (i < a.length() && j < b.length()) {
            char ca = a.charAt(i), cb = b.charAt(j);
            if (Character.isDigit(ca) && Character.isDigit(cb)) {
                int si = i, sj = j;
                while (i < a.length() && Character.isDigit(a.charAt(i))) i++;
                while (j < b.length() && Character.isDigit(b.charAt(j))) j++;
                String na = a.substring(si, i).replaceFirst("^0+(?=.)", ""), nb = b.substring(sj, j).replaceFirst("^0+(?=.)", "");
                if (na.length() != nb.length()) return Integer.compare(na.length(), nb.length());
                int c = na.compareTo(nb);
                if (c != 0) return c;
            } else {
                if (ca != cb) return Character.compare(ca, cb);
                i++;
                j++;
            }
        }
        return Integer.compare(a.length() - i, b.length() - j);
    }

    static JsonArray longs(long[] a) {
        JsonArray j = new JsonArray();
        for (long v : a) j.add(v);
        return j;
    }
}
