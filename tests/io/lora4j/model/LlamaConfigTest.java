package io.lora4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.io.FormatException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LlamaConfigTest {
    @TempDir
    Path dir;

    /** Llama-3.2-1B's config.json (the fields that matter). */
    static final String LLAMA32 = "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,\"bos_token_id\":128000,"
            + "\"eos_token_id\":[128001,128008,128009],\"head_dim\":64,\"hidden_act\":\"silu\",\"hidden_size\":2048,"
            + "\"intermediate_size\":8192,\"max_position_embeddings\":131072,\"mlp_bias\":false,\"model_type\":\"llama\","
            + "\"num_attention_heads\":32,\"num_hidden_layers\":16,\"num_key_value_heads\":8,\"rms_norm_eps\":1e-05,"
            + "\"rope_scaling\":{\"factor\":32.0,\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
            + "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},\"rope_theta\":500000.0,"
            + "\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\",\"vocab_size\":128256}";

    @Test
    void readsLlama32AndRoundTrips() throws IOException {
        Path f = dir.resolve("config.json");
        Files.writeString(f, LLAMA32);
        LlamaConfig c = LlamaConfig.read(f);
        assertEquals(2048, c.hiddenSize());
        assertEquals(8, c.numKeyValueHeads());
        assertEquals(64, c.headDim());
        assertEquals(512, c.kvDim());
        assertEquals(500000.0, c.ropeTheta());
        assertEquals("llama3", c.ropeScaling().ropeType());
        assertEquals(32.0, c.ropeScaling().factor());
        assertEquals(8192, c.ropeScaling().originalMaxPositionEmbeddings());
        assertEquals(List.of(128001, 128008, 128009), c.eosTokenIds());
        assertEquals(128000, c.bosTokenId());
        assertTrue(c.tieWordEmbeddings());
        assertEquals("bfloat16", c.torchDtype());
        assertEquals(1_235_814_400L, c.parameterCount()); // Llama-3.2-1B: 1.24 B parameters
        Path g = dir.resolve("again.json");
        c.write(g);
        assertEquals(c, LlamaConfig.read(g));
        String text = Files.readString(g);
        assertTrue(text.contains("\"rms_norm_eps\": 1e-05,") && text.contains("\"rope_theta\": 500000.0,")
                && text.contains("\"factor\": 32.0,"), "Python-style floats: " + text);
    }

    @Test
    void defaultsAndRopeParameters() throws FormatException {
        JsonObject o = JsonParser.parseString("{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,"
                + "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,"
                + "\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":1234.0}}").getAsJsonObject();
        LlamaConfig c = LlamaConfig.fromJson(o, Path.of("config.json"));
        assertEquals(4, c.numKeyValueHeads());
        assertEquals(16, c.headDim());
        assertEquals(1234.0, c.ropeTheta());
        assertNull(c.ropeScaling());
        assertEquals(1e-6, c.rmsNormEps());
        assertFalse(c.tieWordEmbeddings());
        assertEquals(1, c.bosTokenId());
        assertEquals(List.of(2), c.eosTokenIds());
    }

    @Test
    void everyBadFieldInOneMessage() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new LlamaConfig("llama", 0, 96, 2, 6, 4, 15,
                -1, 10000, null, 80, 128, true, 99, List.of(2), "int8"));
        String m = e.getMessage();
        for (String s : new String[] {"hidden_size", "not a multiple of num_key_value_heads", "head_dim", "rms_norm_eps", "bos_token_id", "torch_dtype"})
            assertTrue(m.contains(s), s + " in: " + m);
        assertFalse(m.contains("\n"));
    }

    @Test
    void rejectsOtherModelsAndMissingFields() throws IOException {
        Path f = dir.resolve("config.json");
        Files.writeString(f, "{\"model_type\":\"gpt2\",\"n_embd\":768}");
        FormatException e = assertThrows(FormatException.class, () -> LlamaConfig.read(f));
        assertTrue(e.getMessage().startsWith(f + ": ") && e.getMessage().contains("gpt2"), e.getMessage());
        Files.writeString(f, "{\"model_type\":\"llama\",\"hidden_size\":\"big\",\"num_attention_heads\":4}");
        e = assertThrows(FormatException.class, () -> LlamaConfig.read(f));
        for (String s : new String[] {"hidden_size must be an integer", "missing intermediate_size", "missing num_hidden_layers", "missing vocab_size"})
            assertTrue(e.getMessage().contains(s), s + " in: " + e.getMessage());
        Files.writeString(f, "{not json");
        assertTrue(assertThrows(FormatException.class, () -> LlamaConfig.read(f)).getMessage().contains("not valid JSON"));
    }
}
