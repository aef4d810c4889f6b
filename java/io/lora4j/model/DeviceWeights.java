package io.lora4j.model;

import io.lora4j.ops.Backend;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * The frozen weights of a model as the kernels of one {@link Backend} read them, on the backend's
 * device: the embedding, lm_head and dense projections in the storage dtype ({@link
 * #defaultStorage}: BF16 on CUDA, F32 on the CPU unless {@code dtype: bfloat16} asks for BF16),
 * converted once here (round to nearest even) and used in place when they already are; norms,
 * biases and the RoPE inverse frequencies in F32 (a few KiB per layer: RMSNorm multiplies in fp32
 * anyway); NF4 projections as they are (they must already live on the backend). The kernels widen
 * a BF16 weight exactly to fp32 as they read it (native/include/lora4j/storage.h), so compute and
 * activations stay fp32. Closing frees only the copies made here; the {@link LlamaWeights} must
 * stay open while these are used.
 */
public final class DeviceWeights implements AutoCloseable {
    private final Backend backend;
    private final LlamaConfig config;
    private final Tensor embedding;      // [vocab, hidden]
    private final Tensor lmHead;         // [vocab, hidden], == embedding when tied
    private final Tensor norm;           // [hidden]
    private final DType storage;         // F32 or BF16: embedding, lm_head and dense projections
    private final List<Layer> layers;
    private final Tensor invFreq;        // [headDim/2]
    private final Tensor localInvFreq;   // [headDim/2] of the sliding layers (== invFreq without a local base)
    private final List<Tensor> owned = new ArrayList<>();

    /**
     * One decoder layer's weights on the backend.
     *
     * @param inputNorm RMSNorm weight before attention [hidden] (as the kernel multiplies: 1 + w for Gemma)
     * @param postNorm  RMSNorm weight before the MLP [hidden] (Gemma's pre_feedforward_layernorm)
     * @param proj      the seven projections [out, in], dense F32 or NF4
     * @param bias      the projections' biases [out] (Qwen2's q, k, v); absent ones are not in the map
     * @param qNorm     per-head RMSNorm weight of q [headDim] (Qwen3), or null
     * @param kNorm     per-head RMSNorm weight of k [headDim] (Qwen3), or null
     * @param attnOutNorm RMSNorm of the attention output [hidden] (Gemma's post_attention_layernorm), or null
     * @param mlpOutNorm  RMSNorm of the MLP output [hidden] (Gemma's post_feedforward_layernorm), or null
     */
    public record Layer(Tensor inputNorm, Tensor postNorm, Map<Projection, ProjectionWeight> proj, Map<Projection, Tensor> bias,
            Tensor qNorm, Tensor kNorm, Tensor attnOutNorm, Tensor mlpOutNorm) {
        public ProjectionWeight projection(Projection p) {
            return proj.get(p);
        }
    }

    /**
     * Prepares {@code w} for {@code backend}.
     *
     * @throws IllegalArgumentException when a dense tensor lives on another device, or an NF4
     *                                  projection does not live on the backend's
     */
    public DeviceWeights(Backend backend, LlamaWeights w) {
        this(backend, w, defaultStorage(backend.device()));
    }

    /**
     * The storage dtype of the embedding, lm_head and dense projections when nothing else is asked
     * for: BF16 on CUDA (2 B/param, as PEFT/Unsloth hold a bf16 base), F32 on the CPU.
     */
    public static DType defaultStorage(Device device) {
        return device == Device.CUDA ? DType.BF16 : DType.F32;
    }

    /**
     * The storage named as in transformers' {@code torch_dtype} / the run config's {@code dtype}:
     * {@code auto} (null: {@link #defaultStorage}), {@code bfloat16} (or {@code bf16}), {@code float32}
     * (or {@code fp32}, {@code f32}); {@code float16} is refused (lora4j stores F32 or BF16).
     *
     * @throws IllegalArgumentException naming the accepted values
     */
    public static DType parseStorage(String s) {
        switch (s.trim().toLowerCase(java.util.Locale.ROOT).replaceFirst("^torch\\.", "")) {
            case "auto": return null;
            case "bfloat16": case "bf16": return DType.BF16;
            case "float32": case "fp32": case "f32": case "float": return DType.F32;
            case "float16": case "fp16": case "f16": case "half":
                throw new IllegalArgumentException("dtype " + s + ": lora4j stores weights as bfloat16 or float32 (compute is fp32), not float16");
            default: throw new IllegalArgumentException("dtype must be auto, bfloat16 or float32, got '" + s + "'");
        }
    }

    /**
     * Prepares {@code w} for {@code backend}, holding the embedding, lm_head and dense projections
     * as {@code storage}.
     *
     * @param storage F32 or BF16
     * @throws IllegalArgumentException for another storage dtype, when a dense tensor lives on
     *                                  another device, or an NF4 projection does not live on the backend's
     */
    public DeviceWeights(Backend backend, LlamaWeights w, DType storage) {
        if (storage != DType.F32 && storage != DType.BF16)
            throw new IllegalArgumentException("weights are stored as F32 or BF16, not " + storage);
        this.backend = backend;
        this.config = w.config();
        this.storage = storage;
        config.architecture().requireSupported();
        try {
            this.embedding = stored(w.embedding());
            this.lmHead = w.tied() ? embedding : stored(w.lmHead());
            this.norm = norm(w.norm());
            List<Layer> ls = new ArrayList<>();
            for (LayerWeights lw : w.layers()) {
                Map<Projection, ProjectionWeight> m = new EnumMap<>(Projection.class);
                for (Map.Entry<Projection, ProjectionWeight> e : lw.projections().entrySet()) {
                    ProjectionWeight pw = e.getValue();
                    if (pw instanceof ProjectionWeight.Dense d) m.put(e.getKey(), new ProjectionWeight.Dense(stored(d.tensor())));
                    else {
                        Nf4Weight q = ((ProjectionWeight.Quantized) pw).weight();
                        if (q.packed().device() != backend.device())
                            throw new IllegalArgumentException("NF4 weight of " + e.getKey().moduleName + " lives on " + q.packed().device());
                        m.put(e.getKey(), pw);
                    }
                }
                Map<Projection, Tensor> bias = new EnumMap<>(Projection.class);
                for (Projection p : Projection.values()) {
                    Tensor b = lw.extra(Architecture.biasSuffix(p));
                    if (b != null) bias.put(p, f32(b));
                }
                Tensor qn = lw.extra(Architecture.Q_NORM), kn = lw.extra(Architecture.K_NORM);
                Tensor preFfn = lw.extra(Architecture.PRE_FFN_NORM), postFfn = lw.extra(Architecture.POST_FFN_NORM);
                // Gemma names the attention output's norm post_attention_layernorm; its MLP input norm is pre_feedforward
                boolean sandwich = config.architecture().sandwichNorms();
                ls.add(new Layer(norm(lw.inputLayernorm()), norm(sandwich ? preFfn : lw.postAttentionLayernorm()), Collections.unmodifiableMap(m),
                        Collections.unmodifiableMap(bias), norm(qn), norm(kn), sandwich ? norm(lw.postAttentionLayernorm()) : null,
                        sandwich ? norm(postFfn) : null));
            }
            this.layers = List.copyOf(ls);
            float[] inv = RopeFrequencies.invFreq(config);
            Tensor h = Tensor.ofFloats(inv, inv.length);
            Tensor d = backend.upload(h, MemoryCategory.WEIGHTS);
            if (d != h) h.close();
            this.invFreq = own(d);
            if (config.architecture().localRopeTheta() > 0) {
                float[] local = RopeFrequencies.localInvFreq(config);
                Tensor lh = Tensor.ofFloats(local, local.length);
                Tensor ld = backend.upload(lh, MemoryCategory.WEIGHTS);
                if (ld != lh) lh.close();
                this.localInvFreq = own(ld);
            } else {
                this.localInvFreq = invFreq;
            }
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    private Tensor own(Tensor t) {
        owned.add(t);
        return t;
    }

    /**
     * A norm weight as the kernel multiplies by it: {@link #f32}, or for (1 + w) families an owned
     * F32 copy of 1 + w (computed in fp32, as HF's {@code 1.0 + weight.float()}); null stays null.
     */
    private Tensor norm(Tensor t) {
        if (t == null) return null;
        if (!config.architecture().normOffset()) return f32(t);
        if (t.device() != Device.CPU) throw new IllegalArgumentException("norm weights must be on the host, got " + t);
        float[] v = t.toFloats();
        for (int i = 0; i < v.length; i++) v[i] = 1f + v[i];
        Tensor host = Tensor.allocate(DType.F32, MemoryCategory.WEIGHTS, t.shape());
        host.floatPointer().put(v);
        Tensor dev = backend.upload(host, MemoryCategory.WEIGHTS);
        if (dev != host) host.close();
        return own(dev);
    }

    private Tensor f32(Tensor t) {
        if (t.dtype() == DType.F32 && t.device() == backend.device()) return t;
        if (t.device() != Device.CPU)
            throw new IllegalArgumentException("weights must be F32 on " + backend.device() + " or on the host, got " + t);
        Tensor host = t.dtype() == DType.F32 ? t : Tensor.ofFloats(t.toFloats(), t.shape());
        Tensor dev = backend.upload(host, MemoryCategory.WEIGHTS);
        if (host != t && dev != host) host.close();
        return own(dev);
    }

    /** A frozen weight in the storage dtype: {@link #f32}, or BF16 (used in place when it already is, else converted on the host once). */
    private Tensor stored(Tensor t) {
        if (storage == DType.F32) return f32(t);
        if (t.dtype() == DType.BF16 && t.device() == backend.device()) return t;
        if (t.device() != Device.CPU) return f32(t); // a device-resident F32 weight (no device-side conversion): kept as it is
        Tensor host = t.dtype() == DType.BF16 ? t : bf16Copy(t);
        Tensor dev = backend.upload(host, MemoryCategory.WEIGHTS);
        if (host != t && dev != host) host.close();
        return own(dev);
    }

    /** A BF16 host copy of an F32 or F16 host tensor (round to nearest even), converted in chunks. */
    private static Tensor bf16Copy(Tensor t) {
        Tensor out = Tensor.allocate(DType.BF16, MemoryCategory.WEIGHTS, t.shape());
        int chunk = 1 << 20;
        float[] f = new float[chunk];
        short[] h = new short[chunk];
        org.bytedeco.javacpp.ShortPointer src16 = t.dtype() == DType.F32 ? null : t.shortPointer();
        org.bytedeco.javacpp.FloatPointer src32 = t.dtype() == DType.F32 ? t.floatPointer() : null;
        org.bytedeco.javacpp.ShortPointer dst = out.shortPointer();
        for (long i = 0; i < t.numel(); i += chunk) {
            int n = (int) Math.min(chunk, t.numel() - i);
            if (src32 != null) src32.position(i).get(f, 0, n);
            else {
                src16.position(i).get(h, 0, n);
                for (int j = 0; j < n; j++) f[j] = io.lora4j.tensor.Halfs.toFloat(h[j]);
            }
            for (int j = 0; j < n; j++) h[j] = io.lora4j.tensor.Halfs.floatToBf16(f[j]);
            dst.position(i).put(h, 0, n);
        }
        return out;
    }

    /** An I32 [n] tensor of {@code v} on {@code backend} (category WORKSPACE); caller closes it. */
    public static Tensor ints(Backend backend, int[] v) {
        Tensor h = Tensor.allocate(DType.I32, MemoryCategory.WORKSPACE, v.length);
        h.buffer().asIntBuffer().put(v);
        Tensor d = backend.upload(h, MemoryCategory.WORKSPACE);
        if (d != h) h.close();
        return d;
    }

    public Backend backend() { return backend; }
    public LlamaConfig config() { return config; }
    /** The dtype of the embedding, lm_head and dense projections: F32 or BF16. */
    public DType storage() { return storage; }
    /** [vocab, hidden] in {@link #storage()} */
    public Tensor embedding() { return embedding; }
    /** [vocab, hidden] in {@link #storage()}; the embedding itself when tied. */
    public Tensor lmHead() { return lmHead; }
    /** Final RMSNorm weight [hidden]. */
    public Tensor norm() { return norm; }
    /** RoPE inverse frequencies [headDim/2] ({@link RopeFrequencies}). */
    public Tensor invFreq() { return invFreq; }
    /** RoPE inverse frequencies of layer {@code layer}: the local ones on sliding layers with a local base. */
    public Tensor invFreq(int layer) { return config.architecture().sliding(layer) ? localInvFreq : invFreq; }
    public List<Layer> layers() { return layers; }
    public Layer layer(int i) { return layers.get(i); }

    @Override
    public void close() {
        for (Tensor t : owned) t.close();
        owned.clear();
    }
}
