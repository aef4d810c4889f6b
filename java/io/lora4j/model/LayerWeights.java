package io.lora4j.model;

import io.lora4j.tensor.Tensor;
import java.util.Collections;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The weights of one decoder layer.
 *
 * @param inputLayernorm         RMSNorm weight before attention, [hidden]
 * @param projections            all seven projections, [out, in] each
 * @param postAttentionLayernorm RMSNorm weight before the MLP, [hidden]
 * @param extras                 the family's further tensors by HF suffix
 *                               ({@link Architecture#layerTensors}: biases, q/k norms); dense
 */
public record LayerWeights(Tensor inputLayernorm, Map<Projection, ProjectionWeight> projections,
        Tensor postAttentionLayernorm, Map<String, Tensor> extras) implements AutoCloseable {

    public LayerWeights {
        EnumMap<Projection, ProjectionWeight> m = new EnumMap<>(Projection.class);
        m.putAll(projections);
        for (Projection p : Projection.values())
            if (m.get(p) == null) throw new IllegalArgumentException("layer lacks its " + p.moduleName + " weight");
        projections = Collections.unmodifiableMap(m);
        extras = Collections.unmodifiableMap(new LinkedHashMap<>(extras == null ? Map.of() : extras));
    }

    /** A Llama layer: no extra tensors. */
    public LayerWeights(Tensor inputLayernorm, Map<Projection, ProjectionWeight> projections, Tensor postAttentionLayernorm) {
        this(inputLayernorm, projections, postAttentionLayernorm, Map.of());
    }

    public ProjectionWeight projection(Projection p) {
        return projections.get(p);
    }

    /** The extra tensor with HF suffix {@code suffix}, or null. */
    public Tensor extra(String suffix) {
        return extras.get(suffix);
    }

    /** The same layer with other projections (norms and extras shared, not copied). */
    public LayerWeights withProjections(Map<Projection, ProjectionWeight> replaced) {
        return new LayerWeights(inputLayernorm, replaced, postAttentionLayernorm, extras);
    }

    @Override
    public void close() {
        inputLayernorm.close();
        postAttentionLayernorm.close();
        for (ProjectionWeight w : projections.values()) w.close();
        for (Tensor t : extras.values()) t.close();
    }
}
