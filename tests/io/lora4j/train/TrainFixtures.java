package io.lora4j.train;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LayerWeights;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelFormat;
import io.lora4j.model.Projection;
import io.lora4j.model.ProjectionWeight;
import io.lora4j.model.TestModels;
import io.lora4j.ops.Backend;
import io.lora4j.quant.Nf4;
import io.lora4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/** Tiny synthetic models, adapters and data for the training tests. */
final class TrainFixtures {
    private TrainFixtures() {}

    /** hidden 32, MLP 48, 2 layers, 4 query heads of 8 over 2 KV heads (GQA), vocab 40, untied. */
    static LlamaConfig tinyConfig() {
        return new LlamaConfig("llama", 32, 48, 2, 4, 2, 8, 1e-5, 10000.0, null, 40, 64, false, 1, List.of(2), "float32");
    }

    /** Seeded weights: the helper's std 0.05 makes near-uniform logits, so the projections are scaled up to give real gradients. */
    static LlamaWeights tinyModel(long seed) {
        return TestModels.random(tinyConfig(), seed);
    }

    /** The same model with every projection NF4-quantized (blocksize 64, double quant). */
    static LlamaWeights quantized(Backend backend, LlamaWeights w) {
        List<LayerWeights> layers = new ArrayList<>();
        for (LayerWeights l : w.layers()) {
            Map<Projection, ProjectionWeight> m = new EnumMap<>(Projection.class);
            for (Projection p : Projection.values())
                m.put(p, new ProjectionWeight.Quantized(Nf4.quantize(backend, ((ProjectionWeight.Dense) l.projection(p)).tensor(), 64, true)));
            layers.add(new LayerWeights(l.inputLayernorm(), m, l.postAttentionLayernorm()));
        }
        return new LlamaWeights(w.config(), w.embedding(), layers, w.norm(), w.tied() ? null : w.lmHead(), ModelFormat.HF, null, null);
    }

    /** The NF4 model's projections dequantized into dense F32 tensors. */
    static LlamaWeights dequantized(Backend backend, LlamaWeights q) {
        List<LayerWeights> layers = new ArrayList<>();
        for (LayerWeights l : q.layers()) {
            Map<Projection, ProjectionWeight> m = new EnumMap<>(Projection.class);
            for (Projection p : Projection.values())
                m.put(p, new ProjectionWeight.Dense(Nf4.dequantize(backend, ((ProjectionWeight.Quantized) l.projection(p)).weight())));
            layers.add(new LayerWeights(l.inputLayernorm(), m, l.postAttentionLayernorm()));
        }
        return new LlamaWeights(q.config(), q.embedding(), layers, q.norm(), q.tied() ? null : q.lmHead(), ModelFormat.HF, null, null);
    }

    /** An adapter with seeded random A and B (B nonzero, so that dA is too). */
    static LoraAdapter randomAdapter(Backend backend, LlamaConfig c, LoraConfig lc, long seed, double std) {
        long n = 0;
        for (LoraAdapter.Slot s : LoraAdapter.layout(c, lc)) n = s.offsetB() + s.out() * lc.r();
        float[] v = new float[(int) n];
        Random r = new Random(seed);
        for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextGaussian() * std);
        return LoraAdapter.of(backend, c, lc, v);
    }

    static LoraConfig lora(int r, double alpha) {
        return LoraConfig.defaults().withRank(r).withAlpha(alpha);
    }

    /**
     * {@code n} rows of lengths 3..14 with random ids; about a third of each row's leading
     * tokens are masked (a "prompt") so that target counts differ from lengths.
     */
    static List<Example> rows(int n, int vocab, long seed) {
        Random r = new Random(seed);
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int len = 3 + r.nextInt(12);
            int[] ids = new int[len], lab = new int[len];
            for (int j = 0; j < len; j++) ids[j] = 3 + r.nextInt(vocab - 3);
            ids[0] = 1;
            int prompt = r.nextInt(len / 3 + 1);
            for (int j = 0; j < len; j++) lab[j] = j < prompt ? Example.IGNORE_INDEX : ids[j];
            out.add(new Example(ids, lab));
        }
        return out;
    }

    /** Consecutive micro-batches of {@code batch} rows, {@code ga} per window. */
    static List<List<Batch>> windows(List<Example> rows, int batch, int ga) {
        List<List<Batch>> out = new ArrayList<>();
        List<Batch> cur = new ArrayList<>();
        for (int i = 0; i < rows.size(); i += batch) {
            cur.add(Batch.of(rows.subList(i, Math.min(rows.size(), i + batch)), 0));
            if (cur.size() == ga) {
                out.add(cur);
                cur = new ArrayList<>();
            }
        }
        if (!cur.isEmpty()) out.add(cur);
        return out;
    }

    static float[] floats(Tensor t) {
        return t.toFloats();
    }
}
