package io.lora4j.io;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;

/** Numbers written as Python writes them, for files that Python tools compare byte for byte (bitsandbytes' quant_state JSON). */
public final class PythonRepr {
    private PythonRepr() {}

    /** Python's {@code repr(float(f))}: the shortest round-tripping digits of the double value of f. */
    public static String of(float f) {
        return of((double) f);
    }

    /** Python's {@code repr(d)} for a finite double (NaN and infinities as json.dumps writes them). */
    public static String of(double d) {
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
}
