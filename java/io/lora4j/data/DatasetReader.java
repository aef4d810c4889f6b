package io.lora4j.data;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import io.lora4j.io.FormatException;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Reads dataset files into {@link Sample}s: JSONL (one object per line) or a JSON array of
 * objects, one file or every {@code *.jsonl} / {@code *.json} file of a directory (sorted by
 * name). A row that is not valid JSON, lacks a field of its format, has a field of the wrong type,
 * an empty conversation or an unknown role is <em>bad</em>: it is skipped, counted and remembered
 * with its file and line. More bad rows than {@code maxBadFraction} of all rows is an error.
 */
public final class DatasetReader {
    /** Bad rows remembered for the report (all are counted). */
    static final int MAX_REPORTED_BAD = 10;
    private static final Pattern LINE = Pattern.compile("line (\\d+)");

    /** What {@link #read} found. */
    public record Result(DatasetFormat format, List<Sample> samples, int rows, int badRows, List<String> badExamples) {
        public Result {
            samples = List.copyOf(samples);
            badExamples = List.copyOf(badExamples);
        }
    }

    /** A row that does not match its format. */
    static final class BadRow extends Exception {
        private static final long serialVersionUID = 1L;

        BadRow(String why) {
            super(why, null, false, false);
        }
    }

    private DatasetFormat format;
    private final List<Sample> samples = new ArrayList<>();
    private final List<String> bad = new ArrayList<>();
    private Path firstBadFile;
    private int rows, badRows;

    private DatasetReader(DatasetFormat format) {
        this.format = format == DatasetFormat.AUTO ? null : format;
    }

    /**
     * Reads a file or directory.
     *
     * @param maxBadFraction the largest tolerated share of bad rows, in [0, 1]
     * @throws FormatException one line naming the file: no such file, no rows, undetectable format,
     *                         or too many bad rows (with the counts and the first bad line)
     */
    public static Result read(Path path, DatasetFormat format, double maxBadFraction) throws IOException {
        DatasetReader r = new DatasetReader(format);
        List<Path> files = files(path);
        for (Path f : files) r.readFile(f);
        if (r.badRows > maxBadFraction * r.rows) {
            throw new FormatException(r.firstBadFile, String.format(Locale.ROOT,
                    "%d of %d rows are bad (%.1f%%, more than max_bad_row_fraction %s); first: %s", r.badRows, r.rows,
                    100.0 * r.badRows / Math.max(1, r.rows), fmt(maxBadFraction), r.bad.get(0)));
        }
        if (r.samples.isEmpty()) throw new FormatException(path, "no rows");
        return new Result(r.format, r.samples, r.rows, r.badRows, r.bad);
    }

    private static String fmt(double d) {
        return d == Math.rint(d) ? String.valueOf((long) d) : String.valueOf(d);
    }

    /** The data files of {@code path}: itself, or the *.jsonl and *.json files of a directory, sorted. */
    static List<Path> files(Path path) throws IOException {
        if (!Files.exists(path)) throw new FormatException(path, "no such file or directory");
        if (!Files.isDirectory(path)) return List.of(path);
        List<Path> out;
        try (Stream<Path> s = Files.list(path)) {
            out = s.filter(p -> Files.isRegularFile(p)).filter(p -> {
                String n = p.getFileName().toString().toLowerCase(Locale.ROOT);
                return n.endsWith(".jsonl") || n.endsWith(".json");
            }).sorted().toList();
        }
        if (out.isEmpty()) throw new FormatException(path, "no .jsonl or .json files in this directory");
        return out;
    }

    private void readFile(Path file) throws IOException {
        String name = file.getFileName().toString();
        try (BufferedReader in = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            in.mark(4096);
            int c;
            do c = in.read(); while (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0xFEFF);
            in.reset();
            if (c == '[') readArray(file, name, in);
            else readLines(file, name, in);
        } catch (java.nio.charset.CharacterCodingException e) {
            throw new FormatException(file, "not UTF-8 text");
        }
    }

    private void readLines(Path file, String name, BufferedReader in) throws IOException {
        int lineNo = 0;
        for (String line; (line = in.readLine()) != null; ) {
            lineNo++;
            if (line.isBlank()) continue;
            JsonElement e;
            try {
                e = JsonParser.parseString(line);
            } catch (JsonParseException ex) {
                rows++;
                bad(file, name, lineNo, "not valid JSON");
                continue;
            }
            row(file, name, lineNo, e);
        }
    }

    private void readArray(Path file, String name, Reader in) throws IOException {
        JsonReader jr = new JsonReader(in);
        try {
            jr.beginArray();
            while (jr.hasNext()) {
                jr.peek();
                int line = line(jr);
                row(file, name, line, JsonParser.parseReader(jr));
            }
            jr.endArray();
            if (jr.peek() != JsonToken.END_DOCUMENT) throw new FormatException(file, "text after the JSON array at line " + line(jr));
        } catch (JsonParseException | IllegalStateException | java.io.EOFException | com.google.gson.stream.MalformedJsonException e) {
            throw new FormatException(file, "not a valid JSON array near line " + line(jr));
        }
    }

    /** The current line of a JsonReader (gson reports it only in toString). */
    private static int line(JsonReader jr) {
        Matcher m = LINE.matcher(jr.toString());
        return m.find() ? Integer.parseInt(m.group(1)) : -1;
    }

    private void row(Path file, String name, int line, JsonElement e) throws FormatException {
        rows++;
        if (!e.isJsonObject()) {
            bad(file, name, line, "expected a JSON object");
            return;
        }
        JsonObject o = e.getAsJsonObject();
        if (format == null) {
            format = detect(o);
            if (format == null)
                throw new FormatException(file, "line " + line + ": cannot detect the dataset format from the keys " + o.keySet()
                        + " (expected messages, conversations, instruction+output, prompt+completion, text or input_ids; or set dataset_format)");
        }
        try {
            samples.add(parse(o, format, name, line));
        } catch (BadRow b) {
            bad(file, name, line, b.getMessage());
        }
    }

    private void bad(Path file, String name, int line, String why) {
        if (firstBadFile == null) firstBadFile = file;
        badRows++;
        if (bad.size() < MAX_REPORTED_BAD) bad.add(name + " line " + line + ": " + why);
    }

    /** The format a row's keys indicate, or null. */
    public static DatasetFormat detect(JsonObject o) {
        if (o.has("messages")) return DatasetFormat.CONVERSATIONAL;
        if (o.has("conversations")) return DatasetFormat.SHAREGPT;
        if (o.has("instruction") && o.has("output")) return DatasetFormat.ALPACA;
        if (o.has("prompt") && o.has("completion")) return DatasetFormat.PROMPT_COMPLETION;
        if (o.has("input_ids")) return DatasetFormat.TOKENIZED;
        if (o.has("text")) return DatasetFormat.TEXT;
        return null;
    }

    /** One row in {@code format}; unknown extra keys are ignored. */
    static Sample parse(JsonObject o, DatasetFormat format, String source, int line) throws BadRow {
        switch (format) {
            case CONVERSATIONAL:
                return new Sample.Chat(source, line, messages(o, "messages", "role", "content"));
            case SHAREGPT:
                return new Sample.Chat(source, line, messages(o, "conversations", "from", "value"));
            case ALPACA: {
                String instruction = string(o, "instruction"), output = string(o, "output");
                String input = o.has("input") && !o.get("input").isJsonNull() ? string(o, "input") : "";
                String user = input.isBlank() ? instruction : instruction + "\n\n" + input;
                return new Sample.Chat(source, line, List.of(Message.user(user), Message.assistant(output)));
            }
            case PROMPT_COMPLETION: {
                JsonElement p = o.get("prompt"), c = o.get("completion");
                if (p != null && p.isJsonArray() && c != null && c.isJsonArray()) {
                    List<Message> all = new ArrayList<>(messages(o, "prompt", "role", "content", true));
                    all.addAll(messages(o, "completion", "role", "content", true));
                    if (all.isEmpty()) throw new BadRow("prompt and completion are empty conversations");
                    return new Sample.Chat(source, line, all);
                }
                return new Sample.PromptCompletion(source, line, string(o, "prompt"), string(o, "completion"));
            }
            case TEXT:
                return new Sample.Text(source, line, string(o, "text"));
            case TOKENIZED:
                return tokens(o, source, line);
            default:
                throw new IllegalStateException(format.toString());
        }
    }

    private static String string(JsonObject o, String key) throws BadRow {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) throw new BadRow("missing \"" + key + "\"");
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) throw new BadRow("\"" + key + "\" is not a string");
        return e.getAsString();
    }

    private static List<Message> messages(JsonObject o, String key, String roleKey, String contentKey) throws BadRow {
        return messages(o, key, roleKey, contentKey, false);
    }

    private static List<Message> messages(JsonObject o, String key, String roleKey, String contentKey, boolean allowEmpty) throws BadRow {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) throw new BadRow("missing \"" + key + "\"");
        if (!e.isJsonArray()) throw new BadRow("\"" + key + "\" is not an array of messages");
        JsonArray a = e.getAsJsonArray();
        if (a.isEmpty() && !allowEmpty) throw new BadRow("\"" + key + "\" is an empty conversation");
        List<Message> out = new ArrayList<>(a.size());
        for (int i = 0; i < a.size(); i++) {
            String where = key + "[" + i + "]";
            if (!a.get(i).isJsonObject()) throw new BadRow(where + " is not an object");
            JsonObject m = a.get(i).getAsJsonObject();
            JsonElement r = m.get(roleKey), c = m.get(contentKey);
            if (r == null || !r.isJsonPrimitive() || !r.getAsJsonPrimitive().isString())
                throw new BadRow(where + " has no string \"" + roleKey + "\"");
            if (c == null || !c.isJsonPrimitive() || !c.getAsJsonPrimitive().isString())
                throw new BadRow(where + " has no string \"" + contentKey + "\"");
            String role = role(r.getAsString());
            if (role == null) throw new BadRow(where + "." + roleKey + " '" + r.getAsString() + "' is not system, user or assistant"
                    + (roleKey.equals("from") ? " (or human, gpt)" : ""));
            out.add(new Message(role, c.getAsString()));
        }
        return out;
    }

    /** Normalises ShareGPT and TRL role names (as Unsloth's standardize_sharegpt): null when unknown. */
    static String role(String r) {
        switch (r) {
            case "system": return Message.SYSTEM;
            case "user": case "human": return Message.USER;
            case "assistant": case "gpt": return Message.ASSISTANT;
            default: return null;
        }
    }

    private static Sample.Tokens tokens(JsonObject o, String source, int line) throws BadRow {
        int[] ids = ints(o, "input_ids", false);
        if (ids.length == 0) throw new BadRow("\"input_ids\" is empty");
        for (int i = 0; i < ids.length; i++) if (ids[i] < 0) throw new BadRow("input_ids[" + i + "] = " + ids[i] + " is negative");
        int[] labels = o.has("labels") && !o.get("labels").isJsonNull() ? ints(o, "labels", true) : ids.clone();
        if (labels.length != ids.length) throw new BadRow(ids.length + " input_ids but " + labels.length + " labels");
        for (int i = 0; i < labels.length; i++)
            if (labels[i] != Example.IGNORE_INDEX && labels[i] < 0) throw new BadRow("labels[" + i + "] = " + labels[i] + " is neither an id nor -100");
        if (o.has("attention_mask") && !o.get("attention_mask").isJsonNull()) {
            int[] mask = ints(o, "attention_mask", false);
            if (mask.length != ids.length) throw new BadRow(ids.length + " input_ids but " + mask.length + " attention_mask entries");
            int n = 0;
            for (int i = 0; i < mask.length; i++) {
                if (mask[i] != 0 && mask[i] != 1) throw new BadRow("attention_mask[" + i + "] = " + mask[i] + " is not 0 or 1");
                if (mask[i] == 1) {
                    ids[n] = ids[i];
                    labels[n++] = labels[i];
                }
            }
            if (n == 0) throw new BadRow("attention_mask masks every token");
            ids = java.util.Arrays.copyOf(ids, n);
            labels = java.util.Arrays.copyOf(labels, n);
        }
        return new Sample.Tokens(source, line, ids, labels);
    }

    private static int[] ints(JsonObject o, String key, boolean allowIgnore) throws BadRow {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) throw new BadRow("missing \"" + key + "\"");
        if (!e.isJsonArray()) throw new BadRow("\"" + key + "\" is not an array of integers");
        JsonArray a = e.getAsJsonArray();
        int[] r = new int[a.size()];
        for (int i = 0; i < r.length; i++) {
            JsonElement x = a.get(i);
            if (!x.isJsonPrimitive() || !x.getAsJsonPrimitive().isNumber()) throw new BadRow(key + "[" + i + "] is not an integer");
            double d = x.getAsDouble();
            if (d != Math.rint(d) || d > Integer.MAX_VALUE || d < Integer.MIN_VALUE) throw new BadRow(key + "[" + i + "] is not an integer");
            r[i] = (int) d;
        }
        return r;
    }
}
