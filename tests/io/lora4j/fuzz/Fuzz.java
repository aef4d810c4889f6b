package io.lora4j.fuzz;

import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import io.lora4j.io.FormatException;
import io.lora4j.tokenizer.TokenizerException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Callable;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The fuzz harness shared by the reader properties: byte and JSON mutators driven by a seeded
 * {@link Random}, and {@link #check} which runs one parse under a time limit and fails the
 * property unless it returned or threw one of the project's documented exceptions with a
 * one-line message.
 *
 * <p>Each jqwik property draws a {@code long} seed (the property's own seed is fixed, so CI is
 * reproducible) and runs {@link #REPEAT} mutated cases from it; {@code -Dlora4j.fuzz.repeat=N}
 * multiplies the cases for a long local run. Counts per reader are kept in {@link #CASES} and
 * printed by each test class.
 */
final class Fuzz {
    /** Cases per jqwik try; raise with -Dlora4j.fuzz.repeat for a longer local run. */
    static final int REPEAT = Integer.getInteger("lora4j.fuzz.repeat", 1);
    /** One parse may take this long before it counts as a hang (generous: 2 shared cores). */
    static final long CASE_TIMEOUT_MS = 20_000;

    static final Map<String, AtomicLong[]> CASES = new ConcurrentHashMap<>(); // {cases, rejected}

    private static final ExecutorService RUNNER = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "fuzz-case");
        t.setDaemon(true);
        return t;
    });

    private Fuzz() {}

    /** What a parse may throw: the project's exceptions for bad input. */
    static boolean allowed(Throwable t) {
        return t instanceof FormatException || t instanceof TokenizerException
                || t.getClass() == IllegalArgumentException.class
                || t instanceof io.lora4j.data.ChatTemplate.TemplateException
                || t.getClass() == java.io.UncheckedIOException.class && t.getCause() instanceof FormatException;
    }

    /**
     * Runs {@code parse} under {@link #CASE_TIMEOUT_MS}; fails unless it returns or throws an
     * {@link #allowed} exception whose message is one non-empty line.
     */
    static <T> T check(String reader, String caseName, Callable<T> parse) {
        AtomicLong[] c = CASES.computeIfAbsent(reader, k -> new AtomicLong[] {new AtomicLong(), new AtomicLong()});
        c[0].incrementAndGet();
        Future<T> f = RUNNER.submit(parse);
        try {
            return f.get(CASE_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            f.cancel(true);
            fail(reader + ": hang (> " + CASE_TIMEOUT_MS + " ms) on " + caseName);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            fail("interrupted");
        } catch (ExecutionException e) {
            Throwable t = e.getCause();
            if (!allowed(t)) {
                AssertionError err = new AssertionError(reader + ": " + t.getClass().getName() + " on " + caseName + ": " + t.getMessage(), t);
                throw err;
            }
            String m = t.getMessage();
            if (m == null || m.isBlank() || m.contains("\n"))
                throw new AssertionError(reader + ": message is not one line on " + caseName + ": [" + m + "]", t);
            c[1].incrementAndGet();
        }
        return null;
    }

    /** "reader: N cases, M rejected" lines, for the test log and tests/FUZZING.md. */
    static String summary(String prefix) {
        StringBuilder sb = new StringBuilder();
        CASES.entrySet().stream().filter(e -> e.getKey().startsWith(prefix)).sorted(Map.Entry.comparingByKey())
                .forEach(e -> sb.append("FUZZ ").append(e.getKey()).append(": ").append(e.getValue()[0].get())
                        .append(" cases, ").append(e.getValue()[1].get()).append(" rejected with a clean exception\n"));
        return sb.toString();
    }

    // ---- byte mutations ----

    /** Values that break size fields: zero, one, sign bit, all ones, just past 2^31 and 2^32. */
    static final long[] HOSTILE = {0, 1, -1, Integer.MAX_VALUE, Integer.MIN_VALUE, 0x80000000L, 0xFFFFFFFFL,
            0x100000000L, Long.MAX_VALUE, Long.MIN_VALUE, 1L << 40, 100_000_001L, 7};

    /** One to four random mutations of {@code seed} (a copy), anywhere in [from, seed.length). */
    static byte[] mutate(byte[] seed, Random r, int from) {
        byte[] b = seed.clone();
        int n = 1 + r.nextInt(4);
        for (int i = 0; i < n; i++) b = mutateOnce(b, r, Math.min(from, b.length));
        return b;
    }

    static byte[] mutateOnce(byte[] b, Random r, int from) {
        int span = b.length - from;
        if (span <= 0) return b;
        int pos = from + r.nextInt(span);
        switch (r.nextInt(8)) {
            case 0: { b[pos] ^= (byte) (1 << r.nextInt(8)); return b; }               // bit flip
            case 1: { b[pos] = (byte) r.nextInt(256); return b; }                      // byte set
            case 2: return java.util.Arrays.copyOf(b, pos);                              // truncate
            case 3: {                                                                    // insert bytes
                int k = 1 + r.nextInt(16);
                byte[] out = new byte[b.length + k];
                System.arraycopy(b, 0, out, 0, pos);
                for (int i = 0; i < k; i++) out[pos + i] = (byte) r.nextInt(256);
                System.arraycopy(b, pos, out, pos + k, b.length - pos);
                return out;
            }
            case 4: {                                                                    // delete bytes
                int k = Math.min(1 + r.nextInt(16), b.length - pos);
                byte[] out = new byte[b.length - k];
                System.arraycopy(b, 0, out, 0, pos);
                System.arraycopy(b, pos + k, out, pos, b.length - pos - k);
                return out;
            }
            case 5: {                                                                    // hostile int32
                if (b.length - pos < 4) return b;
                ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putInt(pos, (int) HOSTILE[r.nextInt(HOSTILE.length)]);
                return b;
            }
            case 6: {                                                                    // 0xFF run (huge varints)
                int k = Math.min(1 + r.nextInt(10), b.length - pos);
                for (int i = 0; i < k; i++) b[pos + i] = (byte) 0xFF;
                return b;
            }
            default: {                                                                   // duplicate a chunk
                int k = Math.min(1 + r.nextInt(64), b.length - pos);
                byte[] out = new byte[b.length + k];
                System.arraycopy(b, 0, out, 0, pos + k);
                System.arraycopy(b, pos, out, pos + k, b.length - pos);
                return out;
            }
        }
    }

    /** {@code b} with a hostile value written as an int32 (or int64) at {@code offset}. */
    static byte[] withSize(byte[] b, int offset, long value, boolean wide) {
        byte[] out = b.clone();
        ByteBuffer bb = ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN);
        if (wide) bb.putLong(offset, value);
        else bb.putInt(offset, (int) value);
        return out;
    }

    // ---- JSON mutations ----

    /** Replacement values of every JSON type, including hostile numbers and deep nesting. */
    static JsonElement hostileValue(Random r) {
        switch (r.nextInt(14)) {
            case 0: return JsonNull.INSTANCE;
            case 1: return new JsonPrimitive(r.nextBoolean());
            case 2: return new JsonPrimitive(HOSTILE[r.nextInt(HOSTILE.length)]);
            case 3: return new JsonPrimitive(-1 - r.nextInt(1000));
            case 4: return new JsonPrimitive(r.nextBoolean() ? 1e300 : -1e300);
            case 5: return new JsonPrimitive(new java.math.BigInteger("123456789012345678901234567890"));
            case 6: return new JsonPrimitive("");
            case 7: return new JsonPrimitive("\u0000\uFFFF\uD800x");
            case 8: return new JsonArray();
            case 9: return new JsonObject();
            case 10: {
                JsonArray a = new JsonArray();
                for (int i = 0; i < 1 + r.nextInt(5); i++) a.add(hostileValue(r));
                return a;
            }
            case 11: { // nesting 200 deep
                JsonElement e = new JsonPrimitive(1);
                for (int i = 0; i < 200; i++) {
                    JsonArray a = new JsonArray();
                    a.add(e);
                    e = a;
                }
                return e;
            }
            case 12: return new JsonPrimitive(0.5);
            default: return new JsonPrimitive("x".repeat(r.nextInt(3) == 0 ? 100_000 : 3));
        }
    }

    /** A deep copy of {@code root} with one to three nodes replaced, removed, or duplicated. */
    static JsonElement mutateJson(JsonElement root, Random r) {
        JsonElement copy = root.deepCopy();
        int n = 1 + r.nextInt(3);
        for (int i = 0; i < n; i++) copy = mutateJsonOnce(copy, r);
        return copy;
    }

    private static JsonElement mutateJsonOnce(JsonElement root, Random r) {
        List<JsonElement> containers = new ArrayList<>();
        collect(root, containers, 0);
        if (containers.isEmpty() || r.nextInt(30) == 0) return hostileValue(r);
        JsonElement c = containers.get(r.nextInt(containers.size()));
        if (c.isJsonObject()) {
            JsonObject o = c.getAsJsonObject();
            if (o.size() == 0) {
                o.add("x", hostileValue(r));
                return root;
            }
            List<String> keys = new ArrayList<>(o.keySet());
            String k = keys.get(r.nextInt(keys.size()));
            switch (r.nextInt(4)) {
                case 0: o.remove(k); break;
                case 1: o.add(k + (r.nextBoolean() ? "" : "_"), hostileValue(r)); break;
                case 2: o.add(k, mutateScalar(o.get(k), r)); break;
                default: o.add(k, hostileValue(r));
            }
        } else {
            JsonArray a = c.getAsJsonArray();
            if (a.size() == 0) {
                a.add(hostileValue(r));
                return root;
            }
            int i = r.nextInt(a.size());
            switch (r.nextInt(4)) {
                case 0: a.remove(i); break;
                case 1: a.add(a.get(i).deepCopy()); break;
                case 2: a.set(i, mutateScalar(a.get(i), r)); break;
                default: a.set(i, hostileValue(r));
            }
        }
        return root;
    }

    /** Numbers nudged to boundary values, strings to other strings or numbers. */
    private static JsonElement mutateScalar(JsonElement e, Random r) {
        if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber()) {
            long[] v = {0, -1, 1, e.getAsLong() + 1, e.getAsLong() - 1, e.getAsLong() * 2, Integer.MAX_VALUE, Long.MAX_VALUE, Integer.MIN_VALUE};
            return new JsonPrimitive(v[r.nextInt(v.length)]);
        }
        if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isString()) {
            String s = e.getAsString();
            switch (r.nextInt(3)) {
                case 0: return new JsonPrimitive(s.isEmpty() ? "?" : s.substring(0, r.nextInt(s.length())));
                case 1: return new JsonPrimitive(s + s);
                default: return new JsonPrimitive(s.length());
            }
        }
        return hostileValue(r);
    }

    private static void collect(JsonElement e, List<JsonElement> out, int depth) {
        if (depth > 8) return;
        if (e.isJsonObject()) {
            out.add(e);
            for (JsonElement c : e.getAsJsonObject().asMap().values()) collect(c, out, depth + 1);
        } else if (e.isJsonArray()) {
            out.add(e);
            JsonArray a = e.getAsJsonArray();
            // large arrays (vocabularies, merges): sample a few children, not all
            for (int i = 0; i < Math.min(a.size(), 8); i++) collect(a.get(i), out, depth + 1);
        }
    }
}
