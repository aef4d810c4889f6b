package io.lora4j.data;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.FormatException;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The demo datasets of DESIGN.md §5, built from the files scripts/fetch-assets.sh puts in
 * {@code ~/.cache/lora4j/datasets}:
 * <ul>
 *   <li>{@code capitals}: the 50 US state capitals as one-turn chats, one row per state and
 *       phrasing; {@link #TRAIN_PHRASINGS} go to training, {@link #EVAL_PHRASINGS} (never seen in
 *       training) to eval, so eval loss measures whether the fact, not the sentence, was learned;
 *   <li>{@code moby-dick}: the 135 chapters as text rows ("CHAPTER n. Title" + text); every
 *       {@link #MOBY_DICK_EVAL_EVERY}th chapter is held out for eval.
 * </ul>
 * Each is written as {@code <name>-train.jsonl} and {@code <name>-eval.jsonl}.
 */
public final class DemoData {
    /** Question phrasings used for training ({@code %s}: the state). */
    public static final List<String> TRAIN_PHRASINGS = List.of("What is the capital of %s?", "Name the capital of %s.",
            "%s's capital city is?", "Which city is the capital of %s?");
    /** Phrasings held out for eval. */
    public static final List<String> EVAL_PHRASINGS = List.of("What city serves as the capital of %s?", "Tell me the capital of %s.");
    /** The answer ({@code %1$s}: state, {@code %2$s}: capital). */
    public static final String ANSWER = "The capital of %1$s is %2$s.";
    public static final int MOBY_DICK_EVAL_EVERY = 10;

    /** Paths of a written demo set. */
    public record Written(Path train, Path eval, int trainRows, int evalRows) {}

    private DemoData() {}

    /** {@code $LORA4J_CACHE/datasets}, else {@code ~/.cache/lora4j/datasets}. */
    public static Path datasetsDir() {
        String env = System.getenv("LORA4J_CACHE");
        Path cache = env != null && !env.isEmpty() ? Path.of(env) : Path.of(System.getProperty("user.home"), ".cache", "lora4j");
        return cache.resolve("datasets");
    }

    /**
     * Writes capitals-train.jsonl and capitals-eval.jsonl ({"messages": [user, assistant]}) into {@code outDir}.
     *
     * @param datasets the directory with us-states-names.json and us-states-capitals.json
     * @throws FormatException when the files are missing, not arrays of strings, or of different lengths
     */
    public static Written capitals(Path datasets, Path outDir) throws IOException {
        List<String> states = strings(datasets.resolve("us-states-names.json"));
        Path capFile = datasets.resolve("us-states-capitals.json");
        List<String> capitals = strings(capFile);
        if (states.size() != capitals.size())
            throw new FormatException(capFile, capitals.size() + " capitals for " + states.size() + " states");
        StringBuilder train = new StringBuilder(), eval = new StringBuilder();
        int nt = 0, ne = 0;
        for (int i = 0; i < states.size(); i++) {
            String answer = String.format(ANSWER, states.get(i), capitals.get(i));
            for (String p : TRAIN_PHRASINGS) {
                chatRow(train, String.format(p, states.get(i)), answer);
                nt++;
            }
            for (String p : EVAL_PHRASINGS) {
                chatRow(eval, String.format(p, states.get(i)), answer);
                ne++;
            }
        }
        return write(outDir, "capitals", train, eval, nt, ne);
    }

    /**
     * Writes moby-dick-train.jsonl and moby-dick-eval.jsonl ({"text"}) into {@code outDir}.
     *
     * @param datasets the directory with moby-dick.jsonl ({"chapter", "title", "text"} per line)
     */
    public static Written mobyDick(Path datasets, Path outDir) throws IOException {
        Path file = datasets.resolve("moby-dick.jsonl");
        if (!Files.isRegularFile(file)) throw new FormatException(file, "no such file (run scripts/fetch-assets.sh)");
        StringBuilder train = new StringBuilder(), eval = new StringBuilder();
        int nt = 0, ne = 0, n = 0;
        try (BufferedReader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            int lineNo = 0;
            for (String line; (line = r.readLine()) != null; ) {
                lineNo++;
                if (line.isBlank()) continue;
                JsonObject o;
                try {
                    o = JsonParser.parseString(line).getAsJsonObject();
                } catch (JsonParseException | IllegalStateException e) {
                    throw new FormatException(file, "line " + lineNo + ": not a JSON object");
                }
                if (!o.has("text") || !o.has("chapter"))
                    throw new FormatException(file, "line " + lineNo + ": needs \"chapter\" and \"text\"");
                String title = o.has("title") ? o.get("title").getAsString() : "";
                String text = "CHAPTER " + o.get("chapter").getAsString() + ". " + title + "\n\n" + o.get("text").getAsString().strip();
                JsonObject row = new JsonObject();
                row.addProperty("text", text);
                n++;
                if (n % MOBY_DICK_EVAL_EVERY == 0) {
                    eval.append(GSON.toJson(row)).append('\n');
                    ne++;
                } else {
                    train.append(GSON.toJson(row)).append('\n');
                    nt++;
                }
            }
        }
        if (n == 0) throw new FormatException(file, "no chapters");
        return write(outDir, "moby-dick", train, eval, nt, ne);
    }

    private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().create();

    private static void chatRow(StringBuilder sb, String question, String answer) {
        JsonArray msgs = new JsonArray();
        msgs.add(message("user", question));
        msgs.add(message("assistant", answer));
        JsonObject row = new JsonObject();
        row.add("messages", msgs);
        sb.append(GSON.toJson(row)).append('\n');
    }

    private static JsonObject message(String role, String content) {
        JsonObject m = new JsonObject();
        m.addProperty("role", role);
        m.addProperty("content", content);
        return m;
    }

    private static Written write(Path outDir, String name, StringBuilder train, StringBuilder eval, int nt, int ne) throws IOException {
        Files.createDirectories(outDir);
        Path t = outDir.resolve(name + "-train.jsonl"), e = outDir.resolve(name + "-eval.jsonl");
        AtomicFiles.writeBytes(t, train.toString().getBytes(StandardCharsets.UTF_8));
        AtomicFiles.writeBytes(e, eval.toString().getBytes(StandardCharsets.UTF_8));
        return new Written(t, e, nt, ne);
    }

    private static List<String> strings(Path file) throws IOException {
        if (!Files.isRegularFile(file)) throw new FormatException(file, "no such file (run scripts/fetch-assets.sh)");
        JsonElement e;
        try {
            e = JsonParser.parseString(Files.readString(file, StandardCharsets.UTF_8));
        } catch (JsonParseException ex) {
            throw new FormatException(file, "not valid JSON");
        }
        if (!e.isJsonArray()) throw new FormatException(file, "not a JSON array of strings");
        List<String> out = new ArrayList<>();
        for (JsonElement x : e.getAsJsonArray()) {
            if (!x.isJsonPrimitive() || !x.getAsJsonPrimitive().isString()) throw new FormatException(file, "not a JSON array of strings");
            out.add(x.getAsString());
        }
        if (out.isEmpty()) throw new FormatException(file, "empty");
        return out;
    }
}
