package io.lora4j.tensor;

/** Where a tensor's storage lives. */
public enum Device {
    CPU, CUDA;

    /** Parses "cpu" or "cuda" (case-insensitive). */
    public static Device parse(String s) {
        switch (s.toLowerCase(java.util.Locale.ROOT)) {
            case "cpu": return CPU;
            case "cuda": case "gpu": return CUDA;
            default: throw new IllegalArgumentException("unknown device '" + s + "' (expected cpu or cuda)");
        }
    }
}
