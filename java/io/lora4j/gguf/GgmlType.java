package io.lora4j.gguf;

/**
 * The ggml tensor types lora4j reads and writes, with ggml's numeric ids (ggml.h {@code enum ggml_type})
 * and block layouts (ggml-common.h). A row of {@code n} elements takes {@code n / blockSize} blocks
 * of {@code blockBytes} bytes; {@code n} must be a multiple of the block size.
 */
public enum GgmlType {
    /** fp32, 4 bytes an element. */
    F32(0, 1, 4),
    /** IEEE binary16. */
    F16(1, 1, 2),
    /** 32 elements: f16 scale d, 16 bytes of 4-bit codes (element j low nibble, j+16 high); x = d·(q - 8). */
    Q4_0(2, 32, 18),
    /** 32 elements: f16 d, u32 of fifth bits qh, 16 bytes of low nibbles; x = d·(q - 16). */
    Q5_0(6, 32, 22),
    /** 32 elements: f16 d, 32 int8; x = d·q. */
    Q8_0(8, 32, 34),
    /** 256 elements: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins (8 sub-blocks of 32), 128 bytes of nibbles. */
    Q4_K(12, 256, 144),
    /** 256 elements: 128 bytes low nibbles, 64 bytes high 2 bits, 16 int8 scales (sub-blocks of 16), f16 d. */
    Q6_K(14, 256, 210),
    /** bfloat16. */
    BF16(30, 1, 2);

    /** The id in ggml.h and in a GGUF tensor info. */
    public final int id;
    /** Elements per block. */
    public final int blockSize;
    /** Bytes per block. */
    public final int blockBytes;

    GgmlType(int id, int blockSize, int blockBytes) {
        this.id = id;
        this.blockSize = blockSize;
        this.blockBytes = blockBytes;
    }

    /** Whether the type is block-quantized (not a plain float type). */
    public boolean quantized() {
        return blockSize > 1;
    }

    /**
     * Bytes of a row of {@code n} elements.
     *
     * @throws IllegalArgumentException when n is not a multiple of the block size
     */
    public long rowBytes(long n) {
        if (n % blockSize != 0) throw new IllegalArgumentException(name() + " rows need a multiple of " + blockSize + " elements, got " + n);
        return n / blockSize * blockBytes;
    }

    /** The type with ggml id {@code id}, or null when lora4j does not handle it. */
    public static GgmlType ofId(long id) {
        for (GgmlType t : values()) if (t.id == id) return t;
        return null;
    }

    /** The type's name as ggml writes it (lower case, e.g. "q4_K"). */
    public String ggmlName() {
        switch (this) {
            case Q4_K: return "q4_K";
            case Q6_K: return "q6_K";
            default: return name().toLowerCase(java.util.Locale.ROOT);
        }
    }
}
