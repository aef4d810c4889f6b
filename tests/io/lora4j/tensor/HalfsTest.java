package io.lora4j.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class HalfsTest {
    @Test
    void everyHalfRoundTripsThroughFloat() {
        for (int h = 0; h < 0x10000; h++) {
            float f = Halfs.toFloat((short) h);
            if (Float.isNaN(f)) continue;
            assertEquals((short) h, Halfs.fromFloat(f), "half 0x" + Integer.toHexString(h));
        }
    }

    @Test
    void halfConversionRoundsToNearestEven() {
        assertEquals(1.0f, Halfs.toFloat(Halfs.fromFloat(1.0f + 0x1p-11f)));            // tie -> even (down)
        assertEquals(1.0f + 0x1p-9f, Halfs.toFloat(Halfs.fromFloat(1.0f + 3 * 0x1p-11f))); // tie -> even (up)
        assertEquals(65504f, Halfs.toFloat(Halfs.fromFloat(65519f)));
        assertEquals(Float.POSITIVE_INFINITY, Halfs.toFloat(Halfs.fromFloat(65520f)));
        assertEquals(0x1p-24f, Halfs.toFloat(Halfs.fromFloat(0x1p-24f)));
    }

    @Test
    void bf16RoundsToNearestEven() {
        assertEquals(1.0f, Halfs.bf16ToFloat(Halfs.floatToBf16(1.0f + 0x1p-8f)));
        assertEquals(1.0f + 0x1p-6f, Halfs.bf16ToFloat(Halfs.floatToBf16(1.0f + 3 * 0x1p-8f)));
        assertEquals(-2.5f, Halfs.bf16ToFloat(Halfs.floatToBf16(-2.5f)));
    }
}
