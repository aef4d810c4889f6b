package io.lora4j.emu;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.model.TestModels;
import io.lora4j.ops.Backend;
import io.lora4j.train.CheckpointMode;
import io.lora4j.train.ChunkedCrossEntropy;
import io.lora4j.train.LoraTrainingModel;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.MemoryTracker;
import io.lora4j.tensor.Tensor;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * One LoRA training micro-step (forward, chunked loss, backward) of the committed synthetic model
 * (tests/resources/model/synthetic-gqa-untied: hidden 64, 2 layers, GQA 4/2, vocab 300) on CUDA
 * against the CPU: dense LoRA and QLoRA, every checkpointing mode, the asynchronous offload of
 * {@code unsloth}, memory by category, and the vocabulary-chunked head past 32768 columns.
 */
class CudaTrainingModelTest {
    private static final Path SYNTHETIC = Path.of("tests/resources/model/synthetic-gqa-untied");
    /**
     * Dense LoRA: the same fp32 math in other summation orders (blocked reductions, tiled
     * matmuls) through 2 layers and a 300-column head: loss to 1e-5 relative, gradients to
     * 1e-4 of the largest gradient plus 1e-3 relative.
     */
    static final double DENSE_LOSS_RTOL = 1e-5, DENSE_GRAD_ATOL = 1e-4, DENSE_GRAD_RTOL = 1e-3;
    /**
     * QLoRA: the CUDA NF4 matmul rounds x and W to bf16 (2^-9 relative each, Parity.BF16_DOT), the
     * CPU stays fp32, so every projection output moves by ~1e-3 relative and the gradients by a few
     * 1e-3 of their scale: loss 2e-3 relative, gradients 3e-2 of the largest plus 3e-2 relative.
     */
    static final double NF4_LOSS_RTOL = 2e-3, NF4_GRAD_ATOL = 3e-2, NF4_GRAD_RTOL = 3e-2;

    private final Backend cpu = io.lora4j.ops.Backends.cpu();
    private final Backend cuda = Twins.cuda();

    /** {@code n} rows of 5..12 tokens, the first third of each masked (a prompt). */
    static Batch batch(int n, int vocab, long seed) {
        return batch(n, vocab, seed, 5, 8);
    }

    /** {@code n} rows of minLen..minLen+spread-1 tokens, the first third of each masked (a prompt). */
    static Batch batch(int n, int vocab, long seed, int minLen, int spread) {
        Random r = new Random(seed);
        List<Example> rows = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int len = minLen + r.nextInt(spread);
            int[] ids = new int[len], lab = new int[len];
            for (int j = 0; j < len; j++) ids[j] = 3 + r.nextInt(vocab - 3);
            ids[0] = 1;
            for (int j = 0; j < len; j++) lab[j] = j < len / 3 ? Example.IGNORE_INDEX : ids[j];
            rows.add(new Example(ids, lab));
        }
        return Batch.of(rows, 0);
    }

    static LoraAdapter adapter(Backend b, LlamaConfig c, long seed) {
        LoraConfig lc = LoraConfig.defaults().withRank(4).withAlpha(8);
        long n = 0;
        for (LoraAdapter.Slot s : LoraAdapter.layout(c, lc)) n = Math.max(n, s.offsetB() + s.out() * lc.r());
        float[] v = new float[(int) n];
        Random r = new Random(seed);
        for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextGaussian() * 0.2); // B != 0, so dA != 0
        return LoraAdapter.of(b, c, lc, v);
    }

    record Step(double loss, float[] grads, Map<MemoryCategory, Long> peaks) {}

    private static float[] download(Backend b, Tensor t) {
        if (t.device() == Device.CPU) return t.toFloats();
        try (Tensor h = b.download(t)) {
            return h.toFloats();
        }
    }

    /**
     * One micro-step on {@code b}: loss, gradients, and the peak bytes per category on b's device.
     * Both backends hold the base in BF16 (CUDA's default, {@code dtype: bfloat16} on the CPU) and keep
     * fp32 activations ({@code bf16: false}), so they compute with the same weights and differ by
     * summation order only.
     */
    static Step step(Backend b, LlamaWeights w, Batch batch, CheckpointMode mode) {
        return step(b, w, batch, mode, DType.BF16, false);
    }

    static Step step(Backend b, LlamaWeights w, Batch batch, CheckpointMode mode, DType storage) {
        return step(b, w, batch, mode, storage, false);
    }

    /** As {@link #step(Backend, LlamaWeights, Batch, CheckpointMode)} with the storage and mixed precision given (null: the device's default). */
    static Step step(Backend b, LlamaWeights w, Batch batch, CheckpointMode mode, DType storage, Boolean bf16) {
        try (LoraAdapter ad = adapter(b, w.config(), 9); LoraTrainingModel m = new LoraTrainingModel(b, w, ad, storage, bf16)) {
            m.setCheckpointing(mode);
            m.zeroGradients();
            b.synchronize();
            MemoryTracker.GLOBAL.resetPeaks();
            double loss = m.forwardBackward(batch, (float) (1.0 / batch.targetTokens()), 5);
            b.synchronize();
            Map<MemoryCategory, Long> peaks = MemoryTracker.GLOBAL.peaks(b.device());
            return new Step(loss, download(b, m.gradients()), peaks);
        }
    }

    static void sameStep(String what, Step cpu, Step cuda, double lossRtol, double gradAtol, double gradRtol) {
        assertEquals(cpu.loss, cuda.loss, lossRtol * Math.abs(cpu.loss), what + ": loss");
        double gmax = 0;
        for (float g : cpu.grads) gmax = Math.max(gmax, Math.abs(g));
        assertTrue(gmax > 0, what + ": all gradients are zero");
        Parity.close(what + ": gradients", cpu.grads, cuda.grads, gradAtol * gmax, gradRtol);
    }

    @Test
    void denseLoraStepEqualsTheCpuInEveryCheckpointingMode() throws Exception {
        Batch batch = batch(3, 300, 11);
        try (LlamaWeights w = ModelLoader.load(SYNTHETIC)) {
            Step ref = step(cpu, w, batch, CheckpointMode.NONE);
            Step none = null;
            for (CheckpointMode mode : CheckpointMode.values()) {
                Step s = step(cuda, w, batch, mode);
                sameStep("dense LoRA, checkpointing " + mode, ref, s, DENSE_LOSS_RTOL, DENSE_GRAD_ATOL, DENSE_GRAD_RTOL);
                if (mode == CheckpointMode.NONE) none = s;
                else {
                    // recomputation runs the same kernels on the same inputs: the same bits
                    assertEquals(none.loss, s.loss, 0.0, mode + " vs none: loss");
                    Parity.close(mode + " vs none on CUDA: gradients", none.grads, s.grads, 0, 0);
                }
            }
        }
    }

    /**
     * The CUDA default (BF16 storage of embedding, lm_head and projections) against the fp32 CPU
     * run: each weight moves by at most 2^-9 relative (bf16 keeps 8 significant bits, rounded to
     * nearest), so a dot product of K terms moves by at most 2^-9·Σ|x·w|, and by about
     * 2^-9·‖x⊙w‖₂ since the roundings are independent; through 2 layers and the head that is
     * ~1e-3 of the loss at most and a few 1e-3 of the gradients' scale: the QLoRA bounds (whose
     * CUDA matmul rounds x and W to bf16, a larger perturbation). With {@code dtype: float32} CUDA
     * matches the CPU to the dense fp32 bounds.
     */
    @Test
    void bf16StorageStepEqualsTheFp32CpuWithinTheBf16Bound() throws Exception {
        Batch batch = batch(3, 300, 15);
        try (LlamaWeights w = ModelLoader.load(SYNTHETIC)) {
            Step ref = step(cpu, w, batch, CheckpointMode.NONE, DType.F32);
            Step bf16 = step(cuda, w, batch, CheckpointMode.NONE, null); // the device's default
            sameStep("CUDA bf16 storage vs CPU fp32", ref, bf16, NF4_LOSS_RTOL, NF4_GRAD_ATOL, NF4_GRAD_RTOL);
            assertNotEquals(ref.loss, bf16.loss, "bf16 storage changes the numbers (else the default is not bf16)");
            Step f32 = step(cuda, w, batch, CheckpointMode.NONE, DType.F32);
            sameStep("CUDA fp32 storage vs CPU fp32", ref, f32, DENSE_LOSS_RTOL, DENSE_GRAD_ATOL, DENSE_GRAD_RTOL);
        }
    }

    /**
     * Mixed precision, CUDA's default ({@code bf16} auto): the activations the backward reads (layer
     * inputs and outputs, h1, h2, s) are stored in bf16, rounded once where they are made.
     * <ul>
     *   <li>Every checkpointing mode gives the same bits as {@code none} on CUDA: the recomputed
     *       forward starts from the stored bf16 layer input, which is the value the first forward went
     *       on with, so nothing differs (this is why the forward continues with the rounded value).
     *   <li>Against the CPU run with the same {@code bf16: true}, both round at the same places: the
     *       fp32 values before each rounding differ by summation order (~1e-6 relative), which flips
     *       a rounding only for the rare element within 1e-6 of a rounding boundary, by one bf16 ulp
     *       (2^-8 relative), so loss and gradients agree within the QLoRA bounds (a few 2^-9), far
     *       inside them in practice.
     *   <li>Against the fp32 CPU: each rounding moves its element by at most 2^-9 relative (8 significant
     *       bits, round to nearest even); the errors of independent elements cancel in the sums that
     *       follow, so a projection output moves by ~2^-9·‖x⊙w‖₂, much less than the bound 2^-9·Σ|x·w|.
     *       Two layers plus the head round ~6 times along any path: the QLoRA bounds (loss 2e-3 relative,
     *       gradients 3e-2 of their largest plus 3e-2 relative) hold with room.
     *   <li>Memory: the tracker's peaks on the device equal the CPU's category by category (the same
     *       tensors, the same dtypes, the same order), and the stored layer inputs take half the bytes
     *       of the fp32 run's.
     * </ul>
     */
    @Test
    void mixedPrecisionStepIsTheSameInEveryModeAndWithinTheBf16BoundOfTheCpu() throws Exception {
        Batch batch = batch(3, 300, 16);
        try (LlamaWeights w = ModelLoader.load(SYNTHETIC)) {
            Step fp32 = step(cpu, w, batch, CheckpointMode.NONE, DType.BF16, false);
            Step cpuMixed = step(cpu, w, batch, CheckpointMode.NONE, DType.BF16, true);
            Step none = step(cuda, w, batch, CheckpointMode.NONE, DType.BF16, null);
            assertNotEquals(fp32.loss, none.loss, "bf16 activations change the numbers (else CUDA's default is not mixed precision)");
            sameStep("CUDA mixed precision vs CPU mixed precision", cpuMixed, none, NF4_LOSS_RTOL, NF4_GRAD_ATOL, NF4_GRAD_RTOL);
            sameStep("CUDA mixed precision vs CPU fp32 activations", fp32, none, NF4_LOSS_RTOL, NF4_GRAD_ATOL, NF4_GRAD_RTOL);
            sameStep("CPU mixed precision vs CPU fp32 activations", fp32, cpuMixed, NF4_LOSS_RTOL, NF4_GRAD_ATOL, NF4_GRAD_RTOL);
            for (CheckpointMode mode : CheckpointMode.values()) {
                if (mode == CheckpointMode.NONE) continue;
                Step s = step(cuda, w, batch, mode, DType.BF16, true);
                assertEquals(none.loss, s.loss, 0.0, "mixed precision " + mode + " vs none: loss");
                Parity.close("mixed precision " + mode + " vs none on CUDA: gradients", none.grads, s.grads, 0, 0);
            }
            Step cpuTrue = step(cpu, w, batch, CheckpointMode.TRUE, DType.BF16, true);
            Step devTrue = step(cuda, w, batch, CheckpointMode.TRUE, DType.BF16, true);
            Step fp32True = step(cuda, w, batch, CheckpointMode.TRUE, DType.BF16, false);
            for (MemoryCategory c : List.of(MemoryCategory.LORA, MemoryCategory.GRADS, MemoryCategory.ACTIVATIONS,
                    MemoryCategory.CHECKPOINTS, MemoryCategory.LOGITS))
                assertEquals(cpuTrue.peaks.get(c), devTrue.peaks.get(c), "mixed precision: peak " + c + " on CUDA vs CPU");
            long layerInput = (long) batch.rows() * batch.seqLen() * w.config().hiddenSize();
            // TRUE keeps L + 1 layer outputs at most (every layer's input and the model output), 2 B each instead of 4
            assertEquals(fp32True.peaks.get(MemoryCategory.CHECKPOINTS) / 2, devTrue.peaks.get(MemoryCategory.CHECKPOINTS),
                    "stored layer inputs in bf16: half the bytes (" + layerInput + " elements each)");
        }
    }

    @Test
    void qloraStepEqualsTheCpuWithinTheBf16Bound() throws Exception {
        Batch batch = batch(3, 300, 12);
        try (LlamaWeights wc = ModelLoader.load(SYNTHETIC, ModelLoader.Options.in4bit().withBackend(cpu));
             LlamaWeights wg = ModelLoader.load(SYNTHETIC, ModelLoader.Options.in4bit().withBackend(cuda))) {
            Step ref = step(cpu, wc, batch, CheckpointMode.NONE);
            Step none = step(cuda, wg, batch, CheckpointMode.NONE);
            sameStep("QLoRA", ref, none, NF4_LOSS_RTOL, NF4_GRAD_ATOL, NF4_GRAD_RTOL);
            Step unsloth = step(cuda, wg, batch, CheckpointMode.UNSLOTH);
            assertEquals(none.loss, unsloth.loss, 0.0, "QLoRA unsloth vs none: loss");
            Parity.close("QLoRA unsloth vs none on CUDA: gradients", none.grads, unsloth.grads, 0, 0);
        }
    }

    /**
     * The tracker counts device memory by category like host memory: the same tensors are
     * allocated in the same order on either backend, so the peaks of a step agree category by
     * category; unsloth parks layer inputs in pinned host memory (OFFLOADED, counted on the CPU).
     */
    @Test
    void memoryIsCountedByCategoryOnTheDevice() throws Exception {
        Batch batch = batch(2, 300, 13);
        try (LlamaWeights w = ModelLoader.load(SYNTHETIC)) {
            long cudaLiveBefore = MemoryTracker.GLOBAL.liveTotal(Device.CUDA);
            Step ref = step(cpu, w, batch, CheckpointMode.TRUE);
            Step dev = step(cuda, w, batch, CheckpointMode.TRUE);
            for (MemoryCategory c : List.of(MemoryCategory.LORA, MemoryCategory.GRADS, MemoryCategory.ACTIVATIONS,
                    MemoryCategory.CHECKPOINTS, MemoryCategory.LOGITS)) {
                assertEquals(ref.peaks.get(c), dev.peaks.get(c), "peak " + c + " on CUDA vs CPU");
            }
            assertTrue(dev.peaks.get(MemoryCategory.WEIGHTS) > 0, "the weights were uploaded: " + dev.peaks);
            assertEquals(cudaLiveBefore, MemoryTracker.GLOBAL.liveTotal(Device.CUDA), "every device tensor was freed");

            long offBefore = MemoryTracker.GLOBAL.peak(Device.CPU, MemoryCategory.OFFLOADED);
            MemoryTracker.GLOBAL.resetPeaks();
            Step un = step(cuda, w, batch, CheckpointMode.UNSLOTH);
            long offloaded = MemoryTracker.GLOBAL.peak(Device.CPU, MemoryCategory.OFFLOADED);
            long layerInput = 4L * batch.rows() * batch.seqLen() * w.config().hiddenSize();
            assertTrue(offloaded >= layerInput, "unsloth offloads layer inputs to pinned host memory: " + offloaded + " vs " + offBefore);
            assertTrue(un.peaks.get(MemoryCategory.CHECKPOINTS) < dev.peaks.get(MemoryCategory.CHECKPOINTS) + layerInput,
                    "offloaded inputs leave the device: " + un.peaks + " vs " + dev.peaks);
        }
    }

    /** hidden 32, 2 layers, vocab 40000 > CE_CHUNK_VOCAB: the head runs in vocabulary slices. */
    @Test
    void vocabularyChunkedHeadEqualsTheCpu() {
        LlamaConfig c = new LlamaConfig("llama", 32, 48, 2, 4, 2, 8, 1e-5, 10000.0, null, 40_000, 64, false, 1, List.of(2), "float32");
        Batch batch = batch(2, 40_000, 14);
        try (LlamaWeights w = TestModels.random(c, 31)) {
            Step ref = step(cpu, w, batch, CheckpointMode.NONE);
            Step dev = step(cuda, w, batch, CheckpointMode.NONE);
            sameStep("vocab-chunked head", ref, dev, DENSE_LOSS_RTOL, DENSE_GRAD_ATOL, DENSE_GRAD_RTOL);
            long t = (long) batch.rows() * batch.seqLen();
            // the head's row chunk is padded to a multiple of ChunkedCrossEntropy.ROW_ALIGN rows
            long rows = Math.min(t, LoraTrainingModel.CE_CHUNK_TOKENS);
            rows = (rows + ChunkedCrossEntropy.ROW_ALIGN - 1) / ChunkedCrossEntropy.ROW_ALIGN * ChunkedCrossEntropy.ROW_ALIGN;
            assertEquals(4L * rows * LoraTrainingModel.CE_CHUNK_VOCAB, dev.peaks.get(MemoryCategory.LOGITS),
                    "one [rows, 32768] slice of logits at a time");
        }
    }
}
