package io.lora4j.model;

import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import io.lora4j.io.FormatException;
import io.lora4j.io.PythonRepr;
import io.lora4j.io.TorchDtypes;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.DType;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * The bitsandbytes 4-bit serialization (transformers' {@code Linear4bit._save_to_state_dict} +
 * bitsandbytes' {@code QuantState.as_dict(packed=True)}): for a quantized weight {@code X.weight}
 * the state dict holds
 * <pre>
 *   X.weight                                   U8 [ceil(n/2), 1]  packed codes, high nibble first
 *   X.weight.absmax                            U8 [nblocks] with double quant, else F32 [nblocks]
 *   X.weight.quant_map                         F32 [16]   the NF4 code table
 *   X.weight.nested_absmax                     F32 [ceil(nblocks/256)]          (double quant)
 *   X.weight.nested_quant_map                  F32 [256]  the signed dynamic map (double quant)
 *   X.weight.quant_state.bitsandbytes__nf4     U8 [len]   UTF-8 of json.dumps({"quant_type",
 *                                              "blocksize", "dtype", "shape", "nested_blocksize",
 *                                              "nested_dtype", "nested_offset"})
 * </pre>
 * The JSON is written byte-for-byte as Python's {@code json.dumps} writes that dict (key order,
 * ", " and ": " separators, {@code repr} floats).
 */
public final class Bnb4bit {
    public static final String QUANT_STATE_SUFFIX = ".quant_state.bitsandbytes__nf4";
    public static final String FP4_STATE_SUFFIX = ".quant_state.bitsandbytes__fp4";
    public static final String ABSMAX = ".absmax";
    public static final String QUANT_MAP = ".quant_map";
    public static final String NESTED_ABSMAX = ".nested_absmax";
    public static final String NESTED_QUANT_MAP = ".nested_quant_map";
    /** The companion suffixes of a quantized weight, in bitsandbytes' as_dict order. */
    public static final String[] COMPANIONS = {ABSMAX, QUANT_MAP, NESTED_ABSMAX, NESTED_QUANT_MAP, QUANT_STATE_SUFFIX};


    private Bnb4bit() {}

    /**
     * The parsed quant_state JSON.
     *
     * @param nestedBlocksize null without double quantization (then nestedDtype, nestedOffset too)
     */
    public record QuantState(String quantType, int blocksize, String dtype, long[] shape, Integer nestedBlocksize,
            String nestedDtype, Double nestedOffset) {
        public boolean doubleQuant() {
            return nestedBlocksize != null;
        }

        @Override
        public long[] shape() {
            return shape.clone();
        }
    }

    /** The 16 NF4 values (the quant_map bitsandbytes stores). */
    /**
     * The forward product's dtype that a config.json's {@code quantization_config} asks for with
     * {@code bnb_4bit_compute_dtype} ({@link #computeDtype(String)}); F32 without one.
     *
     * @throws FormatException naming {@code file} for a value that is not a dtype name
     */
    public static DType computeDtype(JsonObject config, Path file) throws FormatException {
        JsonElement q = config.get("quantization_config");
        if (q == null || !q.isJsonObject()) return DType.F32;
        JsonElement v = q.getAsJsonObject().get("bnb_4bit_compute_dtype");
        if (v == null || v.isJsonNull()) return DType.F32;
        try {
            if (!v.isJsonPrimitive()) throw new IllegalArgumentException("bnb_4bit_compute_dtype must be a string, got " + v);
            return computeDtype(v.getAsString());
        } catch (IllegalArgumentException e) {
            throw new FormatException(file, "quantization_config: " + e.getMessage());
        }
    }

    /**
     * bitsandbytes' {@code bnb_4bit_compute_dtype} as lora4j computes it: "bfloat16" (or
     * "torch.bfloat16") is BF16; "float32" and "float16" (lora4j has no fp16 arithmetic on the CPU)
     * are F32.
     *
     * @throws IllegalArgumentException for another name
     */
    public static DType computeDtype(String name) {
        String n = name.startsWith("torch.") ? name.substring("torch.".length()) : name;
        return switch (n) {
            case "bfloat16", "bf16" -> DType.BF16;
            case "float32", "float", "fp32", "float16", "half", "fp16" -> DType.F32;
            default -> throw new IllegalArgumentException("bnb_4bit_compute_dtype '" + name + "' is not float32, bfloat16 or float16");
        };
    }

    public static float[] nf4Code() {
        return Nf4.code();
    }

    /** bitsandbytes' signed 8-bit dynamic map, 256 ascending fp32 values (the nested_quant_map). */
    public static float[] dynamicMap() {
        return Nf4.dynamicMap();
    }

    /** The quant_state JSON bytes of {@code w}, exactly as bitsandbytes/json.dumps write them. */
    public static byte[] quantStateJson(Nf4Weight w) {
        StringBuilder sb = new StringBuilder();
        sb.append("{\"quant_type\": \"nf4\", \"blocksize\": ").append(w.blocksize())
                .append(", \"dtype\": \"").append(TorchDtypes.name(w.sourceDtype())).append("\", \"shape\": [");
        long[] shape = w.shape();
        for (int i = 0; i < shape.length; i++) sb.append(i == 0 ? "" : ", ").append(shape[i]);
        sb.append(']');
        if (w.doubleQuant() != null) {
            sb.append(", \"nested_blocksize\": ").append(Nf4Weight.NESTED_BLOCKSIZE)
                    .append(", \"nested_dtype\": \"float32\", \"nested_offset\": ")
                    .append(PythonRepr.of(w.doubleQuant().offset()));
        }
        sb.append('}');
        return sb.toString().getBytes(StandardCharsets.UTF_8);
    }

    /** Parses a quant_state JSON; errors name {@code file} and {@code tensor}. */
    public static QuantState parseQuantState(byte[] bytes, Path file, String tensor) throws FormatException {
        String where = "tensor '" + tensor + "': ";
        JsonObject o;
        try {
            JsonElement e = JsonParser.parseString(new String(bytes, StandardCharsets.UTF_8));
            if (!e.isJsonObject()) throw new FormatException(file, where + "quant_state is not a JSON object");
            o = e.getAsJsonObject();
        } catch (JsonParseException | IllegalStateException e) {
            throw new FormatException(file, where + "quant_state is not valid JSON");
        }
        try {
            String qt = o.get("quant_type").getAsString();
            int bs = o.get("blocksize").getAsInt();
            String dtype = o.get("dtype").getAsString();
            long[] shape = new long[o.get("shape").getAsJsonArray().size()];
            for (int i = 0; i < shape.length; i++) shape[i] = o.get("shape").getAsJsonArray().get(i).getAsLong();
            JsonElement nb = o.get("nested_blocksize");
            if (nb == null || nb instanceof JsonNull) return new QuantState(qt, bs, dtype, shape, null, null, null);
            return new QuantState(qt, bs, dtype, shape, nb.getAsInt(), o.get("nested_dtype").getAsString(),
                    o.get("nested_offset").getAsDouble());
        } catch (RuntimeException e) {
            throw new FormatException(file, where + "quant_state lacks or mistypes a field (quant_type, blocksize, dtype, shape, nested_*): "
                    + new String(bytes, StandardCharsets.UTF_8));
        }
    }

    /** True when {@code a} and {@code b} hold the same fp32 bit patterns. */
    static boolean sameFloats(float[] a, float[] b) {
        if (a.length != b.length) return false;
        for (int i = 0; i < a.length; i++) if (Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(b[i])) return false;
        return true;
    }

    static String describe(float[] a) {
        return a.length <= 4 ? Arrays.toString(a) : "[" + a[0] + ", " + a[1] + ", ... " + a[a.length - 1] + "] (" + a.length + " values)";
    }
}
