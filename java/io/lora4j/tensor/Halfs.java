package io.lora4j.tensor;

/** Exact conversions between fp32 and the 16-bit float formats (bit patterns in a short). */
public final class Halfs {
    private Halfs() {}

    /** IEEE binary16 to fp32 (exact). */
    public static float toFloat(short h) {
        int bits = h & 0xffff;
        int sign = (bits & 0x8000) << 16;
        int exp = (bits >>> 10) & 0x1f;
        int mant = bits & 0x3ff;
        if (exp == 0x1f) return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));
        if (exp == 0) {
            // zero or subnormal: mant * 2^-24, exact in fp32
            float v = mant * 0x1p-24f;
            return sign != 0 ? -v : v;
        }
        return Float.intBitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
    }

    /** fp32 to IEEE binary16, round to nearest even. */
    public static short fromFloat(float f) {
        int bits = Float.floatToRawIntBits(f);
        int sign = (bits >>> 16) & 0x8000;
        int abs = bits & 0x7fffffff;
        if (abs > 0x7f800000) return (short) (sign | 0x7e00);            // NaN
        if (abs >= 0x477ff000) return (short) (sign | 0x7c00);           // rounds to >= 65520: Inf
        if (abs < 0x38800000) {                                           // below the normal range
            // subnormal: scale so that one ulp of binary16 (2^-24) is 1, round to nearest even
            float v = Float.intBitsToFloat(abs) * 0x1p24f;
            return (short) (sign | (int) Math.rint(v));
        }
        int e = (abs >>> 23) - 112;
        int m = abs & 0x7fffff;
        int half = (e << 10) | (m >>> 13);
        int rem = m & 0x1fff;
        if (rem > 0x1000 || (rem == 0x1000 && (half & 1) != 0)) half++;
        return (short) (sign | half);
    }

    /** bfloat16 to fp32 (exact). */
    public static float bf16ToFloat(short b) {
        return Float.intBitsToFloat((b & 0xffff) << 16);
    }

    /** fp32 to bfloat16, round to nearest even (NaN stays NaN). */
    public static short floatToBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if ((bits & 0x7fffffff) > 0x7f800000) return (short) ((bits >>> 16) | 0x40);
        int rounding = 0x7fff + ((bits >>> 16) & 1);
        return (short) ((bits + rounding) >>> 16);
    }
}
