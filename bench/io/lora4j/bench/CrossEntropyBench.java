package io.lora4j.bench;

import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.MemoryTracker;
import io.lora4j.tensor.Tensor;
import io.lora4j.train.ChunkedCrossEntropy;
import io.lora4j.train.LoraTrainingModel;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * lm_head + cross-entropy, forward and backward, of T = 2048 tokens at hidden 1024 on one thread:
 * {@code chunked} is the training head's code ({@link ChunkedCrossEntropy}: 256-token chunks, and
 * 32768-column vocabulary slices when V > 32768); {@code unchunked} materialises the full [T, V]
 * logits with the same backend ops (bench-only). Every token has a target.
 *
 * <p>Work: the token-chunked and unchunked paths run two [T, d]×[d, V] matmuls (4·T·V·d flop); the
 * vocabulary-sliced path recomputes the logits in its backward (6·T·V·d). Report GFLOP/s against
 * the 1-thread sgemm ceiling (DESIGN.md §6: 71-81 GFLOP/s) and the peak LOGITS bytes printed at
 * tear-down (MemoryTracker). Single shots: one V = 128256 op takes 10-25 s here.
 */
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xmx2g"})
@Warmup(iterations = 1)
@Measurement(iterations = 3)
@Threads(1)
@State(Scope.Benchmark)
public class CrossEntropyBench {
    static final int T = 2048, HIDDEN = 1024;

    @Param({"32000", "128256"})
    public int vocab;

    @Param({"chunked", "unchunked"})
    public String path;

    Backend backend;
    Tensor h, lmHead, labels, dh;
    int[] hostLabels;

    @Setup
    public void setup() {
        NativeLibrary.setNumThreads(1);
        backend = Backends.cpu();
        Random r = new Random(11);
        h = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, T, HIDDEN);
        lmHead = Tensor.allocate(DType.F32, MemoryCategory.WEIGHTS, vocab, HIDDEN);
        fill(h, r, 1f);     // RMSNorm output: unit scale
        fill(lmHead, r, 0.02f); // HF initializer_range: logits ~ N(0, 0.64)
        hostLabels = new int[T];
        for (int i = 0; i < T; i++) hostLabels[i] = r.nextInt(vocab);
        labels = Tensor.allocate(DType.I32, MemoryCategory.WORKSPACE, T);
        labels.buffer().asIntBuffer().put(hostLabels);
        dh = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, T, HIDDEN);
        MemoryTracker.GLOBAL.resetPeaks();
    }

    private static void fill(Tensor t, Random r, float std) {
        float[] v = new float[(int) t.numel()];
        for (int i = 0; i < v.length; i++) v[i] = std * (float) r.nextGaussian();
        t.buffer().asFloatBuffer().put(v);
    }

    @Benchmark
    public double headForwardBackward() {
        float scale = 1f / T;
        if (path.equals("chunked"))
            return ChunkedCrossEntropy.lossAndGradient(backend, h, lmHead, labels, hostLabels,
                    LoraTrainingModel.CE_CHUNK_TOKENS, LoraTrainingModel.CE_CHUNK_VOCAB, scale, dh);
        try (Tensor logits = backend.allocate(DType.F32, MemoryCategory.LOGITS, T, vocab);
             Tensor loss = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, T);
             Tensor sum = backend.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1)) {
            backend.sgemm(false, true, T, vocab, HIDDEN, 1f, h, HIDDEN, lmHead, HIDDEN, 0f, logits, vocab);
            backend.crossEntropyFwd(logits, labels, loss, sum);
            backend.crossEntropyBwd(logits, labels, scale, logits);
            backend.sgemm(false, false, T, HIDDEN, vocab, 1f, logits, vocab, lmHead, HIDDEN, 0f, dh, HIDDEN);
            return sum.floatPointer().get(0);
        }
    }

    @TearDown
    public void tearDown() {
        long peak = MemoryTracker.GLOBAL.peak(Device.CPU, MemoryCategory.LOGITS);
        double flop = (path.equals("chunked") && vocab > LoraTrainingModel.CE_CHUNK_VOCAB ? 6.0 : 4.0) * T * vocab * HIDDEN;
        System.out.printf("%nCE_RESULT vocab=%d path=%s peakLogitsBytes=%d flopPerOp=%.4g%n", vocab, path, peak, flop);
        for (Tensor t : new Tensor[] {h, lmHead, labels, dh}) t.close();
    }
}
