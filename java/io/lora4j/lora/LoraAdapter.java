package io.lora4j.lora;

import io.lora4j.io.TextFiles;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.FormatException;
import io.lora4j.io.SafeTensors;
import io.lora4j.io.SafeTensorsWriter;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.Projection;
import io.lora4j.ops.Backend;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * The trainable LoRA matrices of a model: for every layer and every targeted projection, A [r, in]
 * and B [out, r] in fp32 on a {@link Backend}. All of them live in one flat parameter tensor
 * (category {@link MemoryCategory#LORA}) so that the optimizer, gradient norm and zeroing work on
 * one vector; {@link #a}/{@link #b} are views into it. The order is layer-major, projections in
 * {@link Projection} order, A before B.
 *
 * <p>On disk it is a PEFT adapter directory: {@value #CONFIG_FILE} and {@value #WEIGHTS_FILE} with
 * keys {@code base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight} (F32), which
 * {@code PeftModel.from_pretrained} loads as it is.
 *
 * <p>On a model with fused projections (Phi-3) PEFT adapts {@code qkv_proj} and
 * {@code gate_up_proj} with one A [r, in] and one B [rows of the fused module, r] each. Here the
 * projections of such a module share one A (their slots have the same {@code offsetA}, so the
 * backward's += sums their gradients into it), and their Bs follow each other in row order, which
 * is the fused B itself; the file holds that one A/B pair under the fused module's name.
 */
public final class LoraAdapter implements AutoCloseable {
    public static final String CONFIG_FILE = "adapter_config.json";
    public static final String WEIGHTS_FILE = "adapter_model.safetensors";
    /** PEFT's prefix of a LoRA state-dict key for a causal LM. */
    public static final String KEY_PREFIX = "base_model.model.";

    /** Where one (layer, projection) pair's matrices sit in the flat parameter vector. */
    public record Slot(int layer, Projection projection, long in, long out, long offsetA, long offsetB) {
        /** The PEFT key of lora_A or lora_B. */
        public String key(boolean isA) {
            return KEY_PREFIX + projection.modulePath(layer) + (isA ? ".lora_A.weight" : ".lora_B.weight");
        }
    }

    private final Backend backend;
    private final LlamaConfig model;
    private final LoraConfig config;
    private final List<Slot> slots;
    private final Map<Long, Slot> byKey = new LinkedHashMap<>();
    private final Tensor params; // [P] F32, LORA
    private final long count;

    private LoraAdapter(Backend backend, LlamaConfig model, LoraConfig config, float[] hostValues) {
        this.backend = backend;
        this.model = model;
        this.config = config;
        this.slots = layout(model, config);
        long n = 0;
        for (Slot s : slots) {
            byKey.put(key(s.layer, s.projection), s);
            n = s.offsetB + s.out * config.r();
        }
        this.count = n;
        if (hostValues.length != n) throw new IllegalArgumentException(hostValues.length + " values for " + n + " LoRA parameters");
        Tensor host = Tensor.allocate(DType.F32, MemoryCategory.LORA, n);
        host.floatPointer().put(hostValues);
        Tensor dev = backend.upload(host, MemoryCategory.LORA);
        if (dev != host) host.close();
        this.params = dev;
    }

    private static long key(int layer, Projection p) {
        return (long) layer * 16 + p.ordinal();
    }

    /**
     * The slots of {@code config} on a model of shape {@code model}, in flat order (a fused
     * module's projections: one A, then their Bs in row order).
     *
     * @throws IllegalArgumentException when a fused module (Phi-3) is only partly targeted
     */
    public static List<Slot> layout(LlamaConfig model, LoraConfig config) {
        boolean fused = model.architecture().fusedProjections();
        if (fused) config.targetModuleNames(true); // refuses a partly targeted fused module
        List<Slot> out = new ArrayList<>();
        long off = 0;
        int r = config.r();
        for (int l = 0; l < model.numHiddenLayers(); l++)
            for (Projection p : Projection.values()) {
                if (!config.targets(p) || (fused && p != p.fusedLeader())) continue;
                long in = p.inFeatures(model), offsetA = off;
                off += r * in;
                for (Projection q : fused ? p.fusedGroup() : new Projection[] {p}) {
                    long o = q.outFeatures(model);
                    out.add(new Slot(l, q, in, o, offsetA, off));
                    off += o * r;
                }
            }
        return Collections.unmodifiableList(out);
    }

    /**
     * One PEFT module's A/B pair in the flat vector: a slot, or a fused module's shared A and
     * its Bs together.
     *
     * @param path the module path, e.g. {@code model.layers.0.self_attn.qkv_proj}
     */
    record Module(String path, long in, long out, long offsetA, long offsetB) {
        String key(boolean isA) {
            return KEY_PREFIX + path + (isA ? ".lora_A.weight" : ".lora_B.weight");
        }
    }

    /** The PEFT modules of {@code slots} in flat order. */
    private static List<Module> modules(LlamaConfig model, List<Slot> slots) {
        boolean fused = model.architecture().fusedProjections();
        List<Module> out = new ArrayList<>();
        for (Slot s : slots) {
            if (!fused) {
                out.add(new Module(s.projection.modulePath(s.layer), s.in, s.out, s.offsetA, s.offsetB));
            } else if (s.projection == s.projection.fusedLeader()) {
                out.add(new Module(s.projection.fusedModulePath(s.layer), s.in, s.projection.fusedOutFeatures(model), s.offsetA,
                        s.offsetB));
            }
        }
        return out;
    }

    /**
     * A freshly initialised adapter: B = 0 and A by {@link LoraConfig#init()} (kaiming or gaussian),
     * drawn from a {@link SplittableRandom} seeded with {@link LoraConfig#randomState()} in flat
     * order, so the same config gives the same bytes. LoftQ adapters come from {@link LoftQ}.
     *
     * @throws IllegalArgumentException for {@link LoraConfig.Init#LOFTQ} (needs the base weights)
     */
    public static LoraAdapter create(Backend backend, LlamaConfig model, LoraConfig config) {
        if (config.init() == LoraConfig.Init.LOFTQ)
            throw new IllegalArgumentException("LoftQ initialisation needs the base weights: use LoftQ.initialize");
        List<Slot> slots = layout(model, config);
        Slot last = slots.get(slots.size() - 1);
        float[] v = new float[Math.toIntExact(last.offsetB + last.out * config.r())];
        SplittableRandom rnd = new SplittableRandom(config.randomState());
        for (Module s : modules(model, slots)) { // a fused module's shared A once
            int na = Math.toIntExact(config.r() * s.in);
            if (config.init() == LoraConfig.Init.KAIMING) {
                // nn.init.kaiming_uniform_(a=√5) on [r, in]: gain √(2/(1+5)), bound gain·√(3/in) = 1/√in
                double bound = 1.0 / Math.sqrt(s.in);
                for (int i = 0; i < na; i++) v[(int) s.offsetA + i] = (float) ((rnd.nextDouble() * 2 - 1) * bound);
            } else {
                // PEFT's "gaussian": nn.init.normal_(lora_A, std=1/r), i.e. standard deviation 1/r
                double std = 1.0 / config.r();
                for (int i = 0; i < na; i++) v[(int) s.offsetA + i] = (float) (gaussian(rnd) * std);
            }
        }
        return new LoraAdapter(backend, model, config, v);
    }

    private static double gaussian(SplittableRandom r) {
        // Box-Muller: SplittableRandom has no nextGaussian on Java 17
        double u1 = 1.0 - r.nextDouble(), u2 = r.nextDouble();
        return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    }

    /** An adapter holding {@code values} in flat order (see {@link #layout}). */
    public static LoraAdapter of(Backend backend, LlamaConfig model, LoraConfig config, float[] values) {
        return new LoraAdapter(backend, model, config, values);
    }

    public Backend backend() { return backend; }
    public LlamaConfig modelConfig() { return model; }
    public LoraConfig config() { return config; }
    public List<Slot> slots() { return slots; }

    /** The flat parameter vector [P] (A and B of every slot). */
    public Tensor parameters() { return params; }

    /** Number of trainable parameters P. */
    public long parameterCount() { return count; }

    /** The slot of (layer, p), or null when p is not targeted. */
    public Slot slot(int layer, Projection p) {
        return byKey.get(key(layer, p));
    }

    /** lora_A [r, in] of (layer, p): a view into {@link #parameters()}. */
    public Tensor a(int layer, Projection p) {
        Slot s = require(layer, p);
        return params.slice(s.offsetA, config.r(), s.in);
    }

    /** lora_B [out, r] of (layer, p): a view into {@link #parameters()}. */
    public Tensor b(int layer, Projection p) {
        Slot s = require(layer, p);
        return params.slice(s.offsetB, s.out, config.r());
    }

    private Slot require(int layer, Projection p) {
        Slot s = slot(layer, p);
        if (s == null) throw new IllegalArgumentException(p.moduleName + " of layer " + layer + " has no adapter");
        return s;
    }

    /** A host copy of every parameter in flat order. */
    public float[] toFloats() {
        Tensor h = backend.download(params);
        try {
            return h.toFloats();
        } finally {
            if (h != params) h.close();
        }
    }

    /**
     * Writes the PEFT adapter into directory {@code out} atomically (temp directory + rename).
     *
     * @param baseModel base_model_name_or_path to record (the model path or name)
     * @throws FormatException when {@code out} exists and is non-empty without {@code overwrite}
     */
    public void save(Path out, String baseModel, boolean overwrite) throws IOException {
        AtomicFiles.writeDirectory(out, overwrite, dir -> writeInto(dir, baseModel));
    }

    /** Writes {@value #CONFIG_FILE} and {@value #WEIGHTS_FILE} into an existing directory. */
    public void writeInto(Path dir, String baseModel) throws IOException {
        float[] v = toFloats();
        SafeTensorsWriter w = new SafeTensorsWriter().metadata("format", "pt");
        for (Module s : modules(model, slots)) {
            w.addFloats(s.key(true), new long[] {config.r(), s.in}, Arrays.copyOfRange(v, (int) s.offsetA, (int) (s.offsetA + config.r() * s.in)));
            w.addFloats(s.key(false), new long[] {s.out, config.r()}, Arrays.copyOfRange(v, (int) s.offsetB, (int) (s.offsetB + s.out * config.r())));
        }
        w.write(dir.resolve(WEIGHTS_FILE));
        AtomicFiles.writeBytes(dir.resolve(CONFIG_FILE), configJson(config, baseModel, model.architecture().fusedProjections())
                .getBytes(StandardCharsets.UTF_8));
    }

    /** PEFT's adapter_config.json for {@code c}. */
    public static String configJson(LoraConfig c, String baseModel) {
        return configJson(c, baseModel, false);
    }

    /** PEFT's adapter_config.json for {@code c}, with fused module names (Phi-3) when {@code fused}. */
    public static String configJson(LoraConfig c, String baseModel, boolean fused) {
        JsonObject o = new JsonObject();
        o.add("alpha_pattern", new JsonObject());
        o.add("auto_mapping", JsonNull.INSTANCE);
        o.addProperty("base_model_name_or_path", baseModel);
        o.addProperty("bias", c.bias().peftName);
        o.addProperty("fan_in_fan_out", false);
        o.addProperty("inference_mode", true);
        switch (c.init()) {
            case KAIMING: o.addProperty("init_lora_weights", true); break;
            case GAUSSIAN: o.addProperty("init_lora_weights", "gaussian"); break;
            default: o.addProperty("init_lora_weights", "loftq");
        }
        o.add("layer_replication", JsonNull.INSTANCE);
        o.add("layers_pattern", JsonNull.INSTANCE);
        o.add("layers_to_transform", JsonNull.INSTANCE);
        JsonObject loftq = new JsonObject();
        if (c.init() == LoraConfig.Init.LOFTQ) {
            loftq.addProperty("loftq_bits", 4);
            loftq.addProperty("loftq_iter", c.loftqIter());
        }
        o.add("loftq_config", loftq);
        o.addProperty("lora_alpha", num(c.loraAlpha()));
        o.addProperty("lora_dropout", c.loraDropout());
        o.add("modules_to_save", JsonNull.INSTANCE);
        o.addProperty("peft_type", "LORA");
        o.addProperty("r", c.r());
        o.add("rank_pattern", new JsonObject());
        o.add("revision", JsonNull.INSTANCE);
        JsonArray t = new JsonArray();
        for (String n : c.targetModuleNames(fused)) t.add(n);
        o.add("target_modules", t);
        o.addProperty("task_type", "CAUSAL_LM");
        o.addProperty("use_dora", false);
        o.addProperty("use_rslora", c.useRslora());
        return new GsonBuilder().setPrettyPrinting().serializeNulls().create().toJson(o) + "\n";
    }

    private static Number num(double d) {
        return d == Math.rint(d) && Math.abs(d) < 1e15 ? (Number) (long) d : (Number) d;
    }

    /**
     * Reads adapter_config.json of a PEFT LoRA adapter (ours or PEFT's; unknown keys ignored).
     *
     * @throws FormatException naming the file and the first bad field
     */
    public static LoraConfig readConfig(Path dir) throws IOException {
        Path f = dir.resolve(CONFIG_FILE);
        if (!Files.isRegularFile(f)) throw new FormatException(f, "no such file (not a PEFT adapter directory)");
        JsonObject o;
        try {
            JsonElement e = JsonParser.parseString(TextFiles.readUtf8(f));
            if (!e.isJsonObject()) throw new FormatException(f, "expected a JSON object");
            o = e.getAsJsonObject();
        } catch (JsonParseException e) {
            throw new FormatException(f, "not valid JSON: " + e.getMessage());
        }
        try {
            String type = str(o, "peft_type", "LORA");
            if (!type.equals("LORA")) throw new IllegalArgumentException("peft_type is " + type + ", only LORA adapters are supported");
            for (String k : new String[] {"rank_pattern", "alpha_pattern"})
                if (o.has(k) && o.get(k).isJsonObject() && o.getAsJsonObject(k).size() > 0)
                    throw new IllegalArgumentException(k + " (per-module ranks) is not supported");
            if (o.has("use_dora") && o.get("use_dora").isJsonPrimitive() && o.get("use_dora").getAsBoolean())
                throw new IllegalArgumentException("DoRA adapters (use_dora true) are not supported");
            if (o.has("fan_in_fan_out") && o.get("fan_in_fan_out").isJsonPrimitive() && o.get("fan_in_fan_out").getAsBoolean())
                throw new IllegalArgumentException("fan_in_fan_out true is not supported for Llama");
            int r = o.has("r") ? o.get("r").getAsInt() : 8;
            double alpha = o.has("lora_alpha") ? o.get("lora_alpha").getAsDouble() : 8;
            double dropout = o.has("lora_dropout") && !o.get("lora_dropout").isJsonNull() ? o.get("lora_dropout").getAsDouble() : 0;
            LoraConfig.Bias bias = LoraConfig.Bias.parse(str(o, "bias", "none"));
            List<String> targets = new ArrayList<>();
            JsonElement t = o.get("target_modules");
            if (t == null || t.isJsonNull()) throw new IllegalArgumentException("target_modules is missing");
            if (t.isJsonArray()) for (JsonElement x : t.getAsJsonArray()) targets.add(x.getAsString());
            else targets.add(t.getAsString());
            boolean rs = o.has("use_rslora") && o.get("use_rslora").getAsBoolean();
            JsonElement init = o.get("init_lora_weights");
            LoraConfig.Init in = LoraConfig.Init.KAIMING;
            if (init != null && init.isJsonPrimitive()) {
                // a trained adapter's init mode does not change how it is applied; false (random B) loads as kaiming
                in = init.getAsJsonPrimitive().isBoolean() ? LoraConfig.Init.KAIMING : LoraConfig.Init.parse(init.getAsString());
            }
            int iter = 1;
            if (o.has("loftq_config") && o.get("loftq_config").isJsonObject() && o.getAsJsonObject("loftq_config").has("loftq_iter"))
                iter = o.getAsJsonObject("loftq_config").get("loftq_iter").getAsInt();
            return new LoraConfig(r, alpha, dropout, bias, LoraConfig.parseTargets(targets), rs, in, iter, LoraConfig.DEFAULT_SEED);
        } catch (IllegalArgumentException | IllegalStateException | UnsupportedOperationException e) {
            throw new FormatException(f, e.getMessage());
        }
    }

    private static String str(JsonObject o, String k, String dflt) {
        JsonElement e = o.get(k);
        return e == null || e.isJsonNull() ? dflt : e.getAsString();
    }

    /**
     * Loads a PEFT adapter directory for a model of shape {@code model}: the config, then every
     * lora_A/lora_B tensor (F32, F16 or BF16; keys with or without PEFT's ".default" adapter name),
     * checked against the config's rank and the model's projection shapes.
     *
     * @throws FormatException naming the file and the offending tensor or field
     */
    public static LoraAdapter load(Path dir, Backend backend, LlamaConfig model) throws IOException {
        LoraConfig c = readConfig(dir);
        Path f = dir.resolve(WEIGHTS_FILE);
        SafeTensors st = SafeTensors.open(f);
        Map<String, String> names = new LinkedHashMap<>();
        for (String n : st.entries().keySet()) names.put(normalizeKey(n), n);
        List<Slot> slots;
        try {
            slots = layout(model, c);
        } catch (IllegalArgumentException e) {
            throw new FormatException(dir.resolve(CONFIG_FILE), e.getMessage());
        }
        if (slots.isEmpty()) throw new FormatException(dir.resolve(CONFIG_FILE), "target_modules select no projection of the model");
        Slot last = slots.get(slots.size() - 1);
        // r comes from the file: check the parameter count it implies against the weights file
        // (>= 2 bytes per parameter) before allocating anything
        long params;
        try {
            params = Math.addExact(last.offsetB, Math.multiplyExact(last.out, (long) c.r()));
        } catch (ArithmeticException e) {
            params = Long.MAX_VALUE;
        }
        if (params > Integer.MAX_VALUE - 8 || params > st.fileSize() / 2)
            throw new FormatException(f, "r=" + c.r() + " on this model needs " + params + " parameters, more than this "
                    + st.fileSize() + "-byte file can hold");
        float[] v = new float[(int) params];
        Set<String> used = new HashSet<>();
        for (Module s : modules(model, slots)) {
            for (boolean isA : new boolean[] {true, false}) {
                String k = s.key(isA);
                String real = names.get(k);
                if (real == null)
                    throw new FormatException(f, "missing tensor " + k + " (target_modules lists " + s.path.substring(s.path.lastIndexOf('.') + 1) + ")");
                used.add(real);
                SafeTensors.Entry e = st.entry(real);
                long[] want = isA ? new long[] {c.r(), s.in} : new long[] {s.out, c.r()};
                if (!Arrays.equals(e.shape(), want))
                    throw new FormatException(f, real + " has shape " + Arrays.toString(e.shape()) + ", r=" + c.r() + " and the model need "
                            + Arrays.toString(want));
                if (e.dtype() != SafeTensors.StDType.F32 && e.dtype() != SafeTensors.StDType.F16 && e.dtype() != SafeTensors.StDType.BF16)
                    throw new FormatException(f, real + " has dtype " + e.dtype() + ", expected F32, F16 or BF16");
                float[] x = st.tensor(real).toFloats();
                System.arraycopy(x, 0, v, (int) (isA ? s.offsetA : s.offsetB), x.length);
            }
        }
        for (String n : st.entries().keySet())
            if (!used.contains(n) && (n.contains("lora_A") || n.contains("lora_B")))
                throw new FormatException(f, "tensor " + n + " does not belong to the model (" + model.numHiddenLayers() + " layers, targets "
                        + c.targetModuleNames(model.architecture().fusedProjections()) + ")");
        return new LoraAdapter(backend, model, c, v);
    }

    /** Strips PEFT's adapter name (".default") and adds the causal-LM prefix when absent. */
    static String normalizeKey(String k) {
        String s = k.replace(".lora_A.default.weight", ".lora_A.weight").replace(".lora_B.default.weight", ".lora_B.weight");
        if (s.startsWith("model.layers.")) s = KEY_PREFIX + s;
        return s;
    }

    @Override
    public void close() {
        params.close();
    }
}
