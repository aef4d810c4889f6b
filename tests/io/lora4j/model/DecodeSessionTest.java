package io.lora4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.ops.Backends;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.MemoryTracker;
import java.nio.FloatBuffer;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link DecodeSession}: the fused single-token step against {@link DecoderBlock}'s own layer with
 * the KV-cache strategy (the one decoder, {@code fused} false), the batched prefill against
 * token-by-token steps, the cache growing by doubling, and steps that allocate nothing.
 */
class DecodeSessionTest {
    /** fp32 logits of magnitude ~1-10 through two different summation orders: 1e-4 absolute. */
    static final double LOGIT_ATOL = 1e-4;
    private static final Path FAMILIES = Path.of("tests/resources/model/families");
    private static final int[] IDS = {1, 17, 5, 60, 33, 2, 71, 9, 44, 12, 3, 58};

    static float[] copy(FloatBuffer b) {
        float[] out = new float[b.remaining()];
        b.get(out);
        return out;
    }

    static void assertClose(float[] ref, float[] got, String what) {
        assertEquals(ref.length, got.length, what);
        double max = 0;
        for (int i = 0; i < ref.length; i++) max = Math.max(max, Math.abs(ref[i] - got[i]));
        assertTrue(max <= LOGIT_ATOL, what + ": max |diff| " + max);
    }

    /** Steps {@code ids} through a fused and a block-path session and compares every logit row. */
    static void assertFusedEqualsBlock(LlamaModel m, int[] ids, String what) {
        try (DecodeSession fused = m.newSession(ids.length, true); DecodeSession block = m.newSession(ids.length, false)) {
            for (int i = 0; i < ids.length; i++) {
                int id = ids[i] % m.config().vocabSize();
                assertClose(copy(block.step(id)), copy(fused.step(id)), what + " position " + i);
            }
        }
    }

    @Test
    void fusedStepEqualsTheDecoderBlockForDenseAndNf4Weights() {
        LlamaConfig c = TestModels.smallConfig(2, false);
        try (LlamaWeights w = TestModels.random(c, 5); LlamaModel m = LlamaModel.create(Backends.cpu(), w)) {
            assertFusedEqualsBlock(m, IDS, "llama dense GQA");
            try (LlamaWeights q = ModelLoader.quantizeProjections(w, ModelLoader.Options.in4bit());
                 LlamaModel mq = LlamaModel.create(Backends.cpu(), q)) {
                assertTrue(q.layer(0).projection(Projection.GATE) instanceof ProjectionWeight.Quantized);
                assertFusedEqualsBlock(mq, IDS, "llama NF4");
            }
        }
    }

    /**
     * bnb_4bit_compute_dtype = bfloat16 is a model setting: the decode step (T = 1), the prefill and
     * the block path all take the bf16 NF4 product, so they agree as the fp32 ones do, and the
     * logits move off the fp32 ones by the bf16 rounding.
     */
    @Test
    void bf16ComputeNf4AgreesAcrossDecodePrefillAndBlock() {
        LlamaConfig c = TestModels.smallConfig(2, false);
        try (LlamaWeights w = TestModels.random(c, 5); LlamaWeights q32 = ModelLoader.quantizeProjections(w, ModelLoader.Options.in4bit());
             LlamaModel m32 = LlamaModel.create(Backends.cpu(), q32)) {
            LlamaWeights q = ModelLoader.withComputeDtype(q32, io.lora4j.tensor.DType.BF16);
            try (LlamaModel m = LlamaModel.create(Backends.cpu(), q); DecodeSession a = m.newSession(IDS.length, true);
                 DecodeSession b = m.newSession(IDS.length, true); DecodeSession f = m32.newSession(IDS.length, true)) {
                assertFusedEqualsBlock(m, IDS, "llama NF4, bf16 compute");
                float[] stepped = null, fp32 = null;
                for (int id : IDS) {
                    stepped = copy(a.step(id));
                    fp32 = copy(f.step(id));
                }
                assertClose(stepped, copy(b.prefill(IDS)), "bf16 compute: prefill logits after the last id");
                double diff = 0;
                for (int i = 0; i < fp32.length; i++) diff = Math.max(diff, Math.abs(fp32[i] - stepped[i]));
                assertTrue(diff > 0 && diff < 0.05, "bf16 against fp32 compute logits: largest difference " + diff);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2", "qwen3", "mistral"})
    void fusedStepEqualsTheDecoderBlockForEveryFamily(String family) throws Exception {
        try (LlamaWeights w = ModelLoader.load(FAMILIES.resolve(family).resolve("model")); LlamaModel m = LlamaModel.create(Backends.cpu(), w)) {
            assertTrue(DecodeSession.fusedStepCovers(w.config().architecture().family()));
            int[] ids = new int[Math.min(m.config().maxPositionEmbeddings(), 24)];
            for (int i = 0; i < ids.length; i++) ids[i] = (i * 37 + 1) % m.config().vocabSize();
            assertFusedEqualsBlock(m, ids, family);
        }
    }

    @Test
    void prefillEqualsTokenByTokenSteps() {
        LlamaConfig c = TestModels.smallConfig(1, true);
        try (LlamaWeights w = TestModels.random(c, 9); LlamaModel m = LlamaModel.create(Backends.cpu(), w);
             DecodeSession a = m.newSession(IDS.length + 1, true); DecodeSession b = m.newSession(IDS.length + 1, true)) {
            float[] stepped = null;
            for (int id : IDS) stepped = copy(a.step(id));
            assertClose(stepped, copy(b.prefill(IDS)), "prefill logits after the last id");
            assertEquals(IDS.length, b.length());
            assertClose(copy(a.step(7)), copy(b.step(7)), "the step after the prefill (the cache rows it wrote)");
            assertThrows(IllegalStateException.class, () -> b.prefill(IDS), "prefill into a non-empty session");
        }
    }

    @Test
    void reserveDoublesTheCacheAndKeepsItsRows() {
        LlamaConfig c = TestModels.smallConfig(2, false);
        try (LlamaWeights w = TestModels.random(c, 11); LlamaModel m = LlamaModel.create(Backends.cpu(), w);
             DecodeSession small = m.newSession(3, true); DecodeSession big = m.newSession(IDS.length, true)) {
            for (int i = 0; i < 3; i++) assertClose(copy(big.step(IDS[i])), copy(small.step(IDS[i])), "before growing");
            assertThrows(IllegalStateException.class, () -> small.step(IDS[3]), "a full cache");
            small.reserve(4);
            assertEquals(6, small.capacity(), "grown to twice the capacity");
            for (int i = 3; i < 6; i++) assertClose(copy(big.step(IDS[i])), copy(small.step(IDS[i])), "after growing, position " + i);
            small.reserve(7);
            assertEquals(12, small.capacity());
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> small.reserve(c.maxPositionEmbeddings() + 1));
            assertTrue(e.getMessage().contains("max_position_embeddings"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> small.step(c.vocabSize()), "id outside the vocabulary");
        }
    }

    /** After the first step, steps allocate no tensor: no category's peak rises above its live bytes. */
    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void stepsAllocateNothing(boolean nf4) {
        LlamaConfig c = TestModels.smallConfig(2, false);
        try (LlamaWeights dense = TestModels.random(c, 13);
             LlamaWeights w = nf4 ? ModelLoader.quantizeProjections(dense, ModelLoader.Options.in4bit()) : dense;
             LlamaModel m = LlamaModel.create(Backends.cpu(), w); DecodeSession s = m.newSession(IDS.length, true)) {
            s.step(IDS[0]);
            MemoryTracker t = MemoryTracker.GLOBAL;
            MemoryCategory[] cats = MemoryCategory.values();
            long[] live = new long[cats.length];
            t.resetPeaks();
            for (int i = 0; i < cats.length; i++) live[i] = t.live(Device.CPU, cats[i]);
            for (int i = 1; i < IDS.length; i++) s.step(IDS[i]);
            for (int i = 0; i < cats.length; i++)
                assertEquals(live[i], t.peak(Device.CPU, cats[i]), cats[i] + " bytes allocated during the steps");
        }
    }
}
