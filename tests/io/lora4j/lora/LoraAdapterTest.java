package io.lora4j.lora;

import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.io.FormatException;
import io.lora4j.io.SafeTensors;
import io.lora4j.io.SafeTensorsWriter;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaModel;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.Projection;
import io.lora4j.model.TestModels;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Halfs;
import io.lora4j.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** LoraConfig validation, PEFT adapter I/O, merging for inference. */
class LoraAdapterTest {
    private static final Backend CPU = Backends.cpu();

    private static LlamaConfig small() {
        return TestModels.smallConfig(2, false);
    }

    @Test
    void configCollectsEveryBadField() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new LoraConfig(0, -1, 1.0, LoraConfig.Bias.NONE,
                EnumSet.of(Projection.Q), false, LoraConfig.Init.KAIMING, 0, 1));
        for (String f : new String[] {"r must", "lora_alpha", "lora_dropout", "loftq_iter"}) assertTrue(e.getMessage().contains(f), e.getMessage());
        IllegalArgumentException t = assertThrows(IllegalArgumentException.class, () -> LoraConfig.parseTargets(List.of("q_proj", "qkv", "w1")));
        assertTrue(t.getMessage().contains("'qkv'") && t.getMessage().contains("'w1'") && t.getMessage().contains("gate_proj"), t.getMessage());
        assertEquals(EnumSet.allOf(Projection.class), LoraConfig.parseTargets(List.of("all-linear")));
        LoraConfig d = LoraConfig.defaults();
        assertEquals(16, d.r());
        assertEquals(1.0, d.scaling());
        assertEquals(3407, d.randomState());
        assertEquals(LoraConfig.Bias.ALL, LoraConfig.Bias.parse("all"));
        assertThrows(IllegalArgumentException.class, () -> LoraConfig.Bias.parse("some"));
    }

    @Test
    void savesPeftLayoutAndReadsItBack(@TempDir Path dir) throws Exception {
        LoraConfig lc = LoraConfig.defaults().withRank(4).withAlpha(8).withTargets(EnumSet.of(Projection.Q, Projection.V, Projection.DOWN));
        try (LoraAdapter a = LoraAdapter.create(CPU, small(), lc)) {
            float[] v = a.toFloats();
            for (int i = 0; i < v.length; i++) v[i] += 0.001f * i; // nonzero B too
            try (LoraAdapter b = LoraAdapter.of(CPU, small(), lc, v)) {
                Path out = dir.resolve("adapter");
                b.save(out, "tiny-model", false);
                JsonObject cfg = JsonParser.parseString(Files.readString(out.resolve(LoraAdapter.CONFIG_FILE))).getAsJsonObject();
                assertEquals("LORA", cfg.get("peft_type").getAsString());
                assertEquals("CAUSAL_LM", cfg.get("task_type").getAsString());
                assertEquals(4, cfg.get("r").getAsInt());
                assertEquals(8, cfg.get("lora_alpha").getAsInt());
                assertEquals("[\"down_proj\",\"q_proj\",\"v_proj\"]", cfg.get("target_modules").toString());
                assertTrue(cfg.get("init_lora_weights").getAsBoolean());
                assertTrue(cfg.get("modules_to_save").isJsonNull());
                assertEquals("tiny-model", cfg.get("base_model_name_or_path").getAsString());
                SafeTensors st = SafeTensors.open(out.resolve(LoraAdapter.WEIGHTS_FILE));
                assertEquals(2 * 3 * 2, st.entries().size());
                SafeTensors.Entry e = st.entry("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight");
                assertArrayEquals(new long[] {4, 96}, e.shape());
                assertEquals(SafeTensors.StDType.F32, e.dtype());
                assertArrayEquals(new long[] {64, 4}, st.entry("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight").shape());
                assertThrows(FormatException.class, () -> b.save(out, "x", false), "non-empty output without overwrite");
                try (LoraAdapter back = LoraAdapter.load(out, CPU, small())) {
                    assertArrayEquals(v, back.toFloats());
                    assertEquals(lc.targetModules(), back.config().targetModules());
                    assertEquals(8.0, back.config().loraAlpha());
                }
            }
        }
    }

    @Test
    void readsPeftNamedHalfPrecisionTensorsAndRejectsWrongShapes(@TempDir Path dir) throws Exception {
        LoraConfig lc = LoraConfig.defaults().withRank(2).withTargets(EnumSet.of(Projection.O));
        LlamaConfig c = small();
        Path ok = dir.resolve("peft");
        Files.createDirectories(ok);
        Files.writeString(ok.resolve(LoraAdapter.CONFIG_FILE), LoraAdapter.configJson(lc, "x").replace("\"r\": 2", "\"r\": 2, \"future_key\": 1"));
        SafeTensorsWriter w = new SafeTensorsWriter();
        Random r = new Random(1);
        for (int l = 0; l < 2; l++) {
            String base = "base_model.model.model.layers." + l + ".self_attn.o_proj";
            w.add(base + ".lora_A.default.weight", DType.F16, new long[] {2, 64}, halves(r, 128));
            w.add(base + ".lora_B.default.weight", DType.F16, new long[] {64, 2}, halves(r, 128));
        }
        w.write(ok.resolve(LoraAdapter.WEIGHTS_FILE));
        try (LoraAdapter a = LoraAdapter.load(ok, CPU, c)) {
            assertEquals(2 * (2 * 64 + 64 * 2), a.parameterCount());
        }
        Path bad = dir.resolve("bad");
        Files.createDirectories(bad);
        Files.writeString(bad.resolve(LoraAdapter.CONFIG_FILE), LoraAdapter.configJson(lc.withRank(3), "x"));
        Files.copy(ok.resolve(LoraAdapter.WEIGHTS_FILE), bad.resolve(LoraAdapter.WEIGHTS_FILE));
        FormatException e = assertThrows(FormatException.class, () -> LoraAdapter.load(bad, CPU, c));
        assertTrue(e.getMessage().contains("lora_A") && e.getMessage().contains("[2, 64]") && e.getMessage().contains("r=3"), e.getMessage());
    }

    private static byte[] halves(Random r, int n) {
        ByteBuffer b = ByteBuffer.allocate(2 * n).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < n; i++) b.putShort(Halfs.fromFloat((float) r.nextGaussian() * 0.1f));
        return b.array();
    }

    @Test
    void mergedModelEqualsBaseWhenBIsZeroAndChangesOtherwise() {
        LoraConfig lc = LoraConfig.defaults().withRank(4);
        try (LlamaWeights w = TestModels.random(small(), 3); LoraAdapter fresh = LoraAdapter.create(CPU, small(), lc)) {
            int[][] ids = {{1, 5, 9, 12, 30}};
            float[] base, merged, trained;
            try (LlamaModel m = LlamaModel.create(CPU, w); Tensor lg = m.forward(ids)) {
                base = lg.toFloats();
            }
            try (AdaptedModel am = AdaptedModel.merge(CPU, w, fresh, 1.0); LlamaModel m = LlamaModel.create(CPU, am.weights()); Tensor lg = m.forward(ids)) {
                merged = lg.toFloats();
            }
            assertArrayEquals(base, merged, "B = 0: the adapted model is the base");
            float[] v = fresh.toFloats();
            for (int i = 0; i < v.length; i++) v[i] += 0.01f;
            try (LoraAdapter t = LoraAdapter.of(CPU, small(), lc, v); AdaptedModel am = AdaptedModel.merge(CPU, w, t, 1.0);
                 LlamaModel m = LlamaModel.create(CPU, am.weights()); Tensor lg = m.forward(ids)) {
                trained = lg.toFloats();
            }
            double d = 0;
            for (int i = 0; i < base.length; i++) d = Math.max(d, Math.abs(base[i] - trained[i]));
            assertTrue(d > 1e-4, "a nonzero adapter must change the logits, max diff " + d);
        }
    }
}
