package io.lora4j.train;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.FormatException;
import io.lora4j.io.SafeTensors;
import io.lora4j.io.SafeTensorsWriter;
import io.lora4j.lora.LoraAdapter;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * A full training checkpoint, {@code OUT/checkpoint-N/}:
 * <ul>
 *   <li>{@code adapter_config.json} + {@code adapter_model.safetensors}: the PEFT adapter at step N
 *       (loadable like the final one);
 *   <li>{@value #OPTIMIZER}: AdamW's fp32 moments {@code exp_avg} and {@code exp_avg_sq}, [P] each,
 *       in the adapter's flat parameter order;
 *   <li>{@value TrainingState#FILE}: the loop's state ({@link TrainingState});
 *   <li>{@value #MANIFEST}, written last: size and SHA-256 of every other file.
 * </ul>
 * Written into a hidden temporary directory beside it, each file fsynced, then renamed to
 * {@code checkpoint-N} and the output directory fsynced: a process killed at any point leaves
 * either no {@code checkpoint-N} or a complete one. Reading verifies the manifest first; a
 * checkpoint that fails is never used.
 */
public final class TrainingCheckpoint {
    public static final String MANIFEST = "manifest.json";
    public static final String OPTIMIZER = "optimizer.safetensors";
    public static final String PREFIX = "checkpoint-";
    /** Test hook: milliseconds to sleep after each file of a checkpoint, to kill a process inside the write. */
    static final String WRITE_DELAY_PROPERTY = "lora4j.test.checkpointWriteDelayMs";
    private static final Pattern NAME = Pattern.compile("checkpoint-(\\d+)");
    private static final List<String> REQUIRED = List.of(LoraAdapter.CONFIG_FILE, LoraAdapter.WEIGHTS_FILE, OPTIMIZER, TrainingState.FILE);

    private TrainingCheckpoint() {}

    /** What a verified checkpoint holds. */
    record Loaded(Path dir, TrainingState state, float[] m, float[] v) {}

    /** A checkpoint chosen to resume from, with the newer ones that failed verification and why. */
    public record Choice(Path checkpoint, Path runDir, long step, List<String> skipped) {}

    /** The step of a directory named checkpoint-N, or -1. */
    static long stepOf(Path dir) {
        Path n = dir.getFileName();
        Matcher m = n == null ? null : NAME.matcher(n.toString());
        return m != null && m.matches() ? Long.parseLong(m.group(1)) : -1;
    }

    /** The checkpoint-N directories of {@code out}, newest (largest N) first. */
    static List<Path> list(Path out) throws IOException {
        List<Path> dirs = new ArrayList<>();
        if (!Files.isDirectory(out)) return dirs;
        try (Stream<Path> s = Files.list(out)) {
            s.filter(p -> stepOf(p) >= 0 && Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)).forEach(dirs::add);
        }
        dirs.sort((a, b) -> Long.compare(stepOf(b), stepOf(a)));
        return dirs;
    }

    /**
     * Deletes checkpoint {@code dir}: renamed to a hidden name first, so that a process killed
     * while deleting leaves no half-deleted {@code checkpoint-N} behind.
     */
    static void delete(Path dir) throws IOException {
        if (!Files.exists(dir, LinkOption.NOFOLLOW_LINKS)) return;
        Path parent = dir.toAbsolutePath().getParent();
        Path trash = AtomicFiles.tempDirectory(parent, "." + dir.getFileName() + ".del-");
        Files.delete(trash);
        Files.move(dir, trash, StandardCopyOption.ATOMIC_MOVE);
        AtomicFiles.deleteRecursively(trash);
    }

    /** Removes hidden temporary checkpoint directories that a killed run left in {@code out}. */
    static int removeLeftovers(Path out) throws IOException {
        List<Path> junk = new ArrayList<>();
        try (Stream<Path> s = Files.list(out)) {
            s.filter(p -> p.getFileName().toString().startsWith("." + PREFIX)).forEach(junk::add);
        }
        for (Path p : junk) AtomicFiles.deleteRecursively(p);
        return junk.size();
    }

    /**
     * Writes checkpoint {@code OUT/checkpoint-<state.step>} atomically, replacing one of that name.
     *
     * @param moments AdamW's {m, v}, [P] each
     * @return the checkpoint directory
     */
    static Path write(Path out, LoraAdapter adapter, String baseModel, float[][] moments, TrainingState state) throws IOException {
        long delay = Long.getLong(WRITE_DELAY_PROPERTY, 0L);
        Path target = out.resolve(PREFIX + state.step);
        Path tmp = AtomicFiles.tempDirectory(out, "." + PREFIX + state.step + ".tmp-");
        boolean done = false;
        try {
            adapter.writeInto(tmp, baseModel);
            pause(delay);
            long p = moments[0].length;
            new SafeTensorsWriter().metadata("format", "pt").metadata("optimizer", "adamw")
                    .metadata("updates", Long.toString(state.updates))
                    .addFloats("exp_avg", new long[] {p}, moments[0]).addFloats("exp_avg_sq", new long[] {p}, moments[1])
                    .write(tmp.resolve(OPTIMIZER));
            pause(delay);
            AtomicFiles.writeBytes(tmp.resolve(TrainingState.FILE), state.toJson().getBytes(StandardCharsets.UTF_8));
            pause(delay);
            JsonObject files = new JsonObject();
            for (String name : REQUIRED) {
                Path f = tmp.resolve(name);
                JsonObject e = new JsonObject();
                e.addProperty("bytes", Files.size(f));
                e.addProperty("sha256", sha256(f));
                files.add(name, e);
            }
            JsonObject manifest = new JsonObject();
            manifest.addProperty("format", "lora4j-checkpoint");
            manifest.addProperty("global_step", state.step);
            manifest.add("files", files);
            AtomicFiles.writeBytes(tmp.resolve(MANIFEST),
                    (new GsonBuilder().setPrettyPrinting().create().toJson(manifest) + "\n").getBytes(StandardCharsets.UTF_8));
            AtomicFiles.syncDirectory(tmp);
            Path old = null;
            if (Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
                // A resumed run reaches a step it saved before: move the old one aside, then replace it.
                old = AtomicFiles.tempDirectory(out, "." + PREFIX + state.step + ".old-");
                Files.delete(old);
                Files.move(target, old, StandardCopyOption.ATOMIC_MOVE);
            }
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
            done = true;
            AtomicFiles.syncDirectory(out);
            if (old != null) AtomicFiles.deleteRecursively(old);
            return target;
        } finally {
            if (!done) AtomicFiles.deleteRecursively(tmp);
        }
    }

    private static void pause(long ms) {
        if (ms <= 0) return;
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Checks {@code dir} against its manifest and parses its trainer state.
     *
     * @throws FormatException naming the file and what is wrong
     */
    static TrainingState verify(Path dir) throws IOException {
        Path mf = dir.resolve(MANIFEST);
        if (!Files.isRegularFile(mf)) throw new FormatException(mf, "missing (the checkpoint was not completed)");
        JsonObject files;
        try {
            JsonElement root = JsonParser.parseString(Files.readString(mf, StandardCharsets.UTF_8));
            files = root.getAsJsonObject().getAsJsonObject("files");
            if (files == null) throw new FormatException(mf, "no \"files\" entry");
        } catch (JsonParseException | IllegalStateException | ClassCastException e) {
            throw new FormatException(mf, "not valid: " + e.getMessage());
        }
        for (String name : REQUIRED)
            if (!files.has(name)) throw new FormatException(mf, "does not list " + name);
        for (Map.Entry<String, JsonElement> e : files.entrySet()) {
            Path f = dir.resolve(e.getKey()).normalize();
            if (!f.getParent().equals(dir.normalize())) throw new FormatException(mf, "lists a file outside the checkpoint: " + e.getKey());
            if (!Files.isRegularFile(f)) throw new FormatException(f, "missing");
            long want, size = Files.size(f);
            String hash;
            try {
                want = e.getValue().getAsJsonObject().get("bytes").getAsLong();
                hash = e.getValue().getAsJsonObject().get("sha256").getAsString();
            } catch (RuntimeException x) {
                throw new FormatException(mf, "bad entry for " + e.getKey());
            }
            if (size != want) throw new FormatException(f, size + " bytes, the manifest says " + want);
            if (!sha256(f).equals(hash)) throw new FormatException(f, "SHA-256 differs from the manifest's (the file was changed or damaged)");
        }
        Path sf = dir.resolve(TrainingState.FILE);
        TrainingState s = TrainingState.fromJson(sf, Files.readString(sf, StandardCharsets.UTF_8));
        long n = stepOf(dir);
        if (n >= 0 && n != s.step) throw new FormatException(sf, "global_step " + s.step + " in " + dir.getFileName());
        return s;
    }

    /**
     * Verifies and reads {@code dir}: the state, the adapter's flat parameters and the moments.
     *
     * @throws FormatException when verification fails or the tensors do not fit each other
     */
    static Loaded load(Path dir) throws IOException {
        TrainingState s = verify(dir);
        Path of = dir.resolve(OPTIMIZER);
        SafeTensors st = SafeTensors.open(of);
        if (!st.contains("exp_avg") || !st.contains("exp_avg_sq")) throw new FormatException(of, "needs exp_avg and exp_avg_sq");
        float[] m = st.tensor("exp_avg").toFloats(), v = st.tensor("exp_avg_sq").toFloats();
        if (m.length != v.length) throw new FormatException(of, "exp_avg has " + m.length + " values, exp_avg_sq " + v.length);
        return new Loaded(dir, s, m, v);
    }

    /**
     * The checkpoint to resume from: {@code path} itself when it is a checkpoint directory (it
     * must verify), else the newest checkpoint-N in the run directory {@code path} that verifies.
     *
     * @throws FormatException when there is none (naming each one skipped and why)
     */
    public static Choice choose(Path path) throws IOException {
        Path p = path.toAbsolutePath().normalize();
        if (!Files.isDirectory(p)) throw new FormatException(p, Files.exists(p) ? "not a directory" : "no such directory");
        if (stepOf(p) >= 0 || Files.exists(p.resolve(MANIFEST))) {
            TrainingState s;
            try {
                s = verify(p);
            } catch (FormatException e) {
                throw new FormatException(p, "cannot resume from this checkpoint: " + e.getMessage());
            }
            return new Choice(p, p.getParent(), s.step, List.of());
        }
        List<String> skipped = new ArrayList<>();
        for (Path d : list(p)) {
            try {
                TrainingState s = verify(d);
                return new Choice(d, p, s.step, skipped);
            } catch (FormatException e) {
                skipped.add(d.getFileName() + " (" + e.getMessage() + ")");
            }
        }
        throw new FormatException(p, "no valid checkpoint to resume from" + (skipped.isEmpty() ? " (no checkpoint-N directory)"
                : ": skipped " + String.join("; ", skipped)));
    }

    static String sha256(Path f) throws IOException {
        MessageDigest md = RunFingerprint.sha256();
        byte[] buf = new byte[1 << 16];
        try (InputStream in = Files.newInputStream(f)) {
            for (int n; (n = in.read(buf)) > 0; ) md.update(buf, 0, n);
        }
        return HexFormat.of().formatHex(md.digest());
    }

    /** Checkpoint steps present in {@code out} that are at most {@code upTo}, oldest first (for save_total_limit). */
    static List<Long> stepsUpTo(Path out, long upTo) throws IOException {
        TreeMap<Long, Path> m = new TreeMap<>();
        for (Path d : list(out)) if (stepOf(d) <= upTo) m.put(stepOf(d), d);
        return new ArrayList<>(m.keySet());
    }
}
