package io.lora4j.train;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.data.Batch;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.TestModels;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.MemoryTracker;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The vocabulary-chunked lm_head + cross-entropy against the token-chunked-only head. */
class VocabChunkedHeadTest {
    private static final Backend CPU = Backends.cpu();
    /** Wider than {@link LoraTrainingModel#CE_CHUNK_VOCAB}, not a multiple of any slice width used. */
    private static final int VOCAB = 40_000;
    /**
     * fp32 tolerances of chunked vs unchunked. The online log-sum-exp rescales partial sums
     * (a few extra roundings, ~1e-7 relative on lse ≈ 10.6, i.e. ~1e-6 absolute), which moves every
     * softmax term by that relative amount; dh then sums the slices' products in another order.
     * Loss: relative 1e-6 of the sum. Gradients: |Δ| <= GRAD_ATOL·max|g| + GRAD_RTOL·|g|.
     */
    private static final double LOSS_RTOL = 1e-6, GRAD_ATOL = 1e-5, GRAD_RTOL = 1e-4;

    /** hidden 32, MLP 48, 2 layers, 4 query heads of 8 over 2 KV heads, vocab 40000, untied. */
    private static LlamaConfig config() {
        return new LlamaConfig("llama", 32, 48, 2, 4, 2, 8, 1e-5, 10000.0, null, VOCAB, 64, false, 1, List.of(2), "float32");
    }

    private record Run(double loss, double evalLoss, float[] grads, long peakLogits) {}

    private static Run run(LoraTrainingModel m, Batch b, int vocabSlice) {
        m.ceChunkVocab = vocabSlice;
        m.zeroGradients();
        MemoryTracker.GLOBAL.resetPeaks();
        double loss = m.forwardBackward(b, (float) (1.0 / b.targetTokens()), 5);
        long peak = MemoryTracker.GLOBAL.peak(Device.CPU, MemoryCategory.LOGITS);
        return new Run(loss, m.lossSum(b), m.gradients().toFloats(), peak);
    }

    @Test
    void vocabChunkedHeadMatchesTheUnchunkedHead() {
        LoraConfig lc = TrainFixtures.lora(4, 8);
        try (LlamaWeights w = TestModels.random(config(), 31);
             LoraAdapter ad = TrainFixtures.randomAdapter(CPU, w.config(), lc, 9, 0.3);
             LoraTrainingModel m = new LoraTrainingModel(CPU, w, ad)) {
            // 30 rows of <= 14 tokens: T = 30·14 > CE_CHUNK_TOKENS, so two token chunks, with masked prompts
            Batch b = Batch.of(TrainFixtures.rows(30, VOCAB, 41), 0);
            assertTrue(b.rows() * b.seqLen() > LoraTrainingModel.CE_CHUNK_TOKENS);
            Run ref = run(m, b, Integer.MAX_VALUE);
            assertEquals((long) LoraTrainingModel.CE_CHUNK_TOKENS * VOCAB * 4, ref.peakLogits, "unchunked: one [CE_CHUNK_TOKENS, V] logits buffer");
            double gmax = 0;
            for (float g : ref.grads) gmax = Math.max(gmax, Math.abs(g));
            assertTrue(gmax > 1e-3, "gradients too small to compare: " + gmax);
            for (int slice : new int[] {LoraTrainingModel.CE_CHUNK_VOCAB, 6_000}) {
                Run r = run(m, b, slice);
                assertEquals((long) LoraTrainingModel.CE_CHUNK_TOKENS * slice * 4, r.peakLogits, "slice " + slice + ": logits buffer [CE_CHUNK_TOKENS, slice]");
                assertEquals(ref.loss, r.loss, LOSS_RTOL * ref.loss, "training loss, slice " + slice);
                assertEquals(ref.evalLoss, r.evalLoss, LOSS_RTOL * ref.evalLoss, "evaluation loss, slice " + slice);
                double worst = 0;
                for (int i = 0; i < ref.grads.length; i++) {
                    double tol = GRAD_ATOL * gmax + GRAD_RTOL * Math.abs(ref.grads[i]);
                    double err = Math.abs(r.grads[i] - ref.grads[i]);
                    worst = Math.max(worst, err / tol);
                    assertTrue(err <= tol, "slice " + slice + ", gradient " + i + ": " + r.grads[i] + " vs " + ref.grads[i]);
                }
                System.out.printf("vocab slice %d: loss %.9g vs %.9g, worst gradient error %.3f of the tolerance%n",
                        slice, r.loss, ref.loss, worst);
            }
        }
    }

    @Test
    void vocabChunkedHeadWithOffloadGivesTheNoneModeGradients() {
        LoraConfig lc = TrainFixtures.lora(4, 8);
        try (LlamaWeights w = TestModels.random(config(), 32);
             LoraAdapter ad = TrainFixtures.randomAdapter(CPU, w.config(), lc, 10, 0.3);
             LoraTrainingModel m = new LoraTrainingModel(CPU, w, ad)) {
            Batch b = Batch.of(TrainFixtures.rows(4, VOCAB, 42), 0);
            Run none = run(m, b, LoraTrainingModel.CE_CHUNK_VOCAB);
            m.setCheckpointing(CheckpointMode.UNSLOTH);
            Run unsloth = run(m, b, LoraTrainingModel.CE_CHUNK_VOCAB);
            assertEquals(none.loss, unsloth.loss, 0.0);
            assertArrayEquals(none.grads, unsloth.grads, "offloaded checkpoints changed the gradients");
        }
    }
}
