package io.lora4j.tensor;

/**
 * Element types of a {@link Tensor}. {@code NF4} packs two 4-bit codes per byte (the first
 * element in the high nibble), so its byte size is {@code ceil(numel / 2)}.
 */
public enum DType {
    F32(32, "F32"),
    BF16(16, "BF16"),
    F16(16, "F16"),
    NF4(4, "U8"),
    I32(32, "I32"),
    I64(64, "I64"),
    U8(8, "U8");

    /** Bits per element. */
    public final int bits;
    /** The safetensors dtype name this type is stored as. */
    public final String safetensorsName;

    DType(int bits, String safetensorsName) {
        this.bits = bits;
        this.safetensorsName = safetensorsName;
    }

    /** Bytes needed for {@code numel} elements (rounded up for sub-byte types). */
    public long byteSize(long numel) {
        return (Math.multiplyExact(numel, (long) bits) + 7) / 8;
    }

    /** The dtype of a safetensors dtype name, for the element types we read. */
    public static DType fromSafetensors(String name) {
        switch (name) {
            case "F32": return F32;
            case "BF16": return BF16;
            case "F16": return F16;
            case "I32": return I32;
            case "I64": return I64;
            case "U8": return U8;
            default: throw new IllegalArgumentException("unsupported safetensors dtype " + name);
        }
    }
}
