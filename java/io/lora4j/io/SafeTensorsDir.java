package io.lora4j.io;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/**
 * The tensors of an HF model directory: {@code model.safetensors}, or the shards listed by
 * {@code model.safetensors.index.json} ({@code {"weight_map": {tensor: file}}}). Shard names must
 * stay inside the directory: absolute paths, {@code ..} and symbolic links that lead outside are
 * errors.
 */
public final class SafeTensorsDir {
    public static final String SINGLE = "model.safetensors";
    public static final String INDEX = "model.safetensors.index.json";

    private final Path dir;
    private final Path indexFile; // null for a single file
    private final List<SafeTensors> files;
    private final Map<String, SafeTensors> owner;

    private SafeTensorsDir(Path dir, Path indexFile, List<SafeTensors> files, Map<String, SafeTensors> owner) {
        this.dir = dir;
        this.indexFile = indexFile;
        this.files = Collections.unmodifiableList(files);
        this.owner = Collections.unmodifiableMap(owner);
    }

    /** True when {@code dir} holds an index or a single safetensors file of a model. */
    public static boolean present(Path dir) {
        return Files.isRegularFile(dir.resolve(INDEX)) || Files.isRegularFile(dir.resolve(SINGLE));
    }

    /**
     * Opens the safetensors of {@code dir}: the index when present, else {@code model.safetensors},
     * else the only {@code *.safetensors} file.
     */
    public static SafeTensorsDir open(Path dir) throws IOException {
        Path index = dir.resolve(INDEX);
        if (Files.isRegularFile(index)) return openIndex(dir, index);
        Path single = dir.resolve(SINGLE);
        if (!Files.isRegularFile(single)) {
            List<Path> found;
            try (Stream<Path> s = Files.list(dir)) {
                found = s.filter(p -> p.getFileName().toString().endsWith(".safetensors") && Files.isRegularFile(p))
                        .sorted().collect(Collectors.toList());
            }
            if (found.size() != 1)
                throw new FormatException(dir, found.isEmpty() ? "no model.safetensors or " + INDEX
                        : found.size() + " .safetensors files but no " + INDEX + " saying which tensor is where");
            single = found.get(0);
        }
        SafeTensors st = SafeTensors.open(single);
        Map<String, SafeTensors> owner = new LinkedHashMap<>();
        for (String name : st.entries().keySet()) owner.put(name, st);
        return new SafeTensorsDir(dir, null, List.of(st), owner);
    }

    private static SafeTensorsDir openIndex(Path dir, Path index) throws IOException {
        JsonObject root;
        try {
            JsonElement e = JsonParser.parseString(TextFiles.readUtf8(index));
            if (!e.isJsonObject()) throw new FormatException(index, "not a JSON object");
            root = e.getAsJsonObject();
        } catch (JsonParseException | IllegalStateException e) {
            throw new FormatException(index, "not valid JSON: " + e.getMessage());
        }
        JsonElement wm = root.get("weight_map");
        if (wm == null || !wm.isJsonObject()) throw new FormatException(index, "no \"weight_map\" object");
        Path realDir = dir.toRealPath();
        Map<String, SafeTensors> byFile = new LinkedHashMap<>();
        Map<String, SafeTensors> owner = new LinkedHashMap<>();
        for (Map.Entry<String, JsonElement> en : wm.getAsJsonObject().entrySet()) {
            if (!en.getValue().isJsonPrimitive() || !en.getValue().getAsJsonPrimitive().isString())
                throw new FormatException(index, "weight_map entry of '" + en.getKey() + "' is not a file name");
            String fname = en.getValue().getAsString();
            SafeTensors st = byFile.get(fname);
            if (st == null) {
                Path shard = resolveInside(index, realDir, dir, fname);
                st = SafeTensors.open(shard);
                byFile.put(fname, st);
            }
            if (!st.contains(en.getKey()))
                throw new FormatException(st.path(), "no tensor '" + en.getKey() + "', which " + INDEX + " places there");
            owner.put(en.getKey(), st);
        }
        return new SafeTensorsDir(dir, index, new ArrayList<>(byFile.values()), owner);
    }

    private static Path resolveInside(Path index, Path realDir, Path dir, String fname) throws IOException {
        if (fname.isEmpty()) throw new FormatException(index, "empty shard file name");
        Path rel;
        try {
            rel = Path.of(fname);
        } catch (java.nio.file.InvalidPathException e) {
            throw new FormatException(index, "shard file name '" + fname.replace("\0", "\\0") + "' is not a valid path");
        }
        if (rel.isAbsolute() || fname.startsWith("/") || fname.startsWith("\\"))
            throw new FormatException(index, "shard file name '" + fname + "' is an absolute path");
        for (Path part : rel) {
            if (part.toString().equals("..")) throw new FormatException(index, "shard file name '" + fname + "' escapes the model directory");
        }
        Path p = dir.resolve(rel);
        if (!Files.exists(p)) throw new FormatException(index, "shard '" + fname + "' does not exist");
        Path real = p.toRealPath();
        if (!real.startsWith(realDir))
            throw new FormatException(index, "shard '" + fname + "' leads outside the model directory (to " + real + ")");
        return p;
    }

    public Path dir() {
        return dir;
    }

    /** The index file, or null for a single-file model. */
    public Path indexFile() {
        return indexFile;
    }

    /** The files, in first-use order. */
    public List<SafeTensors> files() {
        return files;
    }

    /** Every tensor name, in file and header order. */
    public List<String> names() {
        return new ArrayList<>(owner.keySet());
    }

    public boolean contains(String name) {
        return owner.containsKey(name);
    }

    /** The header entry of {@code name}, or null. */
    public SafeTensors.Entry entry(String name) {
        SafeTensors st = owner.get(name);
        return st == null ? null : st.entry(name);
    }

    /** The file that holds {@code name}, or null. */
    public SafeTensors fileOf(String name) {
        return owner.get(name);
    }

    /** A zero-copy view of {@code name}. */
    public Tensor tensor(String name) throws IOException {
        return require(name).tensor(name);
    }

    /** A copy of {@code name}'s raw bytes. */
    public byte[] bytes(String name) throws IOException {
        return require(name).bytes(name);
    }

    /** Total bytes of all files. */
    public long totalFileBytes() {
        long n = 0;
        for (SafeTensors f : files) n += f.fileSize();
        return n;
    }

    private SafeTensors require(String name) throws FormatException {
        SafeTensors st = owner.get(name);
        if (st == null) throw new FormatException(indexFile != null ? indexFile : dir, "no tensor '" + name + "'");
        return st;
    }
}
