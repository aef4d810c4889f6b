package io.lora4j.train;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.HostAllocator;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The training step never reads an element of an uninitialised ({@link Backend#empty}) tensor:
 * with {@link HostAllocator#setPoison} on, every such tensor starts as 0xFF bytes (NaN) and every
 * released block is overwritten the same way, so a read of an element no op wrote, or of a
 * closed tensor, turns the loss or a gradient into NaN or changes its bits. Each case runs its
 * forward and backward with poison off and on and must give the same bits, and the PyTorch
 * reference checks of GoldenTrainTest run again under poison.
 */
class PoisonedMemoryTest {
    private static final Backend CPU = Backends.cpu();
    private static final Path FAMILIES = Path.of("tests/resources/model/families");

    /** {@code run} with the host allocator's poison switched on, restored afterwards. */
    private static <T> T poisoned(Supplier<T> run) {
        HostAllocator g = HostAllocator.GLOBAL;
        boolean was = g.poison();
        g.setPoison(true);
        try {
            return run.get();
        } finally {
            g.setPoison(was);
        }
    }

    /** Loss and gradients of one micro-batch, then the evaluation loss, as one array of doubles. */
    private static double[] step(LoraTrainingModel m, Batch b) {
        m.zeroGradients();
        double loss = m.forwardBackward(b, (float) (1.0 / b.targetTokens()), 91);
        float[] g = m.gradients().toFloats();
        double[] out = new double[g.length + 2];
        for (int i = 0; i < g.length; i++) out[i] = g[i];
        out[g.length] = loss;
        out[g.length + 1] = m.lossSum(b);
        return out;
    }

    private static void assertSameBitsWithPoison(LoraTrainingModel m, Batch b, String what) {
        double[] clean = step(m, b);
        double[] dirty = poisoned(() -> step(m, b));
        for (double v : clean) assertTrue(Double.isFinite(v), what + ": non-finite result without poison");
        assertArrayEquals(clean, dirty, what + ": poisoned memory changed the loss or a gradient (an uninitialised read)");
    }

    @Test
    void denseAndNf4BasesWithDropoutEveryCheckpointModeAndAVocabChunkedHead() {
        LoraConfig lc = TrainFixtures.lora(4, 8).withDropout(0.1);
        Batch b = Batch.of(TrainFixtures.rows(3, 40, 31), 0);
        try (LlamaWeights w = TrainFixtures.tinyModel(17)) {
            LlamaWeights q = TrainFixtures.quantized(CPU, w);
            try {
                for (LlamaWeights base : new LlamaWeights[] {w, q}) {
                    try (LoraAdapter a = TrainFixtures.randomAdapter(CPU, w.config(), lc, 3, 0.2);
                         LoraTrainingModel m = new LoraTrainingModel(CPU, base, a)) {
                        String kind = base == w ? "dense" : "nf4";
                        for (CheckpointMode mode : CheckpointMode.values()) {
                            m.setCheckpointing(mode, 1);
                            assertSameBitsWithPoison(m, b, kind + ", " + mode);
                        }
                        m.setCheckpointing(CheckpointMode.NONE);
                        m.ceChunkVocab = 16; // 40 columns in slices of 16, 16 and 8
                        assertSameBitsWithPoison(m, b, kind + ", vocabulary-chunked head");
                    }
                }
            } finally {
                // embedding and norms are shared with `w` (closed by its try); the projections are their own
                for (var l : q.layers()) for (var pw : l.projections().values()) pw.close();
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2", "qwen3", "mistral", "gemma3_text", "gemma2", "phi3"})
    void everyFamilyGivesTheSameBitsWithPoisonedMemory(String family) throws Exception {
        Path dir = FAMILIES.resolve(family);
        try (LlamaWeights w = ModelLoader.load(dir.resolve("model"));
             LoraAdapter a = LoraAdapter.load(dir.resolve("init_adapter"), CPU, w.config());
             LoraTrainingModel m = new LoraTrainingModel(CPU, w, a)) {
            // rows of at most 5 tokens: the families' sliding window; the first token of each unlabelled
            Random r = new Random(5);
            List<Example> rows = new ArrayList<>();
            for (int len : new int[] {5, 3, 4}) {
                int[] ids = new int[len];
                for (int i = 0; i < len; i++) ids[i] = 3 + r.nextInt(w.config().vocabSize() - 3);
                int[] lab = ids.clone();
                lab[0] = Example.IGNORE_INDEX;
                rows.add(new Example(ids, lab));
            }
            Batch b = Batch.of(rows, SimpleDataset.PAD_ID);
            assertSameBitsWithPoison(m, b, family);
        }
    }

    @Test
    void theGoldenPyTorchReferenceHoldsWithPoisonedMemory() throws Exception {
        Path dir = Path.of("tests/resources/train/golden");
        try (LlamaWeights w = ModelLoader.load(dir.resolve("model"))) {
            poisoned(() -> {
                try {
                    GoldenTrainTest.check(CPU, dir, w, "golden (poisoned)", GoldenTrainTest.LR);
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
                return null;
            });
        }
    }
}
