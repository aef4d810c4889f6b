package io.lora4j.model;

import io.lora4j.io.PythonRepr;

/**
 * A double that serializes as Python's {@code repr} (1e-05, 10000.0), so config.json files we
 * write read like the ones transformers writes. Gson writes a Number through its toString.
 */
final class PyFloat extends Number {
    private static final long serialVersionUID = 1L;
    private final double value;

    PyFloat(double value) {
        this.value = value;
    }

    @Override public int intValue() { return (int) value; }
    @Override public long longValue() { return (long) value; }
    @Override public float floatValue() { return (float) value; }
    @Override public double doubleValue() { return value; }
    @Override public String toString() { return PythonRepr.of(value); }
    @Override public boolean equals(Object o) { return o instanceof PyFloat p && Double.compare(p.value, value) == 0; }
    @Override public int hashCode() { return Double.hashCode(value); }
}
