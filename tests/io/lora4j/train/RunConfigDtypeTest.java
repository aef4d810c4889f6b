package io.lora4j.train;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.tensor.DType;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The {@code dtype} key (alias {@code torch_dtype}): weight storage as transformers names it. */
class RunConfigDtypeTest {
    private static RunConfig with(Map<String, Object> extra) {
        Map<String, Object> v = new HashMap<>(Map.of("model", "m.bin", "dataset", "d.jsonl"));
        v.putAll(extra);
        return RunConfig.from(v);
    }

    @Test
    void dtypeAndItsAlias() {
        assertNull(with(Map.of()).weightDtype(), "auto by default: bf16 on CUDA, fp32 on the CPU");
        assertNull(with(Map.of("dtype", "auto")).weightDtype());
        assertEquals(DType.BF16, with(Map.of("dtype", "bfloat16")).weightDtype());
        assertEquals(DType.BF16, with(Map.of("torch_dtype", "bfloat16")).weightDtype());
        assertEquals(DType.F32, with(Map.of("torch_dtype", "float32", "dtype", "float32")).weightDtype());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> with(Map.of("dtype", "bfloat16", "torch_dtype", "float32")));
        assertTrue(e.getMessage().contains("disagree"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> with(Map.of("dtype", "float16", "r", 0)));
        assertTrue(e.getMessage().contains("float16") && e.getMessage().contains("r "), "every bad field in one message: " + e.getMessage());
    }

    /** TRL's {@code bf16}: true, false or auto (null: mixed precision on CUDA, fp32 on the CPU). */
    @Test
    void bf16KeyIsTrlsMixedPrecision() {
        assertNull(with(Map.of()).bf16(), "auto by default");
        assertNull(with(Map.of("bf16", "auto")).bf16());
        assertEquals(Boolean.TRUE, with(Map.of("bf16", true)).bf16());
        assertEquals(Boolean.FALSE, with(Map.of("bf16", "false")).bf16());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> with(Map.of("bf16", "yes please", "r", 0)));
        assertTrue(e.getMessage().contains("bf16 must be true, false or auto") && e.getMessage().contains("r "), e.getMessage());
        assertTrue(LoraTrainingModel.defaultBf16(io.lora4j.tensor.Device.CUDA) && !LoraTrainingModel.defaultBf16(io.lora4j.tensor.Device.CPU));
    }
}
