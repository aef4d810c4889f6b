package io.lora4j.ops;

import io.lora4j.nativeapi.NativeLibrary;

/**
 * The thread count of the CPU kernels (lora4j's own pool; OpenBLAS runs single-threaded inside it),
 * for code outside {@code ops}/{@code quant}, which does not reach the native bindings itself.
 */
public final class CpuThreads {
    private CpuThreads() {}

    /** Sets the CPU kernels' thread count; {@code n <= 0} leaves the default (the physical cores). */
    public static void set(int n) {
        NativeLibrary.setNumThreads(n);
    }
}
