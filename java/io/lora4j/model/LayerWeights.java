package io.lora4j.model;

import io.lora4j.tensor.Tensor;
import java.util.Collections;
import java.util.EnumMap;
import java.util.Map;

/**
 * The weights of one decoder layer.
 *
 * @param inputLayernorm         RMSNorm weight before attention, [hidden]
 * @param projections            all seven projections, [out, in] each
 * @param postAttentionLayernorm RMSNorm weight before the MLP, [hidden]
 */
public record LayerWeights(Tensor inputLayernorm, Map<Projection, ProjectionWeight> projections,
        Tensor postAttentionLayernorm) implements AutoCloseable {

    public LayerWeights {
        EnumMap<Projection, ProjectionWeight> m = new EnumMap<>(Projection.class);
        m.putAll(projections);
        for (Projection p : Projection.values())
            if (m.get(p) == null) throw new IllegalArgumentException("layer lacks its " + p.moduleName + " weight");
        projections = Collections.unmodifiableMap(m);
    }

    public ProjectionWeight projection(Projection p) {
        return projections.get(p);
    }

    @Override
    public void close() {
        inputLayernorm.close();
        postAttentionLayernorm.close();
        for (ProjectionWeight w : projections.values()) w.close();
    }
}
