package io.lora4j.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.io.SafeTensors;
import io.lora4j.io.SafeTensorsWriter;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.Bnb4bit;
import io.lora4j.model.Bnb4bitWriter;
import io.lora4j.model.Llama2c;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.model.TestModels;
import io.lora4j.ops.Backends;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;

/**
 * Mutation fuzzing of the model readers: llama2.c headers (the real stories15M header over a
 * truncated prefix, and whole small synthetic checkpoints loaded end to end), HF config.json,
 * bnb-4bit checkpoints with mutated quant_state JSON and companion tensors, and PEFT adapter
 * directories (adapter_config.json and the adapter safetensors).
 */
class ModelFilesFuzzTest {
    private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().serializeSpecialFloatingPointValues().create();
    private static Path dir;
    private static byte[] smallBin;
    private static byte[] realPrefix; // stories15M's first 64 KiB, when the asset is present
    private static JsonObject config;
    private static Path bnbDir;
    private static Map<String, byte[]> bnbTensors;
    private static Map<String, SafeTensors.Entry> bnbEntries;
    private static Path adapterDir;
    private static JsonObject adapterConfig;
    private static byte[] adapterWeights;
    private static LlamaConfig small;

    @BeforeContainer
    static void seeds() throws IOException {
        dir = Files.createTempDirectory("fuzz-model");
        Path bin = dir.resolve("small.bin");
        TestModels.writeLlama2c(bin, 16, 24, 1, 2, 1, 20, 8, false, 3407);
        smallBin = Files.readAllBytes(bin);
        ModelLoader.load(bin).close();
        Path real = TestModels.cache().resolve("stories15M.bin");
        if (Files.isRegularFile(real)) {
            try (InputStream in = Files.newInputStream(real)) {
                realPrefix = in.readNBytes(64 * 1024);
            }
        }
        small = TestModels.smallConfig(2, false);
        Path cfg = dir.resolve("config.json");
        small.write(cfg);
        config = JsonParser.parseString(Files.readString(cfg)).getAsJsonObject();
        assertEquals(small.hiddenSize(), LlamaConfig.read(cfg).hiddenSize());

        bnbDir = dir.resolve("bnb");
        try (LlamaWeights w = TestModels.random(small, 3407)) {
            Bnb4bitWriter.write(w, bnbDir, Bnb4bitWriter.Options.defaults());
        }
        SafeTensors st = SafeTensors.open(bnbDir.resolve("model.safetensors"));
        bnbEntries = st.entries();
        bnbTensors = new java.util.LinkedHashMap<>();
        for (String n : st.entries().keySet()) bnbTensors.put(n, st.bytes(n));
        ModelLoader.load(bnbDir).close();

        adapterDir = dir.resolve("adapter");
        LoraConfig lc = LoraConfig.defaults().withRank(2).withAlpha(4);
        try (LoraAdapter a = LoraAdapter.create(Backends.cpu(), small, lc)) {
            a.save(adapterDir, "fuzz", false);
        }
        adapterConfig = JsonParser.parseString(Files.readString(adapterDir.resolve(LoraAdapter.CONFIG_FILE))).getAsJsonObject();
        adapterWeights = Files.readAllBytes(adapterDir.resolve(LoraAdapter.WEIGHTS_FILE));
        LoraAdapter.load(adapterDir, Backends.cpu(), small).close();
    }

    @AfterContainer
    static void report() throws IOException {
        System.out.print(Fuzz.summary("model") + Fuzz.summary("adapter"));
    }

    @Property(tries = 600, seed = "3407")
    void llama2cSmallCheckpoint(@ForAll long s) throws IOException {
        Random r = new Random(s);
        for (int rep = 0; rep < Fuzz.REPEAT; rep++) {
            byte[] b = r.nextBoolean()
                    ? Fuzz.withSize(smallBin, 4 * r.nextInt(7), Fuzz.HOSTILE[r.nextInt(Fuzz.HOSTILE.length)], false)
                    : Fuzz.mutate(smallBin, r, 0);
            if (r.nextInt(4) == 0) b = Arrays.copyOf(b, r.nextInt(b.length + 1));
            Path f = Files.write(dir.resolve("m.bin"), b);
            Fuzz.check("model/llama2c", "seed " + s, () -> {
                try (LlamaWeights w = ModelLoader.load(f)) {
                    return w.config().hiddenSize();
                }
            });
        }
    }

    @Property(tries = 300, seed = "3407")
    void llama2cRealHeader(@ForAll long s) throws IOException {
        org.junit.jupiter.api.Assumptions.assumeTrue(realPrefix != null, TestModels.MISSING);
        Random r = new Random(s);
        byte[] b = Fuzz.mutate(Arrays.copyOf(realPrefix, Llama2c.HEADER_BYTES + 4 * r.nextInt(64)), r, 0);
        if (r.nextBoolean() && b.length >= Llama2c.HEADER_BYTES) b = Fuzz.withSize(b, 4 * r.nextInt(7), Fuzz.HOSTILE[r.nextInt(Fuzz.HOSTILE.length)], false);
        Path f = Files.write(dir.resolve("real-prefix.bin"), b);
        Fuzz.check("model/llama2c-header", "seed " + s, () -> Llama2c.readHeader(f));
    }

    @Property(tries = 1000, seed = "3407")
    void configJson(@ForAll long s) throws IOException {
        Random r = new Random(s);
        for (int rep = 0; rep < Fuzz.REPEAT; rep++) {
            JsonElement m = Fuzz.mutateJson(config, r);
            byte[] text = GSON.toJson(m).getBytes(StandardCharsets.UTF_8);
            if (r.nextInt(5) == 0) text = Fuzz.mutate(text, r, 0);
            Path f = Files.write(dir.resolve("config.json"), text);
            Fuzz.check("model/config.json", "seed " + s + ": " + SafeTensorsFuzzTest.abbreviate(m), () -> {
                LlamaConfig c = LlamaConfig.read(f);
                // a config that loads must describe a model whose sizes can be computed
                Math.multiplyExact(Math.multiplyExact((long) c.vocabSize(), c.hiddenSize()), 1L);
                return c;
            });
        }
    }

    @Property(tries = 400, seed = "3407")
    void bnb4bitQuantState(@ForAll long s) throws IOException {
        Random r = new Random(s);
        List<String> states = bnbTensors.keySet().stream().filter(n -> n.endsWith(Bnb4bit.QUANT_STATE_SUFFIX)).toList();
        List<String> all = List.copyOf(bnbTensors.keySet());
        Path d = Files.createDirectories(dir.resolve("bnb-m"));
        Files.copy(bnbDir.resolve("config.json"), d.resolve("config.json"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        SafeTensorsWriter w = new SafeTensorsWriter();
        String victim = r.nextBoolean() ? states.get(r.nextInt(states.size())) : all.get(r.nextInt(all.size()));
        String what = victim;
        for (Map.Entry<String, byte[]> e : bnbTensors.entrySet()) {
            SafeTensors.Entry en = bnbEntries.get(e.getKey());
            byte[] bytes = e.getValue();
            long[] shape = en.shape();
            SafeTensors.StDType dt = en.dtype();
            if (e.getKey().equals(victim)) {
                if (victim.endsWith(Bnb4bit.QUANT_STATE_SUFFIX) && r.nextInt(4) != 0) {
                    JsonElement m = Fuzz.mutateJson(JsonParser.parseString(new String(bytes, StandardCharsets.UTF_8)), r);
                    bytes = GSON.toJson(m).getBytes(StandardCharsets.UTF_8);
                    what += " = " + SafeTensorsFuzzTest.abbreviate(m);
                } else {
                    bytes = Fuzz.mutate(bytes, r, 0);
                    what += " (bytes)";
                }
                switch (r.nextInt(4)) {
                    case 0: shape = new long[] {bytes.length}; dt = SafeTensors.StDType.U8; break;
                    case 1: if (bytes.length % 4 == 0) { shape = new long[] {bytes.length / 4}; dt = SafeTensors.StDType.F32; } else continue; break;
                    case 2: if (bytes.length % 2 == 0) { shape = new long[] {bytes.length / 2, 1}; dt = SafeTensors.StDType.U8; shape = new long[] {bytes.length}; } break;
                    default: if (r.nextBoolean()) continue; // drop the tensor
                        shape = new long[] {bytes.length}; dt = SafeTensors.StDType.U8;
                }
                if (Arrays.stream(shape).reduce(1, (a, b) -> a * b) * dt.size != bytes.length) continue;
            }
            w.add(e.getKey(), dt, shape, bytes);
        }
        w.write(d.resolve("model.safetensors"));
        Fuzz.check("model/bnb-4bit", "seed " + s + ": " + what, () -> {
            try (LlamaWeights lw = ModelLoader.load(d)) {
                return lw.config();
            }
        });
    }

    @Property(tries = 600, seed = "3407")
    void adapterDirectory(@ForAll long s) throws IOException {
        Random r = new Random(s);
        Path d = Files.createDirectories(dir.resolve("adapter-m"));
        JsonElement cfg = r.nextInt(3) != 0 ? Fuzz.mutateJson(adapterConfig, r) : adapterConfig;
        byte[] weights = cfg == adapterConfig ? Fuzz.mutate(adapterWeights, r, 0) : adapterWeights;
        Files.write(d.resolve(LoraAdapter.CONFIG_FILE), GSON.toJson(cfg).getBytes(StandardCharsets.UTF_8));
        Files.write(d.resolve(LoraAdapter.WEIGHTS_FILE), weights);
        Fuzz.check("adapter/peft", "seed " + s + ": " + SafeTensorsFuzzTest.abbreviate(cfg), () -> {
            try (LoraAdapter a = LoraAdapter.load(d, Backends.cpu(), small)) {
                return a.config();
            }
        });
    }
}
