package io.lora4j.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.gguf.GgmlQuants;
import io.lora4j.gguf.GgmlType;
import io.lora4j.gguf.GgufFile;
import io.lora4j.gguf.GgufValue;
import io.lora4j.gguf.GgufWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;

/**
 * Mutation fuzzing of the GGUF reader: raw byte mutations of a small valid file (metadata of every
 * kind, string and number arrays, f32/f16/q8_0/q4_K/q6_K tensors) and hostile values in its count
 * and length fields. A file that opens must give every metadata value and every tensor, dequantized,
 * from inside the file.
 */
class GgufFuzzTest {
    private static Path dir;
    private static byte[] seed;

    @BeforeContainer
    static void seedFile() throws IOException {
        dir = Files.createTempDirectory("fuzz-gguf");
        Random r = new Random(3407);
        float[] x = new float[512];
        for (int i = 0; i < x.length; i++) x[i] = (float) r.nextGaussian();
        GgufWriter w = new GgufWriter()
                .put("general.architecture", GgufValue.string("llama"))
                .put("llama.block_count", GgufValue.u32(1))
                .put("llama.rope.freq_base", GgufValue.f32(10000))
                .put("tokenizer.ggml.tokens", GgufValue.strings(List.of("<unk>", "<s>", "\u2581a")))
                .put("tokenizer.ggml.scores", GgufValue.f32s(new float[] {0, 0, -1}))
                .put("tokenizer.ggml.token_type", GgufValue.i32s(new int[] {2, 3, 1}))
                .put("tokenizer.ggml.add_bos_token", GgufValue.bool(true));
        for (GgmlType t : new GgmlType[] {GgmlType.F32, GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K}) {
            int n = t == GgmlType.F32 ? 8 : 256;
            float[] part = java.util.Arrays.copyOf(x, n);
            w.addTensor("t." + t.ggmlName(), t, new long[] {n}, GgmlQuants.quantize(t, part));
        }
        Path file = dir.resolve("seed.gguf");
        w.write(file);
        seed = Files.readAllBytes(file);
        assertEquals(5, openAndRead(file), "the seed file must itself be valid");
    }

    @AfterContainer
    static void report() {
        System.out.print(Fuzz.summary("gguf"));
    }

    /** Opens the file, reads every metadata value and dequantizes every tensor. */
    private static int openAndRead(Path file) throws IOException {
        try (GgufFile g = GgufFile.open(file)) {
            for (GgufValue v : g.metadata().values()) assertTrue(v.toString().length() > 0);
            for (GgufFile.TensorInfo t : g.tensors().values()) {
                assertTrue(g.dataStart() + t.offset() + t.bytes() <= Files.size(file), t.name());
                float[] f = g.floats(t);
                assertEquals(t.elements(), f.length);
            }
            return g.tensors().size();
        }
    }

    @Property(tries = 1500, seed = "3407")
    void byteMutations(@ForAll long s) throws IOException {
        Random r = new Random(s);
        for (int rep = 0; rep < Fuzz.REPEAT; rep++) {
            byte[] b = Fuzz.mutate(seed, r, 0);
            Path f = Files.write(dir.resolve("b" + Thread.currentThread().getId() + ".gguf"), b);
            Fuzz.check("gguf/bytes", "seed " + s, () -> openAndRead(f));
        }
    }

    @Property(tries = 300, seed = "3407")
    void hostileCountsAndLengths(@ForAll long s) throws IOException {
        Random r = new Random(s);
        long v = r.nextBoolean() ? Fuzz.HOSTILE[r.nextInt(Fuzz.HOSTILE.length)] : s;
        // tensor count (8), metadata count (16), the first key's length (24), or any aligned u64 of the header
        int[] offsets = {8, 16, 24, 8 * (3 + r.nextInt(40))};
        int at = offsets[r.nextInt(offsets.length)];
        byte[] b = Fuzz.withSize(seed, at, v, true);
        Path f = Files.write(dir.resolve("n.gguf"), b);
        Fuzz.check("gguf/counts", "u64 " + Long.toUnsignedString(v) + " at " + at, () -> openAndRead(f));
    }
}
