package io.lora4j.ops;

import io.lora4j.tensor.DType;

/** The LORA4J_DTYPE_* codes of native/include/lora4j/nf4.h. */
final class NativeDTypes {
    private NativeDTypes() {}

    static int code(DType d) {
        switch (d) {
            case F32: return 0;
            case BF16: return 1;
            case F16: return 2;
            default: throw new IllegalArgumentException("no native source dtype for " + d);
        }
    }
}
