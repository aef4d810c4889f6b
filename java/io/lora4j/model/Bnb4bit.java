package io.lora4j.model;

import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import io.lora4j.io.FormatException;
import io.lora4j.nativeapi.Lora4jNative;
import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.DType;
import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import org.bytedeco.javacpp.FloatPointer;

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

    private static float[] code;
    private static float[] dynamicMap;

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
    public static synchronized float[] nf4Code() {
        if (code == null) {
            NativeLibrary.load();
            try (FloatPointer p = new FloatPointer(16)) {
                Lora4jNative.lora4j_nf4_code(p);
                code = new float[16];
                p.get(code);
            }
        }
        return code.clone();
    }

    /** bitsandbytes' signed 8-bit dynamic map, 256 ascending fp32 values (the nested_quant_map). */
    public static synchronized float[] dynamicMap() {
        if (dynamicMap == null) {
            NativeLibrary.load();
            try (FloatPointer p = new FloatPointer(256)) {
                Lora4jNative.lora4j_dynamic_map(p);
                dynamicMap = new float[256];
                p.get(dynamicMap);
            }
        }
        return dynamicMap.clone();
    }

    /** The torch dtype name bitsandbytes writes ({@code str(torch.float32).strip("torch.")}). */
    public static String torchName(DType d) {
        switch (d) {
            case F32: return "float32";
            case BF16: return "bfloat16";
            case F16: return "float16";
            default: throw new IllegalArgumentException("no torch float dtype for " + d);
        }
    }

    /** The dtype of a torch name ("float32", "bfloat16", "float16", with or without "torch."); null if other. */
    public static DType ofTorchName(String s) {
        if (s == null) return null;
        String n = s.startsWith("torch.") ? s.substring(6) : s;
        switch (n) {
            case "float32": case "float": return DType.F32;
            case "bfloat16": return DType.BF16;
            case "float16": case "half": return DType.F16;
            default: return null;
        }
    }

    /** The quant_state JSON bytes of {@code w}, exactly as bitsandbytes/json.dumps write them. */
    public static byte[] quantStateJson(Nf4Weight w) {
        StringBuilder sb = new StringBuilder();
        sb.append("{\"quant_type\": \"nf4\", \"blocksize\": ").append(w.blocksize())
                .append(", \"dtype\": \"").append(torchName(w.sourceDtype())).append("\", \"shape\": [");
        long[] shape = w.shape();
        for (int i = 0; i < shape.length; i++) sb.append(i == 0 ? "" : ", ").append(shape[i]);
        sb.append(']');
        if (w.doubleQuant() != null) {
            sb.append(", \"nested_blocksize\": ").append(Nf4Weight.NESTED_BLOCKSIZE)
                    .append(", \"nested_dtype\": \"float32\", \"nested_offset\": ")
                    .append(pythonRepr(w.doubleQuant().offset()));
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

    /** Python's {@code repr(float(f))}: the shortest round-tripping digits of the double value of f. */
    public static String pythonRepr(float f) {
        return pythonRepr((double) f);
    }

    /** Python's {@code repr(d)} for a finite double (NaN and infinities as json.dumps writes them). */
    public static String pythonRepr(double d) {
        if (Double.isNaN(d)) return "NaN";
        if (Double.isInfinite(d)) return d > 0 ? "Infinity" : "-Infinity";
        if (d == 0) return (Double.doubleToRawLongBits(d) < 0) ? "-0.0" : "0.0";
        BigDecimal exact = new BigDecimal(d);
        BigDecimal shortest = exact;
        for (int p = 1; p <= 17; p++) {
            BigDecimal r = exact.round(new MathContext(p, RoundingMode.HALF_EVEN));
            if (r.doubleValue() == d) {
                shortest = r;
                break;
            }
        }
        shortest = shortest.stripTrailingZeros();
        String digits = shortest.unscaledValue().abs().toString();
        int decpt = digits.length() - shortest.scale(); // position of the point relative to the digits
        StringBuilder sb = new StringBuilder(d < 0 ? "-" : "");
        if (decpt > -4 && decpt <= 16) {
            if (decpt <= 0) sb.append("0.").append("0".repeat(-decpt)).append(digits);
            else if (decpt < digits.length()) sb.append(digits, 0, decpt).append('.').append(digits.substring(decpt));
            else sb.append(digits).append("0".repeat(decpt - digits.length())).append(".0");
        } else {
            sb.append(digits.charAt(0));
            if (digits.length() > 1) sb.append('.').append(digits.substring(1));
            int exp = decpt - 1;
            sb.append('e').append(exp < 0 ? '-' : '+');
            String e = Integer.toString(Math.abs(exp));
            sb.append(e.length() < 2 ? "0" + e : e);
        }
        return sb.toString();
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
