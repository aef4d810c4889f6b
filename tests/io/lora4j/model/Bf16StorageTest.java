package io.lora4j.model;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Halfs;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * {@code dtype: bfloat16} on the CPU ({@link DeviceWeights} storage BF16): the weights are the
 * round-to-nearest-even bf16 of the checkpoint, and a model holding them computes exactly what the
 * fp32 model computes on a checkpoint already rounded to bf16 (the kernels widen bf16 exactly; only
 * summation order may differ), through the batched forward and the single-token decode kernels.
 */
class Bf16StorageTest {
    private static final Backend CPU = Backends.cpu();
    /** fp32 GEMMs on the same values in other blockings, through 2 layers and the head. */
    private static final double SAME_WEIGHTS_ATOL = 2e-5;

    private static LlamaConfig config() {
        return new LlamaConfig("llama", 64, 160, 2, 4, 2, 16, 1e-5, 10000.0, null, 300, 128, false, 1, List.of(2), "float32");
    }

    /** A BF16 host copy of an F32 host tensor (round to nearest even). */
    private static Tensor bf16(Tensor t) {
        float[] v = t.toFloats();
        short[] h = new short[v.length];
        for (int i = 0; i < v.length; i++) h[i] = Halfs.floatToBf16(v[i]);
        Tensor out = Tensor.allocate(DType.BF16, MemoryCategory.WEIGHTS, t.shape());
        out.shortPointer().put(h);
        return out;
    }

    @Test
    void bf16StorageComputesWithTheRoundedCheckpoint() {
        try (LlamaWeights w = TestModels.random(config(), 4)) {
            List<Tensor> made = new ArrayList<>();
            List<LayerWeights> layers = new ArrayList<>();
            for (LayerWeights l : w.layers()) {
                Map<Projection, ProjectionWeight> m = new EnumMap<>(Projection.class);
                for (Projection p : Projection.values()) {
                    Tensor b = bf16(((ProjectionWeight.Dense) l.projection(p)).tensor());
                    made.add(b);
                    m.put(p, new ProjectionWeight.Dense(b));
                }
                layers.add(new LayerWeights(l.inputLayernorm(), m, l.postAttentionLayernorm()));
            }
            Tensor emb = bf16(w.embedding()), head = bf16(w.lmHead());
            made.add(emb);
            made.add(head);
            LlamaWeights rounded = new LlamaWeights(w.config(), emb, layers, w.norm(), head, w.format(), null, null);
            int[] ids = {1, 17, 250, 3, 99, 42, 7, 128};
            try (LlamaModel f32 = LlamaModel.create(CPU, w, DType.F32); LlamaModel b16 = LlamaModel.create(CPU, w, DType.BF16);
                 LlamaModel ref = LlamaModel.create(CPU, rounded, DType.F32);
                 Tensor lf = f32.forward(new int[][] {ids}); Tensor lb = b16.forward(new int[][] {ids});
                 Tensor lr = ref.forward(new int[][] {ids})) {
                float[] a = lb.toFloats(), r = lr.toFloats(), f = lf.toFloats();
                double maxSame = 0, maxF32 = 0;
                for (int i = 0; i < a.length; i++) {
                    maxSame = Math.max(maxSame, Math.abs(a[i] - r[i]));
                    maxF32 = Math.max(maxF32, Math.abs(a[i] - f[i]));
                }
                assertTrue(maxSame <= SAME_WEIGHTS_ATOL, "bf16 storage vs fp32 on the rounded checkpoint: " + maxSame);
                assertTrue(maxF32 > 10 * maxSame, "storage really is bf16: it differs from fp32 by " + maxF32 + " vs " + maxSame);
                // the decode kernels read the bf16 weights directly: same logits as the batched forward
                try (LlamaModel.KvCache cache = b16.newCache(ids.length)) {
                    for (int p = 0; p < ids.length; p++) {
                        float[] step = b16.decode(cache, ids[p]);
                        for (int v = 0; v < step.length; v++)
                            assertEquals(a[p * step.length + v], step[v], SAME_WEIGHTS_ATOL, "decode logit " + v + " at position " + p);
                    }
                }
            } finally {
                for (Tensor t : made) t.close();
            }
        }
    }

    @Test
    void storageIsNamedAsTransformersNamesIt() {
        assertNull(DeviceWeights.parseStorage("auto"));
        assertEquals(DType.BF16, DeviceWeights.parseStorage("bfloat16"));
        assertEquals(DType.BF16, DeviceWeights.parseStorage("torch.bfloat16"));
        assertEquals(DType.F32, DeviceWeights.parseStorage("float32"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> DeviceWeights.parseStorage("float16"));
        assertTrue(e.getMessage().contains("float16"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> DeviceWeights.parseStorage("int8"));
        assertEquals(DType.BF16, DeviceWeights.defaultStorage(io.lora4j.tensor.Device.CUDA));
        assertEquals(DType.F32, DeviceWeights.defaultStorage(io.lora4j.tensor.Device.CPU));
    }
}
