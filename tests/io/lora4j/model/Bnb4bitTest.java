package io.lora4j.model;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.io.FormatException;
import io.lora4j.io.PythonRepr;
import io.lora4j.io.SafeTensors.StDType;
import io.lora4j.io.SafeTensors;
import io.lora4j.io.SafeTensorsDir;
import io.lora4j.io.SafeTensorsWriter;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

class Bnb4bitTest {
    @TempDir
    Path dir;

    @Test
    void pythonReprOfFloats() {
        assertEquals("0.1", PythonRepr.of(0.1));
        assertEquals("0.10000000149011612", PythonRepr.of(0.1f));
        assertEquals("1e-05", PythonRepr.of(1e-5));
        assertEquals("0.0001", PythonRepr.of(1e-4));
        assertEquals("123.0", PythonRepr.of(123.0));
        assertEquals("1e+16", PythonRepr.of(1e16));
        assertEquals("1234567890123456.0", PythonRepr.of(1234567890123456.0));
        assertEquals("-2.5e-07", PythonRepr.of(-2.5e-7));
        assertEquals("0.0", PythonRepr.of(0.0));
        assertEquals("0.012345678", PythonRepr.of(0.012345678));
        assertEquals("5e-324", PythonRepr.of(Double.MIN_VALUE));
        assertEquals("1.7976931348623157e+308", PythonRepr.of(Double.MAX_VALUE));
    }

    /** Every stored part of {@code name} equals the in-memory quantization {@code q}. */
    private static void assertStoredAs(SafeTensorsDir st, String name, Nf4Weight q) throws IOException {
        long n = q.numel();
        SafeTensors.Entry packed = st.entry(name);
        assertEquals(StDType.U8, packed.dtype());
        assertArrayEquals(new long[] {(n + 1) / 2, 1}, packed.shape(), name);
        assertArrayEquals(q.packed().toBytes(), st.bytes(name), name + " packed");
        SafeTensors.Entry absmax = st.entry(name + ".absmax");
        SafeTensors.Entry qmap = st.entry(name + ".quant_map");
        assertEquals(StDType.F32, qmap.dtype());
        assertArrayEquals(new long[] {16}, qmap.shape());
        assertArrayEquals(Bnb4bit.nf4Code(), st.tensor(name + ".quant_map").toFloats());
        String json = new String(st.bytes(name + ".quant_state.bitsandbytes__nf4"), StandardCharsets.UTF_8);
        long[] s = q.shape();
        String expected = "{\"quant_type\": \"nf4\", \"blocksize\": " + q.blocksize() + ", \"dtype\": \"float32\", \"shape\": ["
                + s[0] + ", " + s[1] + "]";
        if (q.doubleQuant() != null) {
            assertEquals(StDType.U8, absmax.dtype());
            assertArrayEquals(q.doubleQuant().qabsmax().toBytes(), st.bytes(name + ".absmax"), name + " absmax");
            assertEquals(StDType.F32, st.entry(name + ".nested_absmax").dtype());
            assertArrayEquals(q.doubleQuant().nestedAbsmax().toBytes(), st.bytes(name + ".nested_absmax"));
            assertArrayEquals(new long[] {256}, st.entry(name + ".nested_quant_map").shape());
            assertArrayEquals(Bnb4bit.dynamicMap(), st.tensor(name + ".nested_quant_map").toFloats());
            expected += ", \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": "
                    + PythonRepr.of(q.doubleQuant().offset()) + "}";
        } else {
            assertEquals(StDType.F32, absmax.dtype());
            assertArrayEquals(q.absmax().toBytes(), st.bytes(name + ".absmax"));
            assertNull(st.entry(name + ".nested_absmax"));
            assertNull(st.entry(name + ".nested_quant_map"));
            expected += "}";
        }
        assertEquals(expected, json, "quant_state JSON as bitsandbytes writes it");
        JsonObject parsed = JsonParser.parseString(json).getAsJsonObject();
        if (q.doubleQuant() != null) assertEquals(q.doubleQuant().offset(), parsed.get("nested_offset").getAsFloat());
    }

    private static Set<String> expectedKeys(LlamaConfig c, boolean dq) {
        Set<String> keys = new TreeSet<>();
        keys.add(LlamaWeights.EMBED);
        keys.add(LlamaWeights.NORM);
        if (!c.tieWordEmbeddings()) keys.add(LlamaWeights.LM_HEAD);
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            keys.add(LlamaWeights.inputNormName(l));
            keys.add(LlamaWeights.postNormName(l));
            for (Projection p : Projection.values()) {
                String w = p.weightName(l);
                keys.add(w);
                keys.add(w + ".absmax");
                keys.add(w + ".quant_map");
                keys.add(w + ".quant_state.bitsandbytes__nf4");
                if (dq) {
                    keys.add(w + ".nested_absmax");
                    keys.add(w + ".nested_quant_map");
                }
            }
        }
        return keys;
    }

    private void roundTrip(LlamaConfig c, int blocksize, boolean dq) throws IOException {
        Path out = dir.resolve("bnb-" + blocksize + "-" + dq + "-" + c.tieWordEmbeddings());
        List<Nf4Weight> ref = new ArrayList<>();
        try (LlamaWeights w = TestModels.random(c, 5)) {
            Bnb4bitWriter.Summary s = Bnb4bitWriter.write(w, out, new Bnb4bitWriter.Options(blocksize, dq,
                    Bnb4bitWriter.ComputeDtype.BFLOAT16, false, List.of()));
            assertEquals(7 * c.numHiddenLayers(), s.quantized());
            assertEquals(Files.size(out.resolve("model.safetensors")), s.outputBytes());
            for (int l = 0; l < c.numHiddenLayers(); l++)
                for (Projection p : Projection.values())
                    ref.add(Nf4.quantize(Backends.cpu(), ((ProjectionWeight.Dense) w.layer(l).projection(p)).tensor(), blocksize, dq));
            SafeTensorsDir st = SafeTensorsDir.open(out);
            assertEquals(expectedKeys(c, dq), new TreeSet<>(st.names()));
            int i = 0;
            for (int l = 0; l < c.numHiddenLayers(); l++)
                for (Projection p : Projection.values()) assertStoredAs(st, p.weightName(l), ref.get(i++));
            assertArrayEquals(w.embedding().toBytes(), st.bytes(LlamaWeights.EMBED));
            assertEquals(Set.of("format"), st.files().get(0).metadata().keySet());

            JsonObject cfg = JsonParser.parseString(Files.readString(out.resolve("config.json"))).getAsJsonObject();
            JsonObject q = cfg.getAsJsonObject("quantization_config");
            assertEquals("bitsandbytes", q.get("quant_method").getAsString());
            assertTrue(q.get("load_in_4bit").getAsBoolean());
            assertFalse(q.get("load_in_8bit").getAsBoolean());
            assertEquals("nf4", q.get("bnb_4bit_quant_type").getAsString());
            assertEquals(dq, q.get("bnb_4bit_use_double_quant").getAsBoolean());
            assertEquals("bfloat16", q.get("bnb_4bit_compute_dtype").getAsString());
            assertEquals("uint8", q.get("bnb_4bit_quant_storage").getAsString());
            assertTrue(q.get("llm_int8_skip_modules").isJsonNull());
            assertEquals(c.tieWordEmbeddings(), cfg.get("tie_word_embeddings").getAsBoolean());

            try (LlamaWeights back = ModelLoader.load(out)) {
                assertEquals(ModelFormat.HF_BNB4, back.format());
                assertEquals(ModelFormat.HF_BNB4, ModelLoader.detect(out));
                i = 0;
                for (int l = 0; l < c.numHiddenLayers(); l++) {
                    for (Projection p : Projection.values()) {
                        Nf4Weight got = ((ProjectionWeight.Quantized) back.layer(l).projection(p)).weight();
                        Nf4Weight exp = ref.get(i++);
                        assertEquals(blocksize, got.blocksize());
                        assertArrayEquals(exp.shape(), got.shape());
                        assertArrayEquals(exp.packed().toBytes(), got.packed().toBytes());
                        assertArrayEquals(exp.absmax().toBytes(), got.absmax().toBytes(), "absmax (dequantized when double-quantized)");
                        assertEquals(dq, got.doubleQuant() != null);
                        if (dq) assertEquals(exp.doubleQuant().offset(), got.doubleQuant().offset());
                    }
                }
                assertArrayEquals(w.norm().toBytes(), back.norm().toBytes());
                assertArrayEquals(w.lmHead().toBytes(), back.lmHead().toBytes());

                // writing a loaded bnb model again gives the same file
                Path again = dir.resolve(out.getFileName() + "-again");
                Bnb4bitWriter.write(back, again, new Bnb4bitWriter.Options(blocksize, dq, Bnb4bitWriter.ComputeDtype.BFLOAT16, false, List.of()));
                assertArrayEquals(Files.readAllBytes(out.resolve("model.safetensors")), Files.readAllBytes(again.resolve("model.safetensors")));
            }
        } finally {
            ref.forEach(Nf4Weight::close);
        }
    }

    @Test
    void doubleQuantRoundTripTied() throws IOException {
        roundTrip(TestModels.smallConfig(2, true), 64, true);
    }

    @Test
    void plainAbsmaxRoundTripUntied() throws IOException {
        roundTrip(TestModels.smallConfig(4, false), 128, false);
    }

    @Test
    void loadIn4bitEqualsQuantizingTheDenseWeights() throws IOException {
        LlamaConfig c = TestModels.smallConfig(2, true);
        Path out = dir.resolve("hf");
        try (LlamaWeights w = TestModels.random(c, 9)) {
            HfWriter.write(w, out, HfWriter.Options.of(io.lora4j.tensor.DType.F32));
        }
        try (LlamaWeights dense = ModelLoader.load(out); LlamaWeights q = ModelLoader.load(out, ModelLoader.Options.in4bit())) {
            assertTrue(q.quantized());
            for (Projection p : Projection.values()) {
                Tensor src = ((ProjectionWeight.Dense) dense.layer(1).projection(p)).tensor();
                try (Nf4Weight exp = Nf4.quantize(Backends.cpu(), src, 64, true)) {
                    Nf4Weight got = ((ProjectionWeight.Quantized) q.layer(1).projection(p)).weight();
                    assertArrayEquals(exp.packed().toBytes(), got.packed().toBytes());
                    assertArrayEquals(exp.absmax().toBytes(), got.absmax().toBytes());
                }
            }
        }
    }

    @Test
    void corruptQuantStatesAreOneLineErrors() throws IOException {
        LlamaConfig c = TestModels.smallConfig(2, true);
        Path out = dir.resolve("bnb");
        try (LlamaWeights w = TestModels.random(c, 2)) {
            Bnb4bitWriter.write(w, out, Bnb4bitWriter.Options.defaults());
        }
        Path st = out.resolve("model.safetensors");
        String victim = Projection.V.weightName(1);
        // rewrite the file with one tensor replaced
        for (String[] c2 : new String[][] {
            {".quant_state.bitsandbytes__nf4", "{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [32, 64]}", "quant_type 'fp4'"},
            {".quant_state.bitsandbytes__nf4", "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [64, 64]}", "quant_state shape [64, 64]"},
            {".quant_state.bitsandbytes__nf4", "not json", "quant_state is not valid JSON"},
            {".quant_map", null, "quant_map is not the NF4 table"}}) {
            Path copy = dir.resolve("c" + c2[2].hashCode());
            Files.createDirectories(copy);
            Files.copy(out.resolve("config.json"), copy.resolve("config.json"));
            SafeTensors src = SafeTensors.open(st);
            SafeTensorsWriter wr = new SafeTensorsWriter();
            for (SafeTensors.Entry e : src.entries().values()) {
                byte[] b = src.bytes(e.name());
                long[] shape = e.shape();
                if (e.name().equals(victim + c2[0])) {
                    if (c2[1] != null) {
                        b = c2[1].getBytes(StandardCharsets.UTF_8);
                        shape = new long[] {b.length};
                    } else {
                        b[0] ^= 1;
                    }
                }
                wr.add(e.name(), e.dtype(), shape, b);
            }
            wr.write(copy.resolve("model.safetensors"));
            FormatException e = assertThrows(FormatException.class, () -> ModelLoader.load(copy));
            assertTrue(e.getMessage().startsWith(copy.resolve("model.safetensors") + ": tensor '" + victim + "': "), e.getMessage());
            assertTrue(e.getMessage().contains(c2[2]), e.getMessage());
            assertFalse(e.getMessage().contains("\n"));
        }
    }

    @Test
    void stories15MQuantizesAndReloads() throws IOException {
        Path f = TestModels.stories15M();
        assumeTrue(Files.exists(f), TestModels.MISSING);
        Path out = dir.resolve("stories15M-bnb");
        try (LlamaWeights w = ModelLoader.load(f)) {
            Bnb4bitWriter.Summary s = Bnb4bitWriter.write(w, out, Bnb4bitWriter.Options.defaults());
            assertEquals(42, s.quantized());
            try (LlamaWeights back = ModelLoader.load(out)) {
                assertTrue(back.tied());
                assertArrayEquals(w.embedding().toBytes(), back.embedding().toBytes());
                Tensor src = ((ProjectionWeight.Dense) w.layer(3).projection(Projection.Q)).tensor();
                try (Nf4Weight exp = Nf4.quantize(Backends.cpu(), src, 64, true)) {
                    Nf4Weight got = ((ProjectionWeight.Quantized) back.layer(3).projection(Projection.Q)).weight();
                    assertNotNull(got.doubleQuant());
                    assertArrayEquals(exp.packed().toBytes(), got.packed().toBytes());
                    assertArrayEquals(exp.absmax().toBytes(), got.absmax().toBytes());
                }
            }
        }
    }
}
