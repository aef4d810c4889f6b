package io.lora4j.lora;

import io.lora4j.model.LayerWeights;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.Projection;
import io.lora4j.model.ProjectionWeight;
import io.lora4j.ops.Backend;
import io.lora4j.quant.Nf4;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * A base model with an adapter applied, for inference ({@code eval}, {@code generate}): every
 * targeted projection becomes a dense fp32 copy {@code W' = W + m·s·B·A} (NF4 bases are
 * dequantized first), the other tensors are the base's own. Feed {@link #weights()} to
 * {@link io.lora4j.model.LlamaModel#create}. Closing frees only the merged copies.
 *
 * <p>m is the post-training scale multiplier ({@code --scale}, 1 = as trained): PEFT's
 * "alpha scaling" after training multiplies s.
 */
public final class AdaptedModel implements AutoCloseable {
    private final LlamaWeights weights;
    private final List<ProjectionWeight> owned;

    private AdaptedModel(LlamaWeights weights, List<ProjectionWeight> owned) {
        this.weights = weights;
        this.owned = owned;
    }

    /**
     * Merges {@code adapter} (on {@code backend}) into {@code base}.
     *
     * @param scaleMultiplier multiplies the adapter's scale s (1 = as trained)
     * @throws IllegalArgumentException when the adapter was made for another model shape
     */
    public static AdaptedModel merge(Backend backend, LlamaWeights base, LoraAdapter adapter, double scaleMultiplier) {
        var c = base.config();
        if (adapter.modelConfig().numHiddenLayers() != c.numHiddenLayers() || adapter.modelConfig().hiddenSize() != c.hiddenSize()
                || adapter.modelConfig().intermediateSize() != c.intermediateSize())
            throw new IllegalArgumentException("the adapter was made for another model shape");
        float s = (float) (adapter.config().scaling() * scaleMultiplier);
        int r = adapter.config().r();
        List<ProjectionWeight> owned = new ArrayList<>();
        List<LayerWeights> layers = new ArrayList<>();
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            LayerWeights lw = base.layer(l);
            Map<Projection, ProjectionWeight> m = new EnumMap<>(Projection.class);
            for (Projection p : Projection.values()) {
                ProjectionWeight pw = lw.projection(p);
                if (adapter.slot(l, p) == null) {
                    m.put(p, pw);
                    continue;
                }
                long out = p.outFeatures(c), in = p.inFeatures(c);
                Tensor w;
                if (pw instanceof ProjectionWeight.Quantized q) w = Nf4.dequantize(backend, q.weight());
                else {
                    Tensor src = ((ProjectionWeight.Dense) pw).tensor();
                    Tensor host = src.dtype() == DType.F32 ? src : Tensor.ofFloats(src.toFloats(), src.shape());
                    Tensor dev = backend.upload(host, MemoryCategory.WEIGHTS);
                    w = backend.allocate(DType.F32, MemoryCategory.WEIGHTS, out, in);
                    backend.axpy(1f, dev, w); // an owned copy: the base stays untouched
                    if (dev != host) dev.close();
                    if (host != src) host.close();
                }
                try (Tensor a = adapter.a(l, p); Tensor b = adapter.b(l, p)) {
                    backend.sgemm(false, false, out, in, r, s, b, r, a, in, 1f, w, in);
                }
                ProjectionWeight.Dense d = new ProjectionWeight.Dense(w);
                owned.add(d);
                m.put(p, d);
            }
            layers.add(lw.withProjections(m));
        }
        LlamaWeights merged = new LlamaWeights(c, base.embedding(), layers, base.norm(), base.tied() ? null : base.lmHead(), base.format(),
                base.source(), base.configJson());
        return new AdaptedModel(merged, owned);
    }

    /** The merged weights (valid while this object and the base are open). */
    public LlamaWeights weights() {
        return weights;
    }

    @Override
    public void close() {
        for (ProjectionWeight w : owned) w.close();
        owned.clear();
    }
}
