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
 * The frozen weights of a model as the kernels of one {@link Backend} read them: every dense
 * tensor F32 on the backend's device (used in place when it already is, else widened from
 * BF16/F16 and uploaded once), NF4 projections as they are (they must already live on the
 * backend), and the RoPE inverse frequencies. Closing frees only the copies made here; the
 * {@link LlamaWeights} must stay open while these are used.
 */
public final class DeviceWeights implements AutoCloseable {
    private final Backend backend;
    private final LlamaConfig config;
    private final Tensor embedding;      // [vocab, hidden]
    private final Tensor lmHead;         // [vocab, hidden], == embedding when tied
    private final Tensor norm;           // [hidden]
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
        this.backend = backend;
        this.config = w.config();
        config.architecture().requireSupported();
        try {
            this.embedding = f32(w.embedding());
            this.lmHead = w.tied() ? embedding : f32(w.lmHead());
            this.norm = norm(w.norm());
            List<Layer> ls = new ArrayList<>();
            for (LayerWeights lw : w.layers()) {
                Map<Projection, ProjectionWeight> m = new EnumMap<>(Projection.class);
                for (Map.Entry<Projection, ProjectionWeight> e : lw.projections().entrySet()) {
                    ProjectionWeight pw = e.getValue();
                    if (pw instanceof ProjectionWeight.Dense d) m.put(e.getKey(), new ProjectionWeight.Dense(f32(d.tensor())));
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
    /** [vocab, hidden] F32 */
    public Tensor embedding() { return embedding; }
    /** [vocab, hidden] F32; the embedding itself when tied. */
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
