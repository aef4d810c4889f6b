package io.lora4j.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.io.SafeTensors;
import io.lora4j.io.SafeTensorsDir;
import io.lora4j.io.SafeTensorsWriter;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;

/**
 * Mutation fuzzing of the safetensors reader: raw byte mutations of a small real file, hostile
 * header-length fields, structural mutations of the header JSON (re-framed with a correct length
 * so they reach the validator), and mutated sharded index files. A file that opens must give
 * views that stay inside the file.
 */
class SafeTensorsFuzzTest {
    private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().serializeSpecialFloatingPointValues().create();
    private static Path dir;
    private static byte[] seed;
    private static JsonObject header;
    private static byte[] data;

    @BeforeContainer
    static void seedFile() throws IOException {
        dir = Files.createTempDirectory("fuzz-st");
        Random r = new Random(3407);
        float[] f = new float[24];
        for (int i = 0; i < f.length; i++) f[i] = r.nextFloat();
        byte[] u8 = new byte[13];
        r.nextBytes(u8);
        byte[] bf = new byte[2 * 6];
        r.nextBytes(bf);
        byte[] i32 = new byte[4 * 3];
        Path file = dir.resolve("seed.safetensors");
        new SafeTensorsWriter().metadata("format", "pt")
                .addFloats("model.layers.0.mlp.up_proj.weight", new long[] {4, 6}, f)
                .add("w.absmax", DType.U8, new long[] {13}, u8)
                .add("norm.weight", DType.BF16, new long[] {2, 3}, bf)
                .add("ids", DType.I32, new long[] {3}, i32)
                .add("empty", DType.F32, new long[] {0, 5}, new byte[0])
                .write(file);
        seed = Files.readAllBytes(file);
        long n = ByteBuffer.wrap(seed).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
        header = JsonParser.parseString(new String(seed, 8, (int) n, StandardCharsets.UTF_8)).getAsJsonObject();
        data = Arrays.copyOfRange(seed, 8 + (int) n, seed.length);
        assertEquals(5, SafeTensors.open(file).entries().size(), "the seed file must itself be valid");
    }

    @AfterContainer
    static void report() {
        System.out.print(Fuzz.summary("safetensors"));
    }

    /** Opens the file and touches every tensor: a valid object must be fully usable. */
    private static Object openAndRead(Path file) throws IOException {
        SafeTensors st = SafeTensors.open(file);
        long total = 0;
        for (SafeTensors.Entry e : st.entries().values()) {
            assertTrue(e.begin() >= 0 && e.end() >= e.begin() && st.dataStart() + e.end() <= st.fileSize(), e.toString());
            byte[] b = st.bytes(e.name());
            assertEquals(e.bytes(), b.length);
            if (e.dtype().dtype != null) {
                Tensor t = st.tensor(e.name());
                total += t.bytes();
            }
        }
        return total;
    }

    @Property(tries = 1500, seed = "3407")
    void byteMutations(@ForAll long s) throws IOException {
        Random r = new Random(s);
        for (int rep = 0; rep < Fuzz.REPEAT; rep++) {
            byte[] b = Fuzz.mutate(seed, r, 0);
            Path f = Files.write(dir.resolve("b" + Thread.currentThread().getId() + ".safetensors"), b);
            Fuzz.check("safetensors/bytes", "seed " + s, () -> openAndRead(f));
        }
    }

    @Property(tries = 200, seed = "3407")
    void hostileHeaderLength(@ForAll long s) throws IOException {
        Random r = new Random(s);
        long v = r.nextBoolean() ? Fuzz.HOSTILE[r.nextInt(Fuzz.HOSTILE.length)] : s;
        byte[] b = Fuzz.withSize(seed, 0, v, true);
        Path f = Files.write(dir.resolve("len.safetensors"), b);
        Fuzz.check("safetensors/header-length", "length " + Long.toUnsignedString(v), () -> openAndRead(f));
    }

    @Property(tries = 1500, seed = "3407")
    void headerJsonMutations(@ForAll long s) throws IOException {
        Random r = new Random(s);
        for (int rep = 0; rep < Fuzz.REPEAT; rep++) {
            JsonElement h = Fuzz.mutateJson(header, r);
            byte[] json = GSON.toJson(h).getBytes(StandardCharsets.UTF_8);
            ByteBuffer b = ByteBuffer.allocate(8 + json.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
            b.putLong(json.length).put(json).put(data);
            Path f = Files.write(dir.resolve("h.safetensors"), b.array());
            Fuzz.check("safetensors/header-json", "seed " + s + ": " + abbreviate(h), () -> openAndRead(f));
        }
    }

    @Property(tries = 400, seed = "3407")
    void shardedIndexMutations(@ForAll long s) throws IOException {
        Random r = new Random(s);
        Path d = Files.createDirectories(dir.resolve("sharded"));
        Files.write(d.resolve("model-00001-of-00002.safetensors"), seed);
        Files.write(d.resolve("model-00002-of-00002.safetensors"), seed);
        JsonObject index = JsonParser.parseString("{\"metadata\":{\"total_size\":" + 2 * data.length + "},\"weight_map\":{"
                + "\"model.layers.0.mlp.up_proj.weight\":\"model-00001-of-00002.safetensors\","
                + "\"norm.weight\":\"model-00002-of-00002.safetensors\"}}").getAsJsonObject();
        JsonElement m = Fuzz.mutateJson(index, r);
        if (r.nextInt(8) == 0) {
            // a shard path that escapes the directory
            JsonObject o = new JsonObject();
            o.addProperty("norm.weight", r.nextBoolean() ? "../seed.safetensors" : "/etc/passwd");
            JsonObject root = new JsonObject();
            root.add("weight_map", o);
            m = root;
        }
        byte[] indexBytes = GSON.toJson(m).getBytes(StandardCharsets.UTF_8);
        if (r.nextInt(4) == 0) indexBytes = Fuzz.mutate(indexBytes, r, 0); // raw bytes: bad UTF-8, broken JSON
        Files.write(d.resolve(SafeTensorsDir.INDEX), indexBytes);
        JsonElement fm = m;
        Fuzz.check("safetensors/index", "seed " + s + ": " + abbreviate(fm), () -> {
            SafeTensorsDir sd = SafeTensorsDir.open(d);
            for (String name : sd.names()) {
                assertTrue(sd.fileOf(name).path().normalize().startsWith(d.normalize()), "shard outside the directory: " + name);
                sd.bytes(name);
            }
            return sd;
        });
    }

    static String abbreviate(JsonElement e) {
        String s = e.toString();
        return s.length() > 300 ? s.substring(0, 300) + "..." : s;
    }
}
