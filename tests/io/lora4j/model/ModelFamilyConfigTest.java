package io.lora4j.model;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.io.FormatException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** config.json of every family: the published shapes (examples/configs) and the keys refused by name. */
class ModelFamilyConfigTest {
    @TempDir
    Path dir;

    @Test
    void publishedConfigsReadWithTheirFamilyAndParameterCount() throws Exception {
        LlamaConfig qwen25 = LlamaConfig.read(Path.of("examples/configs/Qwen2.5-7B.json"));
        assertEquals(new Architecture(ModelFamily.QWEN2, true, false, 0), qwen25.architecture(), "use_sliding_window false: no window");
        assertEquals(7_615_616_512L, qwen25.parameterCount()); // Qwen2.5-7B: "7.61B"
        LlamaConfig qwen3 = LlamaConfig.read(Path.of("examples/configs/Qwen3-8B.json"));
        assertEquals(new Architecture(ModelFamily.QWEN3, false, true, 0), qwen3.architecture());
        assertEquals(128, qwen3.headDim());
        assertEquals(8_190_735_360L, qwen3.parameterCount()); // Qwen3-8B: "8.2B"
        LlamaConfig mistral = LlamaConfig.read(Path.of("examples/configs/Mistral-7B-v0.3.json"));
        assertEquals(Architecture.plain(ModelFamily.MISTRAL), mistral.architecture(), "sliding_window null");
        assertEquals(7_248_023_552L, mistral.parameterCount()); // Mistral-7B-v0.3: 7.25B
        LlamaConfig gemma3 = LlamaConfig.read(Path.of("examples/configs/Gemma-3-12B-text.json"));
        Architecture g = gemma3.architecture();
        assertTrue(g.normOffset() && g.sandwichNorms() && g.qkNorm() && g.embeddingScale() && g.activation() == Architecture.Activation.GELU_TANH);
        assertEquals(1024, g.slidingWindow());
        assertTrue(g.sliding(0) && g.sliding(4) && !g.sliding(5) && g.sliding(6) && !g.sliding(47), "5 local layers, then a global one");
        assertEquals(10000.0, g.localRopeTheta());
        assertEquals(8.0, gemma3.ropeScaling().factor());
        assertNull(g.unsupported());
        assertEquals(11_766_034_176L, gemma3.parameterCount()); // Gemma 3 12B: 11.77 B text parameters (+0.4 B vision)
        LlamaConfig gemma2 = LlamaConfig.read(Path.of("examples/configs/Gemma-2-9B.json"));
        Architecture g2 = gemma2.architecture();
        assertTrue(g2.normOffset() && g2.sandwichNorms() && !g2.qkNorm() && g2.embeddingScale());
        assertEquals(50.0, g2.attnSoftcap());
        assertEquals(30.0, g2.finalSoftcap());
        assertEquals(256.0, g2.queryPreAttnScalar());
        assertTrue(g2.sliding(0) && !g2.sliding(1) && g2.sliding(40) && !g2.sliding(41), "every other layer slides");
        assertEquals(4096, g2.window(0));
        assertEquals(0.0, g2.localRopeTheta(), "one RoPE base (rope_theta) on every layer");
        assertEquals(10000.0, gemma2.ropeTheta());
        assertNull(g2.unsupported());
        assertEquals(9_241_705_984L, gemma2.parameterCount()); // Gemma 2 9B: "9.24B"
        LlamaConfig phi3 = LlamaConfig.read(Path.of("examples/configs/Phi-3-mini-4k-instruct.json"));
        assertEquals(3_821_079_552L, phi3.parameterCount()); // Phi-3-mini: 3.8 B
        assertNull(phi3.architecture().unsupported());
        assertTrue(phi3.architecture().fusedProjections());
        assertEquals(2047, phi3.architecture().window(0));
        // PEFT's r = 16 on qkv_proj [9216, 3072], o_proj, gate_up_proj [16384, 3072], down_proj: one A/B per module
        long peft = 32L * 16 * ((3072 + 9216) + (3072 + 3072) + (3072 + 16384) + (8192 + 3072));
        assertEquals(25_165_824L, peft);
        assertEquals(peft, io.lora4j.plan.MemoryPlanner.loraParameterCount(phi3, 16, java.util.EnumSet.allOf(Projection.class)),
                "plan counts the fused modules' LoRA exactly");
        var slots = io.lora4j.lora.LoraAdapter.layout(phi3, io.lora4j.lora.LoraConfig.defaults());
        var last = slots.get(slots.size() - 1);
        assertEquals(peft, last.offsetB() + last.out() * 16, "the adapter's flat layout holds the same count");
    }

    @Test
    void planOnlyFamiliesAreRefusedByTheLoaderNamingWhy() throws Exception {
        // an empty safetensors file: the config is refused before any tensor is read
        Files.write(dir.resolve("model.safetensors"), new byte[] {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'});
        Files.writeString(dir.resolve("config.json"), config("phi3", ",\"partial_rotary_factor\":0.75"));
        FormatException e = assertThrows(FormatException.class, () -> ModelLoader.load(dir));
        assertTrue(e.getMessage().contains("partial_rotary_factor 0.75") && e.getMessage().contains("planned but not loaded"), e.getMessage());
        assertFalse(e.getMessage().contains("\n"), "one line");
    }

    private String error(String json) throws Exception {
        Path f = dir.resolve("config.json");
        Files.writeString(f, json);
        FormatException e = assertThrows(FormatException.class, () -> LlamaConfig.read(f));
        assertFalse(e.getMessage().contains("\n"), "one line: " + e.getMessage());
        assertTrue(e.getMessage().contains(f.toString()), "names the file: " + e.getMessage());
        return e.getMessage();
    }

    private static String config(String type, String extra) {
        return "{\"model_type\":\"" + type + "\",\"hidden_size\":64,\"intermediate_size\":96,\"num_hidden_layers\":2,"
                + "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":80" + extra + "}";
    }

    @Test
    void unknownModelTypeAndUnsupportedKeysAreNamed() throws Exception {
        assertTrue(error(config("falcon", "")).contains("model_type 'falcon' is not supported"));
        assertTrue(error(config("gemma3", "")).contains("gemma3_text"), "the multimodal wrapper points at its text model");
        assertTrue(error(config("gemma3_text", ",\"layer_types\":[\"full_attention\",\"sliding_attention\"]")).contains("layer_types"));
        assertTrue(error(config("qwen2", ",\"use_sliding_window\":true")).contains("use_sliding_window"));
        assertTrue(error(config("qwen3", ",\"attention_bias\":true")).contains("attention_bias"));
        assertTrue(error(config("llama", ",\"mlp_bias\":true")).contains("mlp_bias"));
        assertTrue(error(config("mistral", ",\"sliding_window\":0")).contains("sliding_window"));
        assertTrue(error(config("qwen2", ",\"hidden_act\":\"gelu\"")).contains("hidden_act"));
        assertTrue(error(config("qwen2", ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0}")).contains("rope_type 'yarn'"));
        assertTrue(error(config("llama", ",\"final_logit_softcapping\":30.0")).contains("final_logit_softcapping"));
        assertTrue(error(config("phi3", ",\"rope_scaling\":{\"type\":\"longrope\",\"long_factor\":[1.0],\"short_factor\":[1.0]}"))
                .contains("rope_type 'longrope'"), "Phi-3-128k's longrope is refused naming it");
        assertTrue(error(config("gemma2", ",\"attn_logit_softcapping\":-1.0")).contains("attn_logit_softcapping"));
    }

    @Test
    void mistralWindowIsKeptAndWrittenBack() throws Exception {
        Path f = dir.resolve("config.json");
        Files.writeString(f, config("mistral", ",\"sliding_window\":4096"));
        LlamaConfig c = LlamaConfig.read(f);
        assertEquals(4096, c.architecture().slidingWindow());
        Path g = dir.resolve("again.json");
        c.write(g);
        assertEquals(c, LlamaConfig.read(g));
        for (String type : new String[] {"qwen2", "qwen3"}) {
            Files.writeString(f, config(type, ""));
            LlamaConfig q = LlamaConfig.read(f);
            q.write(g);
            assertEquals(q, LlamaConfig.read(g), type + " round trip");
        }
    }
}
