package io.lora4j.emu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.model.DecodeSession;
import io.lora4j.model.LlamaModel;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.MemoryTracker;
import java.nio.FloatBuffer;
import java.nio.file.Path;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link DecodeSession} on CUDA (the emulated build in CI): the fused single-token step gives the
 * CPU session's logits, and after the first step a step allocates no device memory (every
 * allocation goes through the backend and the tracker; the kernels allocate nothing), so there is
 * no per-token cudaMalloc. The committed synthetic model (hidden 64, 2 layers, GQA 4/2, vocab
 * 300), dense (held as F32 on CUDA, whose default storage is BF16, so that fp32 meets fp32) and NF4.
 */
class CudaDecodeSessionTest {
    private static final Path SYNTHETIC = Path.of("tests/resources/model/synthetic-gqa-untied");
    private static final int[] IDS = {1, 17, 5, 260, 33, 2, 171, 9, 44, 12};
    /**
     * fp32 logits of magnitude ~1 through other summation orders: 1e-4. NF4 on CUDA rounds x and W
     * to bf16 in the matmul (Parity.BF16_DOT) where the CPU stays fp32: 2e-2.
     */
    private static final double DENSE_ATOL = 1e-4, NF4_ATOL = 2e-2;

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void stepsMatchTheCpuAndAllocateNothing(boolean nf4) throws Exception {
        Backend cuda = Twins.cuda();
        Backend cpu = Backends.cpu();
        ModelLoader.Options o = nf4 ? ModelLoader.Options.in4bit() : ModelLoader.Options.defaults();
        try (LlamaWeights wc = ModelLoader.load(SYNTHETIC, o.withBackend(cpu)); LlamaWeights wg = ModelLoader.load(SYNTHETIC, o.withBackend(cuda));
             LlamaModel onCpu = LlamaModel.create(cpu, wc); LlamaModel onCuda = LlamaModel.create(cuda, wg, DType.F32);
             LlamaModel.KvCache cpuCache = onCpu.newCache(IDS.length); LlamaModel.KvCache cudaCache = onCuda.newCache(IDS.length)) {
            DecodeSession ref = cpuCache.session(), dev = cudaCache.session();
            assertClose(ref.step(IDS[0]), dev.step(IDS[0]), nf4 ? NF4_ATOL : DENSE_ATOL, "position 0");
            MemoryTracker t = MemoryTracker.GLOBAL;
            MemoryCategory[] cats = MemoryCategory.values();
            long[] live = new long[cats.length];
            t.resetPeaks();
            for (int i = 0; i < cats.length; i++) live[i] = t.live(cuda.device(), cats[i]);
            for (int i = 1; i < IDS.length; i++)
                assertClose(ref.step(IDS[i]), dev.step(IDS[i]), nf4 ? NF4_ATOL : DENSE_ATOL, "position " + i);
            for (int i = 0; i < cats.length; i++)
                assertEquals(live[i], t.peak(cuda.device(), cats[i]), cats[i] + " device bytes allocated during the steps");
        }
    }

    private static void assertClose(FloatBuffer ref, FloatBuffer got, double atol, String what) {
        assertEquals(ref.remaining(), got.remaining(), what);
        double max = 0, scale = 0;
        for (int i = 0; i < ref.remaining(); i++) {
            float r = ref.get(ref.position() + i);
            max = Math.max(max, Math.abs(r - got.get(got.position() + i)));
            scale = Math.max(scale, Math.abs(r));
        }
        assertTrue(max <= atol, what + ": max |logit diff| " + max + ", max |logit| " + scale);
    }
}
