package io.lora4j.model;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import io.lora4j.io.FormatException;
import io.lora4j.io.SafeTensors;
import io.lora4j.io.SafeTensorsDir;
import io.lora4j.io.TextFiles;
import io.lora4j.io.TorchDtypes;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * Loads a Llama model from a llama2.c v0 {@code .bin}, an HF directory (config.json +
 * model.safetensors or a sharded index), or a bnb-4bit HF directory, into {@link LlamaWeights} in
 * HF layout. Dense tensors of the files stay views of the file mapping (no copy) on the CPU;
 * llama2.c q and k rows are permuted into HF's RoPE order (copies). Every problem with the files
 * is a {@link FormatException} naming the file (and the tensor).
 */
public final class ModelLoader {
    private ModelLoader() {}

    /**
     * How to load.
     *
     * @param loadIn4bit  quantize the seven projections of every layer to NF4 on load
     * @param blocksize   NF4 blocksize for {@code loadIn4bit}
     * @param doubleQuant double-quantize the absmax for {@code loadIn4bit}
     * @param backend     where the NF4 projections go (and are quantized); null: the CPU. Dense tensors
     *                    stay in host memory: {@link DeviceWeights} uploads them in the storage dtype
     */
    public record Options(boolean loadIn4bit, int blocksize, boolean doubleQuant, Backend backend, DType computeDtype) {
        public Options {
            Nf4.checkBlocksize(blocksize);
            if (computeDtype != null && computeDtype != DType.F32 && computeDtype != DType.BF16)
                throw new IllegalArgumentException("bnb_4bit_compute_dtype must be float32 or bfloat16, got " + computeDtype);
        }

        /** The compute dtype from the checkpoint's quantization_config, else float32. */
        public Options(boolean loadIn4bit, int blocksize, boolean doubleQuant, Backend backend) {
            this(loadIn4bit, blocksize, doubleQuant, backend, null);
        }

        /** Dense, on the CPU. */
        public static Options defaults() {
            return new Options(false, Nf4.DEFAULT_BLOCKSIZE, true, null);
        }

        /** NF4 projections (blocksize 64, double quant), on the CPU. */
        public static Options in4bit() {
            return new Options(true, Nf4.DEFAULT_BLOCKSIZE, true, null);
        }

        public Options withBackend(Backend b) {
            return new Options(loadIn4bit, blocksize, doubleQuant, b, computeDtype);
        }

        /**
         * bnb_4bit_compute_dtype of the NF4 projections' forward product (F32 or BF16; null: the
         * checkpoint's quantization_config, else F32).
         */
        public Options withComputeDtype(DType d) {
            return new Options(loadIn4bit, blocksize, doubleQuant, backend, d);
        }
    }

    /** What a path holds, judged from its layout (without validating the contents). */
    public static ModelFormat detect(Path path) throws IOException {
        if (Files.isDirectory(path)) {
            if (!Files.isRegularFile(path.resolve(LlamaConfig.FILE)))
                throw new FormatException(path, "a directory without config.json is not an HF model");
            if (!SafeTensorsDir.present(path)) {
                SafeTensorsDir.open(path); // throws naming what is missing, or finds a single *.safetensors
            }
            return isBnb4bit(path) ? ModelFormat.HF_BNB4 : ModelFormat.HF;
        }
        if (!Files.exists(path)) throw new FormatException(path, "no such file or directory");
        if (path.getFileName().toString().endsWith(".safetensors"))
            throw new FormatException(path, "a lone safetensors file is not a model: pass the directory with config.json");
        return ModelFormat.LLAMA2C;
    }

    private static boolean isBnb4bit(Path dir) throws IOException {
        JsonObject cfg = readJson(dir.resolve(LlamaConfig.FILE));
        JsonElement q = cfg.get("quantization_config");
        if (q != null && q.isJsonObject()) {
            JsonElement m = q.getAsJsonObject().get("quant_method");
            if (m != null && m.isJsonPrimitive() && m.getAsString().equals("bitsandbytes")) return true;
        }
        SafeTensorsDir st = SafeTensorsDir.open(dir);
        for (String n : st.names()) if (n.endsWith(Bnb4bit.QUANT_STATE_SUFFIX)) return true;
        return false;
    }

    /** Loads {@code path} with {@code options}. */
    public static LlamaWeights load(Path path, Options options) throws IOException {
        ModelFormat f = detect(path);
        LlamaWeights w = f == ModelFormat.LLAMA2C ? loadLlama2c(path, options) : loadHf(path, options);
        if (options.loadIn4bit()) w = quantizeProjections(w, options);
        DType compute = options.computeDtype() != null ? options.computeDtype()
                : f == ModelFormat.LLAMA2C ? DType.F32 : Bnb4bit.computeDtype(readJson(path.resolve(LlamaConfig.FILE)), path.resolve(LlamaConfig.FILE));
        return compute == DType.F32 ? w : withComputeDtype(w, compute);
    }

    /** {@code w} with every NF4 projection's forward product in {@code compute} (the tensors move over). */
    public static LlamaWeights withComputeDtype(LlamaWeights w, DType compute) {
        List<LayerWeights> layers = new ArrayList<>();
        for (LayerWeights l : w.layers()) {
            Map<Projection, ProjectionWeight> proj = new EnumMap<>(Projection.class);
            for (Projection p : Projection.values()) {
                ProjectionWeight pw = l.projection(p);
                if (pw instanceof ProjectionWeight.Quantized q) pw = new ProjectionWeight.Quantized(q.weight().withComputeDtype(compute));
                if (pw != null) proj.put(p, pw);
            }
            layers.add(l.withProjections(proj));
        }
        return new LlamaWeights(w.config(), w.embedding(), layers, w.norm(), w.tied() ? null : w.lmHead(), w.format(),
                w.source(), w.configJson());
    }

    /** Loads {@code path} densely on the CPU. */
    public static LlamaWeights load(Path path) throws IOException {
        return load(path, Options.defaults());
    }

    // ---- llama2.c -----------------------------------------------------------------------------

    private static LlamaWeights loadLlama2c(Path file, Options o) throws IOException {
        Llama2c.Header h = Llama2c.readHeader(file);
        LlamaConfig cfg = h.config();
        Mapping map = new Mapping(file);
        Tensor embedding = null;
        Tensor finalNorm = null;
        Tensor wcls = null;
        Tensor[] rmsAtt = new Tensor[h.layers()], rmsFfn = new Tensor[h.layers()];
        List<Map<Projection, ProjectionWeight>> proj = new ArrayList<>();
        for (int l = 0; l < h.layers(); l++) proj.add(new EnumMap<>(Projection.class));
        for (Llama2c.Array a : h.arrays()) {
            switch (a.name()) {
                case "token_embedding_table": embedding = map.view(a); break;
                case "rms_att_weight": rmsAtt[a.layer()] = map.view(a); break;
                case "rms_ffn_weight": rmsFfn[a.layer()] = map.view(a); break;
                case "wq": proj.get(a.layer()).put(Projection.Q, dense(o, permuteRope(map.region(a), h.heads(), h.headSize(), h.dim()))); break;
                case "wk": proj.get(a.layer()).put(Projection.K, dense(o, permuteRope(map.region(a), h.kvHeads(), h.headSize(), h.dim()))); break;
                case "wv": proj.get(a.layer()).put(Projection.V, new ProjectionWeight.Dense(map.view(a))); break;
                case "wo": proj.get(a.layer()).put(Projection.O, new ProjectionWeight.Dense(map.view(a))); break;
                case "w1": proj.get(a.layer()).put(Projection.GATE, new ProjectionWeight.Dense(map.view(a))); break;
                case "w2": proj.get(a.layer()).put(Projection.DOWN, new ProjectionWeight.Dense(map.view(a))); break;
                case "w3": proj.get(a.layer()).put(Projection.UP, new ProjectionWeight.Dense(map.view(a))); break;
                case "rms_final_weight": finalNorm = map.view(a); break;
                case "wcls": wcls = map.view(a); break;
                default: break; // freq_cis_real/imag: RoPE is computed, not read
            }
        }
        List<LayerWeights> layers = new ArrayList<>();
        for (int l = 0; l < h.layers(); l++) layers.add(new LayerWeights(rmsAtt[l], proj.get(l), rmsFfn[l]));
        return new LlamaWeights(cfg, embedding, layers, finalNorm, wcls, ModelFormat.LLAMA2C, file, null);
    }

    private static ProjectionWeight dense(Options o, Tensor owned) {
        return new ProjectionWeight.Dense(owned);
    }

    /**
     * Meta's interleaved RoPE rows to HF's rotate_half order, per head: HF row r (r &lt; hs/2) =
     * Meta row 2r, HF row hs/2 + r = Meta row 2r + 1.
     *
     * @param meta [heads*hs, dim] fp32 little-endian, position 0
     * @return a new F32 host tensor [heads*hs, dim] (WEIGHTS)
     */
    static Tensor permuteRope(ByteBuffer meta, int heads, int hs, int dim) {
        Tensor out = Tensor.allocate(DType.F32, MemoryCategory.WEIGHTS, (long) heads * hs, dim);
        ByteBuffer dst = out.buffer();
        int rowBytes = dim * 4;
        for (int head = 0; head < heads; head++) {
            int base = head * hs;
            for (int r = 0; r < hs / 2; r++) {
                dst.put((base + r) * rowBytes, meta, (base + 2 * r) * rowBytes, rowBytes);
                dst.put((base + hs / 2 + r) * rowBytes, meta, (base + 2 * r + 1) * rowBytes, rowBytes);
            }
        }
        return out;
    }

    /** The file mapped once (up to 2 GiB) or per array. */
    private static final class Mapping {
        private final Path file;
        private ByteBuffer whole;

        Mapping(Path file) throws IOException {
            this.file = file;
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
                if (ch.size() <= Integer.MAX_VALUE) whole = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size());
            }
        }

        ByteBuffer region(Llama2c.Array a) throws IOException {
            if (whole != null)
                return whole.duplicate().position((int) a.offset()).limit((int) (a.offset() + a.bytes())).slice().order(ByteOrder.LITTLE_ENDIAN);
            if (a.bytes() > Integer.MAX_VALUE)
                throw new FormatException(file, "array " + a.name() + " holds " + a.bytes() + " bytes; arrays over 2 GiB are not supported");
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
                return ch.map(FileChannel.MapMode.READ_ONLY, a.offset(), a.bytes()).order(ByteOrder.LITTLE_ENDIAN);
            }
        }

        Tensor view(Llama2c.Array a) throws IOException {
            return Tensor.view(region(a), DType.F32, a.shape());
        }
    }

    // ---- HF directories -----------------------------------------------------------------------

    private static LlamaWeights loadHf(Path dir, Options o) throws IOException {
        Path cfgFile = dir.resolve(LlamaConfig.FILE);
        JsonObject json = readJson(cfgFile);
        LlamaConfig cfg = LlamaConfig.fromJson(json, cfgFile);
        try {
            cfg.architecture().requireSupported();
        } catch (IllegalArgumentException e) {
            throw new FormatException(cfgFile, e.getMessage());
        }
        JsonElement q = json.get("quantization_config");
        if (q != null && q.isJsonObject()) {
            JsonObject qc = q.getAsJsonObject();
            if (qc.has("load_in_8bit") && qc.get("load_in_8bit").isJsonPrimitive() && qc.get("load_in_8bit").getAsBoolean())
                throw new FormatException(cfgFile, "8-bit bitsandbytes checkpoints (load_in_8bit) are not supported; lora4j reads 4-bit NF4");
            JsonElement m = qc.get("quant_method");
            if (m != null && m.isJsonPrimitive() && !m.getAsString().equals("bitsandbytes"))
                throw new FormatException(cfgFile, "quant_method '" + m.getAsString() + "' is not supported (bitsandbytes NF4 only)");
        }
        SafeTensorsDir st = SafeTensorsDir.open(dir);
        for (String n : st.names())
            if (n.endsWith(Bnb4bit.FP4_STATE_SUFFIX))
                throw new FormatException(st.fileOf(n).path(), "tensor '" + n + "': FP4 quantization is not supported (NF4 only)");
        HfReader r = new HfReader(st, cfg, o, dir);
        long d = cfg.hiddenSize(), v = cfg.vocabSize();
        Tensor embedding = r.dense(LlamaWeights.EMBED, v, d);
        List<LayerWeights> layers = new ArrayList<>();
        boolean anyNf4 = false;
        for (int l = 0; l < cfg.numHiddenLayers(); l++) {
            Map<Projection, ProjectionWeight> proj = new EnumMap<>(Projection.class);
            for (Projection p : Projection.values()) {
                if (cfg.architecture().fusedProjections() && p.fusedGroup().length > 1) {
                    if (p == p.fusedLeader()) r.fused(p, l, proj);
                    continue;
                }
                proj.put(p, r.projection(p.weightName(l), p.shape(cfg)));
            }
            for (ProjectionWeight w : proj.values()) anyNf4 |= w instanceof ProjectionWeight.Quantized;
            Map<String, Tensor> extras = new LinkedHashMap<>();
            for (Architecture.LayerTensor t : cfg.architecture().layerTensors(cfg)) extras.put(t.suffix(), r.dense(t.name(l), t.shape()));
            layers.add(new LayerWeights(r.dense(LlamaWeights.inputNormName(l), d), proj, r.dense(LlamaWeights.postNormName(l), d), extras));
        }
        Tensor norm = r.dense(LlamaWeights.NORM, d);
        Tensor lmHead = null;
        if (!cfg.tieWordEmbeddings()) lmHead = r.dense(LlamaWeights.LM_HEAD, v, d);
        return new LlamaWeights(cfg, embedding, layers, norm, lmHead, anyNf4 ? ModelFormat.HF_BNB4 : ModelFormat.HF, dir, json);
    }

    static JsonObject readJson(Path file) throws IOException {
        if (!Files.isRegularFile(file)) throw new FormatException(file, "no such file");
        try {
            JsonElement e = JsonParser.parseString(TextFiles.readUtf8(file));
            if (!e.isJsonObject()) throw new FormatException(file, "not a JSON object");
            return e.getAsJsonObject();
        } catch (JsonParseException e) {
            throw new FormatException(file, "not valid JSON: " + e.getMessage());
        }
    }

    /** Reads tensors of an HF directory, checking them against the config. */
    private static final class HfReader {
        private final SafeTensorsDir st;
        private final LlamaConfig cfg;
        private final Options o;
        private final Path dir;
        private final Map<String, float[]> tables = new HashMap<>();

        HfReader(SafeTensorsDir st, LlamaConfig cfg, Options o, Path dir) {
            this.st = st;
            this.cfg = cfg;
            this.o = o;
            this.dir = dir;
        }

        /** The file to blame for a missing tensor. */
        private Path missingFile() {
            if (st.indexFile() != null) return st.indexFile();
            return st.files().isEmpty() ? dir : st.files().get(0).path();
        }

        private SafeTensors.Entry require(String name) throws FormatException {
            SafeTensors.Entry e = st.entry(name);
            if (e == null) throw new FormatException(missingFile(), "missing tensor '" + name + "' (config.json: " + cfg.numHiddenLayers()
                    + " layers, " + (cfg.tieWordEmbeddings() ? "tied" : "untied") + " embeddings)");
            return e;
        }

        private Path fileOf(String name) {
            return st.fileOf(name).path();
        }

        Tensor dense(String name, long... shape) throws IOException {
            if (st.contains(name + Bnb4bit.QUANT_STATE_SUFFIX))
                throw new FormatException(fileOf(name), "tensor '" + name + "' is 4-bit quantized; lora4j quantizes only the seven projections");
            SafeTensors.Entry e = require(name);
            DType dt = e.dtype().dtype;
            if (dt != DType.F32 && dt != DType.BF16 && dt != DType.F16)
                throw new FormatException(fileOf(name), "tensor '" + name + "' has dtype " + e.dtype() + "; weights must be F32, BF16 or F16");
            if (!Arrays.equals(e.shape(), shape))
                throw new FormatException(fileOf(name), "tensor '" + name + "' has shape " + Arrays.toString(e.shape())
                        + ", config.json implies " + Arrays.toString(shape));
            return st.tensor(name);
        }

        /**
         * The projections of {@code leader}'s fused module in layer {@code layer} (Phi-3's
         * qkv_proj, gate_up_proj) as row views of its one weight, into {@code out}.
         */
        void fused(Projection leader, int layer, Map<Projection, ProjectionWeight> out) throws IOException {
            String name = cfg.architecture().weightName(leader, layer);
            long in = leader.inFeatures(cfg);
            if (st.contains(name + Bnb4bit.QUANT_STATE_SUFFIX)) {
                fusedNf4(leader, name, in, out);
                return;
            }
            Tensor whole = dense(name, leader.fusedOutFeatures(cfg), in);
            long row = 0;
            for (Projection p : leader.fusedGroup()) {
                long rows = p.outFeatures(cfg);
                Tensor part = whole.slice(row * in, rows, in);
                out.put(p, new ProjectionWeight.Dense(whole.device() == Device.CPU ? part : copyRows(part)));
                row += rows;
            }
            if (whole.device() != Device.CPU) whole.close(); // its rows were copied
        }

        /**
         * A bnb-4bit fused module: bitsandbytes quantized the flattened [out, in] weight in blocks,
         * so a projection whose rows start on a block boundary is a contiguous run of the packed
         * codes and of the absmax. A double-quantized absmax is sliced too when every projection
         * starts on a boundary of {@link Nf4Weight#NESTED_BLOCKSIZE} blocks (the nested scales and
         * the one offset then serve the slice unchanged); otherwise it is dequantized once and
         * each projection gets its fp32 run.
         */
        private void fusedNf4(Projection leader, String name, long in, Map<Projection, ProjectionWeight> out) throws IOException {
            Nf4Weight whole = nf4(name, new long[] {leader.fusedOutFeatures(cfg), in}, true);
            int bs = whole.blocksize();
            boolean nestedAligned = whole.doubleQuant() != null;
            long row = 0;
            for (Projection p : leader.fusedGroup()) {
                long start = row * in;
                if (start % bs != 0)
                    throw new FormatException(fileOf(name), "tensor '" + name + "': " + p.moduleName + "'s rows start at element " + start
                            + ", not on a boundary of blocksize " + bs + ", so its 4-bit blocks mix projections");
                nestedAligned &= (start / bs) % Nf4Weight.NESTED_BLOCKSIZE == 0;
                row += p.outFeatures(cfg);
            }
            float[] absmax = nestedAligned || whole.doubleQuant() == null ? null : whole.absmax().toFloats();
            Backend b = backend(o);
            row = 0;
            try {
                for (Projection p : leader.fusedGroup()) {
                    long[] shape = p.shape(cfg);
                    long start = row * in, n = Tensor.numel(shape), block = start / bs, nblocks = Nf4.blocks(n, bs);
                    Tensor packed = place(o, whole.packed().slice(start / 2, (n + 1) / 2), false);
                    Nf4Weight w;
                    if (nestedAligned) {
                        Nf4Weight.DoubleQuant dq = whole.doubleQuant();
                        long nested = block / Nf4Weight.NESTED_BLOCKSIZE;
                        w = Nf4.fromParts(b, shape, bs, whole.sourceDtype(), packed, null,
                                place(o, dq.qabsmax().slice(block, nblocks), false),
                                place(o, dq.nestedAbsmax().slice(nested, Nf4.blocks(nblocks, Nf4Weight.NESTED_BLOCKSIZE)), false), dq.offset());
                    } else {
                        Tensor scales = absmax == null ? place(o, whole.absmax().slice(block, nblocks), false)
                                : place(o, Tensor.ofFloats(Arrays.copyOfRange(absmax, (int) block, (int) (block + nblocks)), nblocks), true);
                        w = Nf4.fromParts(b, shape, bs, whole.sourceDtype(), packed, scales, null, null, 0f);
                    }
                    out.put(p, new ProjectionWeight.Quantized(w));
                    row += p.outFeatures(cfg);
                }
            } catch (IllegalArgumentException e) {
                throw new FormatException(fileOf(name), "tensor '" + name + "': " + e.getMessage());
            } finally {
                if (whole.doubleQuant() != null) whole.absmax().close(); // the one tensor the host read allocated
            }
        }

        /** A device copy of a slice of an uploaded fused weight (the views of an upload could not be freed alone). */
        private Tensor copyRows(Tensor part) {
            Tensor host = o.backend().download(part);
            try {
                return o.backend().upload(host, MemoryCategory.WEIGHTS);
            } finally {
                if (host != part) host.close();
            }
        }

        ProjectionWeight projection(String name, long[] shape) throws IOException {
            if (!st.contains(name + Bnb4bit.QUANT_STATE_SUFFIX)) return new ProjectionWeight.Dense(dense(name, shape));
            return new ProjectionWeight.Quantized(nf4(name, shape, false));
        }

        /** The NF4 weight {@code name}, on the host (views of the files) or placed on the options' device. */
        private Nf4Weight nf4(String name, long[] shape, boolean host) throws IOException {
            Path file = fileOf(name + Bnb4bit.QUANT_STATE_SUFFIX);
            Bnb4bit.QuantState qs = Bnb4bit.parseQuantState(st.bytes(name + Bnb4bit.QUANT_STATE_SUFFIX), file, name);
            String where = "tensor '" + name + "': ";
            if (!"nf4".equals(qs.quantType())) throw new FormatException(file, where + "quant_type '" + qs.quantType() + "' is not nf4");
            try {
                Nf4.checkBlocksize(qs.blocksize());
            } catch (IllegalArgumentException e) {
                throw new FormatException(file, where + e.getMessage());
            }
            if (!Arrays.equals(qs.shape(), shape))
                throw new FormatException(file, where + "quant_state shape " + Arrays.toString(qs.shape()) + ", config.json implies " + Arrays.toString(shape));
            DType src = TorchDtypes.of(qs.dtype());
            if (src == null) throw new FormatException(file, where + "quant_state dtype '" + qs.dtype() + "' is not float32, bfloat16 or float16");
            long n = Tensor.numel(shape);
            long nblocks = Nf4.blocks(n, qs.blocksize());
            Tensor packed = part(name, SafeTensors.StDType.U8, (n + 1) / 2);
            float[] code = table(name + Bnb4bit.QUANT_MAP, 16);
            if (!Bnb4bit.sameFloats(code, Bnb4bit.nf4Code()))
                throw new FormatException(fileOf(name + Bnb4bit.QUANT_MAP), where + "quant_map is not the NF4 table: " + Bnb4bit.describe(code));
            Backend b = host ? Backends.cpu() : backend(o);
            UnaryOperator<Tensor> at = host ? t -> t : t -> device(o, t);
            try {
                if (!qs.doubleQuant()) {
                    Tensor absmax = part(name + Bnb4bit.ABSMAX, SafeTensors.StDType.F32, nblocks);
                    return Nf4.fromParts(b, shape, qs.blocksize(), src, at.apply(packed), at.apply(absmax), null, null, 0f);
                }
                if (qs.nestedBlocksize() != Nf4Weight.NESTED_BLOCKSIZE || !"float32".equals(qs.nestedDtype()))
                    throw new FormatException(file, where + "nested_blocksize " + qs.nestedBlocksize() + " / nested_dtype " + qs.nestedDtype()
                            + " (bitsandbytes writes 256 / float32)");
                float[] map = table(name + Bnb4bit.NESTED_QUANT_MAP, 256);
                if (!Bnb4bit.sameFloats(map, Bnb4bit.dynamicMap()))
                    throw new FormatException(fileOf(name + Bnb4bit.NESTED_QUANT_MAP), where + "nested_quant_map is not bitsandbytes' dynamic map: " + Bnb4bit.describe(map));
                Tensor qabsmax = part(name + Bnb4bit.ABSMAX, SafeTensors.StDType.U8, nblocks);
                Tensor nested = part(name + Bnb4bit.NESTED_ABSMAX, SafeTensors.StDType.F32, Nf4.blocks(nblocks, Nf4Weight.NESTED_BLOCKSIZE));
                float offset = (float) (double) qs.nestedOffset();
                return Nf4.fromParts(b, shape, qs.blocksize(), src, at.apply(packed), null, at.apply(qabsmax),
                        at.apply(nested), offset);
            } catch (IllegalArgumentException e) {
                throw new FormatException(file, where + e.getMessage());
            }
        }

        /** A stored part of an NF4 weight: dtype and element count checked, any shape. */
        private Tensor part(String name, SafeTensors.StDType dtype, long numel) throws IOException {
            SafeTensors.Entry e = require(name);
            if (e.dtype() != dtype || e.numel() != numel)
                throw new FormatException(fileOf(name), "tensor '" + name + "' is " + e.dtype() + Arrays.toString(e.shape())
                        + ", expected " + dtype + " with " + numel + " elements");
            return st.tensor(name);
        }

        private float[] table(String name, int n) throws IOException {
            float[] t = tables.get(name);
            if (t == null) {
                try (Tensor view = part(name, SafeTensors.StDType.F32, n)) {
                    t = view.toFloats();
                }
                tables.put(name, t);
            }
            return t;
        }
    }

    // ---- placement and quantization -----------------------------------------------------------

    private static Backend backend(Options o) {
        return o.backend() != null ? o.backend() : Backends.cpu();
    }

    /**
     * A stored NF4 part on the options' device. Dense tensors (embedding, norms, dense projections)
     * stay on the host as loaded (memory-mapped where the file allows): {@link DeviceWeights} puts
     * them on the training device once, in the storage dtype (bf16 on CUDA), so the device never
     * holds an fp32 copy of the base next to the one the kernels read.
     */
    private static Tensor device(Options o, Tensor host) {
        return place(o, host, false);
    }

    /** host on the CPU, else an upload of it; an owned host tensor is closed once uploaded. */
    private static Tensor place(Options o, Tensor host, boolean owned) {
        if (o.backend() == null || o.backend().device() == Device.CPU) return host;
        Tensor t = o.backend().upload(host, MemoryCategory.WEIGHTS);
        if (owned && t != host) host.close();
        return t;
    }

    /** Replaces every dense projection by its NF4 quantization (the dense tensor is closed). */
    static LlamaWeights quantizeProjections(LlamaWeights w, Options o) {
        Backend b = backend(o);
        List<LayerWeights> layers = new ArrayList<>();
        for (LayerWeights l : w.layers()) {
            Map<Projection, ProjectionWeight> proj = new EnumMap<>(Projection.class);
            for (Projection p : Projection.values()) {
                ProjectionWeight pw = l.projection(p);
                if (pw instanceof ProjectionWeight.Dense dense) {
                    // a host projection is quantized on the device one at a time, through a transient copy
                    Tensor src = dense.tensor().device() == b.device() ? dense.tensor() : b.upload(dense.tensor(), MemoryCategory.WORKSPACE);
                    Nf4Weight q;
                    try {
                        q = Nf4.quantize(b, src, o.blocksize(), o.doubleQuant());
                    } finally {
                        if (src != dense.tensor()) src.close();
                    }
                    dense.close();
                    pw = new ProjectionWeight.Quantized(q);
                }
                proj.put(p, pw);
            }
            layers.add(l.withProjections(proj));
        }
        return new LlamaWeights(w.config(), w.embedding(), layers, w.norm(), w.tied() ? null : w.lmHead(), w.format(),
                w.source(), w.configJson());
    }
}
