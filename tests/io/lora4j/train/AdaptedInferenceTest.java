package io.lora4j.train;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.lora.AdaptedModel;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaModel;
import io.lora4j.model.LlamaWeights;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.Tensor;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The training forward and the inference forward of the merged adapter agree (dense and NF4 bases). */
class AdaptedInferenceTest {
    private static final Backend CPU = Backends.cpu();
    /** Merging changes the summation order (x(W + sBA)ᵀ vs xWᵀ + s(xAᵀ)Bᵀ): fp32 rounding only. */
    private static final double RTOL = 1e-5;

    private static double inferenceLoss(LlamaWeights w, int[] ids, int[] labels) {
        try (LlamaModel m = LlamaModel.create(CPU, w); Tensor lg = m.forward(new int[][] {ids})) {
            float[] l = lg.toFloats();
            int v = w.config().vocabSize();
            double sum = 0;
            for (int t = 0; t + 1 < ids.length; t++) {
                if (labels[t + 1] == Example.IGNORE_INDEX) continue;
                double max = Double.NEGATIVE_INFINITY, z = 0;
                for (int j = 0; j < v; j++) max = Math.max(max, l[t * v + j]);
                for (int j = 0; j < v; j++) z += Math.exp(l[t * v + j] - max);
                sum += Math.log(z) + max - l[t * v + labels[t + 1]];
            }
            return sum;
        }
    }

    @Test
    void mergedAdapterReproducesTheTrainingForward() {
        LoraConfig lc = TrainFixtures.lora(4, 8);
        try (LlamaWeights dense = TrainFixtures.tinyModel(51)) {
            LlamaWeights q = TrainFixtures.quantized(CPU, dense);
            try {
                for (LlamaWeights base : List.of(dense, q)) {
                    try (LoraAdapter a = TrainFixtures.randomAdapter(CPU, base.config(), lc, 52, 0.3);
                         LoraTrainingModel tm = new LoraTrainingModel(CPU, base, a);
                         AdaptedModel am = AdaptedModel.merge(CPU, base, a, 1.0)) {
                        Example e = TrainFixtures.rows(1, 40, 53).get(0);
                        double train = tm.lossSum(Batch.of(List.of(e), 0));
                        double infer = inferenceLoss(am.weights(), e.inputIds(), e.labels());
                        assertEquals(train, infer, RTOL * Math.abs(train), base.quantized() ? "NF4 base" : "dense base");
                        double unmerged = inferenceLoss(base, e.inputIds(), e.labels());
                        assertNotEquals(unmerged, infer, "the adapter must matter");
                    }
                }
            } finally {
                for (var l : q.layers()) for (var p : l.projections().values()) p.close();
            }
        }
    }
}
