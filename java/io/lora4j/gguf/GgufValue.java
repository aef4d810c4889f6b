package io.lora4j.gguf;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * One typed GGUF metadata value (ggml docs/gguf.md, {@code gguf_metadata_value_type}). Java
 * representations: integer types a {@link Long}, FLOAT32/FLOAT64 a {@link Double}, BOOL a
 * {@link Boolean}, STRING a {@link String}; an ARRAY holds {@code elementType} and a
 * {@code long[]} (integer elements), {@code double[]} (floats), {@code boolean[]} or {@code String[]}.
 *
 * @param type        the value type
 * @param elementType the element type of an ARRAY (never ARRAY: nested arrays are not written), else null
 * @param value       the value, as above
 */
public record GgufValue(Type type, Type elementType, Object value) {

    /** gguf_metadata_value_type, with its id. */
    public enum Type {
        UINT8(0), INT8(1), UINT16(2), INT16(3), UINT32(4), INT32(5), FLOAT32(6), BOOL(7), STRING(8), ARRAY(9),
        UINT64(10), INT64(11), FLOAT64(12);

        public final int id;

        Type(int id) {
            this.id = id;
        }

        static Type ofId(long id) {
            for (Type t : values()) if (t.id == id) return t;
            return null;
        }

        boolean integer() {
            return this != FLOAT32 && this != FLOAT64 && this != BOOL && this != STRING && this != ARRAY;
        }

        boolean floating() {
            return this == FLOAT32 || this == FLOAT64;
        }
    }

    public GgufValue {
        Objects.requireNonNull(type);
        Objects.requireNonNull(value);
        if (type == Type.ARRAY) {
            if (elementType == null || elementType == Type.ARRAY) throw new IllegalArgumentException("an array needs a scalar element type");
            boolean ok = elementType.integer() ? value instanceof long[] : elementType.floating() ? value instanceof double[]
                    : elementType == Type.BOOL ? value instanceof boolean[] : value instanceof String[];
            if (!ok) throw new IllegalArgumentException("array of " + elementType + " held as " + value.getClass().getSimpleName());
        } else {
            boolean ok = type.integer() ? value instanceof Long : type.floating() ? value instanceof Double
                    : type == Type.BOOL ? value instanceof Boolean : value instanceof String;
            if (!ok || elementType != null) throw new IllegalArgumentException(type + " held as " + value.getClass().getSimpleName());
        }
    }

    public static GgufValue u32(long v) {
        if (v < 0 || v > 0xffffffffL) throw new IllegalArgumentException("u32 out of range: " + v);
        return new GgufValue(Type.UINT32, null, v);
    }

    public static GgufValue i32(long v) {
        return new GgufValue(Type.INT32, null, (long) Math.toIntExact(v));
    }

    public static GgufValue u64(long v) {
        return new GgufValue(Type.UINT64, null, v);
    }

    public static GgufValue f32(double v) {
        return new GgufValue(Type.FLOAT32, null, (double) (float) v);
    }

    public static GgufValue bool(boolean v) {
        return new GgufValue(Type.BOOL, null, v);
    }

    public static GgufValue string(String v) {
        return new GgufValue(Type.STRING, null, v);
    }

    public static GgufValue strings(List<String> v) {
        return new GgufValue(Type.ARRAY, Type.STRING, v.toArray(new String[0]));
    }

    public static GgufValue f32s(float[] v) {
        double[] d = new double[v.length];
        for (int i = 0; i < v.length; i++) d[i] = v[i];
        return new GgufValue(Type.ARRAY, Type.FLOAT32, d);
    }

    public static GgufValue i32s(int[] v) {
        long[] l = new long[v.length];
        for (int i = 0; i < v.length; i++) l[i] = v[i];
        return new GgufValue(Type.ARRAY, Type.INT32, l);
    }

    /** An integer value as a long. */
    public long asLong() {
        if (!type.integer()) throw new IllegalArgumentException("not an integer: " + type);
        return (Long) value;
    }

    public double asDouble() {
        if (!type.floating()) throw new IllegalArgumentException("not a float: " + type);
        return (Double) value;
    }

    public String asString() {
        if (type != Type.STRING) throw new IllegalArgumentException("not a string: " + type);
        return (String) value;
    }

    public boolean asBool() {
        if (type != Type.BOOL) throw new IllegalArgumentException("not a bool: " + type);
        return (Boolean) value;
    }

    public String[] asStrings() {
        if (type != Type.ARRAY || elementType != Type.STRING) throw new IllegalArgumentException("not a string array");
        return (String[]) value;
    }

    /** Number of elements of an array. */
    public int length() {
        if (type != Type.ARRAY) throw new IllegalArgumentException("not an array");
        if (value instanceof long[] a) return a.length;
        if (value instanceof double[] a) return a.length;
        if (value instanceof boolean[] a) return a.length;
        return ((String[]) value).length;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof GgufValue v) || v.type != type || v.elementType != elementType) return false;
        return Arrays.deepEquals(new Object[] {value}, new Object[] {v.value});
    }

    @Override
    public int hashCode() {
        return Objects.hash(type, elementType, Arrays.deepHashCode(new Object[] {value}));
    }

    @Override
    public String toString() {
        if (type != Type.ARRAY) return type + ":" + value;
        return "ARRAY<" + elementType + ">[" + length() + "]";
    }
}
