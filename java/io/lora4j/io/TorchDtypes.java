package io.lora4j.io;

import io.lora4j.tensor.DType;

/** torch dtype names as config.json and bitsandbytes' quant_state write them. */
public final class TorchDtypes {
    private TorchDtypes() {}

    /** The torch dtype name bitsandbytes writes ({@code str(torch.float32).strip("torch.")}). */
    public static String name(DType d) {
        switch (d) {
            case F32: return "float32";
            case BF16: return "bfloat16";
            case F16: return "float16";
            default: throw new IllegalArgumentException("no torch float dtype for " + d);
        }
    }

    /** The dtype of a torch name ("float32", "bfloat16", "float16", with or without "torch."); null if other. */
    public static DType of(String s) {
        if (s == null) return null;
        String n = s.startsWith("torch.") ? s.substring(6) : s;
        switch (n) {
            case "float32": case "float": return DType.F32;
            case "bfloat16": return DType.BF16;
            case "float16": case "half": return DType.F16;
            default: return null;
        }
    }
}
