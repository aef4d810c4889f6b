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
}
