package io.lora4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.io.FormatException;
import io.lora4j.tensor.DType;
import io.lora4j.train.RunConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * bitsandbytes' {@code bnb_4bit_compute_dtype} as a model setting: the names it takes, the run
 * config key, and a bnb-4bit checkpoint's quantization_config reaching every NF4 projection (an
 * explicit setting wins).
 */
class Nf4ComputeDtypeTest {
    @TempDir
    Path dir;

    @Test
    void namesAsTransformersWritesThem() {
        assertEquals(DType.BF16, Bnb4bit.computeDtype("bfloat16"));
        assertEquals(DType.BF16, Bnb4bit.computeDtype("torch.bfloat16"));
        assertEquals(DType.F32, Bnb4bit.computeDtype("float32"));
        assertEquals(DType.F32, Bnb4bit.computeDtype("float16"), "no fp16 arithmetic on the CPU: exact fp32");
        assertThrows(IllegalArgumentException.class, () -> Bnb4bit.computeDtype("int8"));
    }

    @Test
    void theRunConfigKey() {
        Map<String, Object> v = new HashMap<>(Map.of("model", "m.bin", "dataset", "d.jsonl"));
        assertNull(RunConfig.from(v).computeDtype(), "unset: the checkpoint's, else float32");
        v.put("bnb_4bit_compute_dtype", "bfloat16");
        assertEquals(DType.BF16, RunConfig.from(v).computeDtype());
        v.put("bnb_4bit_compute_dtype", "fp8");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> RunConfig.from(v));
        assertTrue(e.getMessage().contains("bnb_4bit_compute_dtype 'fp8'"), e.getMessage());
    }

    private static List<DType> computeDtypes(LlamaWeights w) {
        return w.layers().stream().flatMap(l -> java.util.Arrays.stream(Projection.values()).map(l::projection))
                .map(p -> ((ProjectionWeight.Quantized) p).weight().computeDtype()).distinct().toList();
    }

    @Test
    void aCheckpointsQuantizationConfigReachesEveryProjection() throws IOException {
        Path out = dir.resolve("bnb");
        try (LlamaWeights w = TestModels.random(TestModels.smallConfig(2, true), 4)) {
            Bnb4bitWriter.write(w, out, new Bnb4bitWriter.Options(64, true, Bnb4bitWriter.ComputeDtype.BFLOAT16, false, List.of()));
        }
        try (LlamaWeights q = ModelLoader.load(out)) {
            assertEquals(List.of(DType.BF16), computeDtypes(q));
        }
        try (LlamaWeights q = ModelLoader.load(out, ModelLoader.Options.defaults().withComputeDtype(DType.F32))) {
            assertEquals(List.of(DType.F32), computeDtypes(q), "an explicit setting wins");
        }
        Path cfg = out.resolve(LlamaConfig.FILE);
        Files.writeString(cfg, Files.readString(cfg).replaceAll("(\"bnb_4bit_compute_dtype\"\\s*:\\s*)\"bfloat16\"", "$1\"int4\""));
        FormatException e = assertThrows(FormatException.class, () -> ModelLoader.load(out));
        assertTrue(e.getMessage().contains("config.json") && e.getMessage().contains("int4"), e.getMessage());
    }
}
