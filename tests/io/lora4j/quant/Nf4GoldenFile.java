package io.lora4j.quant;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Reader of tests/resources/nf4/nf4_golden.txt, written by scripts/reference/nf4_reference.py
 * (format in that script's docstring): global arrays and per-case arrays as raw bytes.
 */
final class Nf4GoldenFile {
    static final class Case {
        final String name;
        final String dtype;
        final long n;
        final int blocksize;
        final Map<String, byte[]> arrays = new HashMap<>();

        Case(String name, String dtype, long n, int blocksize) {
            this.name = name;
            this.dtype = dtype;
            this.n = n;
            this.blocksize = blocksize;
        }

        byte[] bytes(String key) {
            byte[] b = arrays.get(key);
            if (b == null) throw new IllegalStateException("case " + name + " has no " + key);
            return b;
        }

        float[] floats(String key) {
            return Nf4GoldenFile.floats(bytes(key));
        }

        @Override
        public String toString() {
            return name + " (" + dtype + ", n=" + n + ", blocksize " + blocksize + ")";
        }
    }

    final Map<String, byte[]> globals = new HashMap<>();
    final List<Case> cases = new ArrayList<>();

    static Nf4GoldenFile load() throws IOException {
        Nf4GoldenFile f = new Nf4GoldenFile();
        try (InputStream in = Nf4GoldenFile.class.getResourceAsStream("/nf4/nf4_golden.txt")) {
            if (in == null) throw new IOException("tests/resources/nf4/nf4_golden.txt is missing");
            BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.US_ASCII));
            Case cur = null;
            for (String line; (line = r.readLine()) != null; ) {
                if (line.isEmpty() || line.startsWith("#")) continue;
                String[] p = line.split(" ");
                switch (p[0]) {
                    case "case":
                        cur = new Case(p[1], p[2], Long.parseLong(p[3]), Integer.parseInt(p[4]));
                        break;
                    case "end":
                        f.cases.add(cur);
                        cur = null;
                        break;
                    default:
                        byte[] v = hex(p[1]);
                        if (cur == null) f.globals.put(p[0], v);
                        else cur.arrays.put(p[0], v);
                }
            }
        }
        return f;
    }

    static byte[] hex(String s) {
        if (s.equals("-")) return new byte[0];
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        return b;
    }

    static float[] floats(byte[] b) {
        float[] f = new float[b.length / 4];
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(f);
        return f;
    }
}
