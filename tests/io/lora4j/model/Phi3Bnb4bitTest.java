package io.lora4j.model;

import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.io.FormatException;
import io.lora4j.io.SafeTensors;
import io.lora4j.io.SafeTensorsDir;
import io.lora4j.io.SafeTensorsWriter;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Tensor;
import io.lora4j.train.LoraTrainingModel;
import io.lora4j.train.LrSchedule;
import io.lora4j.train.TrainConfig;
import io.lora4j.train.Trainer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A bnb-4bit Phi-3 checkpoint (NF4 qkv_proj/gate_up_proj quantized whole, as bitsandbytes does)
 * loads as per-projection slices of its packed codes and absmax: the slices dequantize to exactly
 * the rows of the whole fused weight, the model computes what quantizing the dense model on load
 * does, LoRA steps train on it, and a blocksize that splits a block between projections is refused by name.
 */
class Phi3Bnb4bitTest {
    private static final Path TINY = Path.of("tests/resources/model/families/phi3/model");
    private static final Backend CPU = Backends.cpu();
    private static final int[] PROMPT = {1, 5, 9, 13, 17, 21, 25};

    private static Bnb4bitWriter.Options options(int blocksize, boolean doubleQuant) {
        return new Bnb4bitWriter.Options(blocksize, doubleQuant, Bnb4bitWriter.ComputeDtype.FLOAT32, false, List.of());
    }

    private static Path bnb(Path model, Path out, int blocksize, boolean doubleQuant) throws Exception {
        try (LlamaWeights w = ModelLoader.load(model)) {
            Bnb4bitWriter.write(w, out, options(blocksize, doubleQuant));
        }
        return out;
    }

    @Test
    void withoutDoubleQuantTheCheckpointComputesWhatQuantizingOnLoadDoes(@TempDir Path tmp) throws Exception {
        Path out = bnb(TINY, tmp.resolve("bnb"), 64, false);
        assertTrue(SafeTensors.open(out.resolve(SafeTensorsDir.SINGLE)).contains("model.layers.0.self_attn.qkv_proj.weight.quant_state.bitsandbytes__nf4"));
        try (LlamaWeights q = ModelLoader.load(TINY, new ModelLoader.Options(true, 64, false, null)); LlamaWeights b = ModelLoader.load(out);
             LlamaModel mq = LlamaModel.create(CPU, q); LlamaModel mb = LlamaModel.create(CPU, b);
             Tensor lq = mq.forward(new int[][] {PROMPT}); Tensor lb = mb.forward(new int[][] {PROMPT})) {
            assertEquals(ModelFormat.HF_BNB4, b.format());
            assertArrayEquals(lq.toFloats(), lb.toFloats(), "blocks aligned to the projections: the same quantization, the same logits");
        }
        assertSlicesAreTheFusedRows(out);
    }

    @Test
    void doubleQuantizedAbsmaxIsDequantizedOnceWhenSlicesSplitItsNestedBlocks(@TempDir Path tmp) throws Exception {
        Path out = bnb(TINY, tmp.resolve("bnb"), 32, true); // K starts at block 32: not a nested (256-block) boundary
        try (LlamaWeights b = ModelLoader.load(out)) {
            Nf4Weight k = ((ProjectionWeight.Quantized) b.layer(0).projection(Projection.K)).weight();
            assertNull(k.doubleQuant(), "its absmax is an fp32 run of the dequantized one");
        }
        assertSlicesAreTheFusedRows(out);
        loraStepsRun(out);
    }

    @Test
    void doubleQuantizedAbsmaxIsSlicedWhenEveryProjectionStartsOnANestedBlock(@TempDir Path tmp) throws Exception {
        Path model = wider(tmp.resolve("wide"));
        Path out = bnb(model, tmp.resolve("bnb"), 64, true);
        try (LlamaWeights b = ModelLoader.load(out)) {
            for (Projection p : Projection.values())
                assertNotNull(((ProjectionWeight.Quantized) b.layer(0).projection(p)).weight().doubleQuant(), p + " keeps its 8-bit absmax");
        }
        assertSlicesAreTheFusedRows(out);
        loraStepsRun(out);
    }

    @Test
    void aBlockSharedByTwoProjectionsIsRefusedNamingTheTensor(@TempDir Path tmp) throws Exception {
        Path out = bnb(TINY, tmp.resolve("bnb"), 1024, false); // V starts at element 1536
        FormatException e = assertThrows(FormatException.class, () -> ModelLoader.load(out));
        assertTrue(e.getMessage().contains("model.layers.0.self_attn.qkv_proj.weight") && e.getMessage().contains("blocksize 1024"), e.getMessage());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
    }

    /** Each loaded projection's dequantized rows equal the whole stored fused weight's, read with {@link Nf4#fromParts}. */
    private static void assertSlicesAreTheFusedRows(Path dir) throws Exception {
        SafeTensors st = SafeTensors.open(dir.resolve(SafeTensorsDir.SINGLE));
        try (LlamaWeights b = ModelLoader.load(dir)) {
            Architecture arch = b.config().architecture();
            for (int l = 0; l < b.layers().size(); l++) {
                for (Projection leader : new Projection[] {Projection.Q, Projection.GATE}) {
                    String name = arch.weightName(leader, l);
                    Bnb4bit.QuantState qs = Bnb4bit.parseQuantState(st.bytes(name + Bnb4bit.QUANT_STATE_SUFFIX), dir, name);
                    Nf4Weight whole = qs.doubleQuant()
                            ? Nf4.fromParts(CPU, qs.shape(), qs.blocksize(), DType.F32, st.tensor(name), null, st.tensor(name + Bnb4bit.ABSMAX),
                                    st.tensor(name + Bnb4bit.NESTED_ABSMAX), (float) (double) qs.nestedOffset())
                            : Nf4.fromParts(CPU, qs.shape(), qs.blocksize(), DType.F32, st.tensor(name), st.tensor(name + Bnb4bit.ABSMAX), null, null, 0f);
                    float[] all;
                    try (Tensor d = Nf4.dequantize(CPU, whole)) {
                        all = d.toFloats();
                    }
                    int at = 0;
                    for (Projection p : leader.fusedGroup()) {
                        try (Tensor d = Nf4.dequantize(CPU, ((ProjectionWeight.Quantized) b.layer(l).projection(p)).weight())) {
                            float[] rows = d.toFloats();
                            assertArrayEquals(java.util.Arrays.copyOfRange(all, at, at + rows.length), rows, name + ": " + p + "'s rows");
                            at += rows.length;
                        }
                    }
                    assertEquals(all.length, at);
                }
            }
        }
    }

    /** Four LoRA steps on one row: the loss falls (the first step moves only B, which starts at zero). */
    private static void loraStepsRun(Path dir) throws Exception {
        int steps = 4;
        try (LlamaWeights w = ModelLoader.load(dir);
             LoraAdapter a = LoraAdapter.create(CPU, w.config(), LoraConfig.defaults().withRank(4).withAlpha(8));
             LoraTrainingModel m = new LoraTrainingModel(CPU, w, a);
             Trainer t = new Trainer(m, TrainConfig.defaults().withBatch(1, 1).withSchedule(1e-2, 0, LrSchedule.LINEAR, 0, 1.0, steps), steps)) {
            List<Batch> window = List.of(Batch.of(List.of(Example.allTokens(PROMPT)), 0));
            double first = t.step(window).loss(), last = first;
            for (int s = 1; s < steps; s++) last = t.step(window).loss();
            assertTrue(Double.isFinite(last) && last < first, "loss " + first + " -> " + last);
        }
    }

    /**
     * The tiny Phi-3 at hidden 128, four KV heads and intermediate 128, one layer, random weights:
     * K, V and up start at blocks 256, 512 and 256 of blocksize 64, nested-block boundaries.
     */
    private static Path wider(Path dir) throws Exception {
        JsonObject cfg = JsonParser.parseString(Files.readString(TINY.resolve(LlamaConfig.FILE))).getAsJsonObject();
        int h = 128, inter = 128, v = cfg.get("vocab_size").getAsInt();
        cfg.addProperty("hidden_size", h);
        cfg.addProperty("intermediate_size", inter);
        cfg.addProperty("num_key_value_heads", cfg.get("num_attention_heads").getAsInt());
        cfg.addProperty("num_hidden_layers", 1);
        Files.createDirectories(dir);
        Files.writeString(dir.resolve(LlamaConfig.FILE), cfg.toString());
        Random r = new Random(16);
        SafeTensorsWriter st = new SafeTensorsWriter();
        st.addFloats(LlamaWeights.EMBED, new long[] {v, h}, random(r, v * h, 1f));
        st.addFloats(LlamaWeights.inputNormName(0), new long[] {h}, ones(h));
        st.addFloats("model.layers.0.self_attn.qkv_proj.weight", new long[] {3 * h, h}, random(r, 3 * h * h, 0.1f));
        st.addFloats("model.layers.0.self_attn.o_proj.weight", new long[] {h, h}, random(r, h * h, 0.1f));
        st.addFloats(LlamaWeights.postNormName(0), new long[] {h}, ones(h));
        st.addFloats("model.layers.0.mlp.gate_up_proj.weight", new long[] {2 * inter, h}, random(r, 2 * inter * h, 0.1f));
        st.addFloats("model.layers.0.mlp.down_proj.weight", new long[] {h, inter}, random(r, h * inter, 0.1f));
        st.addFloats(LlamaWeights.NORM, new long[] {h}, ones(h));
        st.addFloats(LlamaWeights.LM_HEAD, new long[] {v, h}, random(r, v * h, 0.1f));
        st.write(dir.resolve(SafeTensorsDir.SINGLE));
        return dir;
    }

    private static float[] random(Random r, int n, float scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) r.nextGaussian() * scale;
        return a;
    }

    private static float[] ones(int n) {
        float[] a = new float[n];
        java.util.Arrays.fill(a, 1f);
        return a;
    }
}
