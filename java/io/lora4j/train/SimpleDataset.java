package io.lora4j.train;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.io.FormatException;
import io.lora4j.tokenizer.Tokenizer;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;

/**
 * A minimal training-data loader until the io.lora4j.data pipeline (chat templates, response
 * masking, packing) replaces it. JSONL rows are either {@code {"text": ...}}, trained on every
 * token of [BOS] + encode(text) + [EOS] (DESIGN.md §4 "Text rows"), or pre-tokenized
 * {@code {"input_ids": [...], "labels": [...]}} with HF-aligned labels (-100 = no loss; absent =
 * every token). Rows longer than max_seq_length are truncated (as TRL does); rows left without a
 * predicted token are skipped and counted.
 */
public final class SimpleDataset {
    /** Right-padding id: padded positions carry no loss and, causally, affect no real token. */
    public static final int PAD_ID = 0;

    private SimpleDataset() {}

    /**
     * @param rows      the usable rows in file order
     * @param skipped   rows dropped because no token carries loss
     * @param truncated rows cut to max_seq_length
     */
    public record Loaded(List<Example> rows, int skipped, int truncated) {}

    /**
     * Reads {@code file}.
     *
     * @throws FormatException naming the file and line of a bad row, or when no row is usable
     */
    public static Loaded read(Path file, Tokenizer tok, int vocab, int maxSeqLength) throws IOException {
        if (!Files.isRegularFile(file)) throw new FormatException(file, Files.exists(file) ? "not a regular file" : "no such file");
        List<Example> rows = new ArrayList<>();
        int skipped = 0, truncated = 0;
        try (BufferedReader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            int lineNo = 0;
            for (String line; (line = r.readLine()) != null; ) {
                lineNo++;
                if (line.isBlank()) continue;
                String where = "line " + lineNo;
                JsonObject o;
                try {
                    JsonElement e = JsonParser.parseString(line);
                    if (!e.isJsonObject()) throw new FormatException(file, where + ": expected a JSON object");
                    o = e.getAsJsonObject();
                } catch (JsonParseException e) {
                    throw new FormatException(file, where + ": not valid JSON");
                }
                int[] ids, labels;
                if (o.has("input_ids")) {
                    ids = intArray(file, where, o, "input_ids", vocab, false);
                    labels = o.has("labels") && !o.get("labels").isJsonNull() ? intArray(file, where, o, "labels", vocab, true) : ids.clone();
                    if (labels.length != ids.length)
                        throw new FormatException(file, where + ": " + ids.length + " input_ids but " + labels.length + " labels");
                } else if (o.has("text")) {
                    JsonElement t = o.get("text");
                    if (!t.isJsonPrimitive() || !t.getAsJsonPrimitive().isString()) throw new FormatException(file, where + ": text must be a string");
                    ids = tok.encode(t.getAsString(), true, true);
                    labels = ids.clone();
                } else {
                    throw new FormatException(file, where + ": a row needs \"text\" or \"input_ids\"");
                }
                if (ids.length > maxSeqLength) {
                    ids = java.util.Arrays.copyOf(ids, maxSeqLength);
                    labels = java.util.Arrays.copyOf(labels, maxSeqLength);
                    truncated++;
                }
                Example ex = new Example(ids, labels);
                if (ex.predictedTokens() == 0) skipped++;
                else rows.add(ex);
            }
        }
        if (rows.isEmpty())
            throw new FormatException(file, skipped > 0 ? "every row has all labels -100 (nothing to train on)" : "no rows");
        return new Loaded(rows, skipped, truncated);
    }

    private static int[] intArray(Path file, String where, JsonObject o, String key, int vocab, boolean labels) throws FormatException {
        JsonElement a = o.get(key);
        if (!a.isJsonArray()) throw new FormatException(file, where + ": " + key + " must be an array of integers");
        JsonArray arr = a.getAsJsonArray();
        int[] out = new int[arr.size()];
        for (int i = 0; i < out.length; i++) {
            JsonElement x = arr.get(i);
            if (!x.isJsonPrimitive() || !x.getAsJsonPrimitive().isNumber())
                throw new FormatException(file, where + ": " + key + "[" + i + "] is not a number");
            out[i] = x.getAsInt();
            boolean ok = (out[i] >= 0 && out[i] < vocab) || (labels && out[i] == Example.IGNORE_INDEX);
            if (!ok) throw new FormatException(file, where + ": " + key + "[" + i + "] = " + out[i] + " is outside the vocabulary of " + vocab);
        }
        return out;
    }

    /**
     * The optimizer-step windows of one epoch: rows in an order shuffled by
     * {@code Random(seed + epoch)}, cut into micro-batches of {@code batch} rows (the last may be
     * smaller) and grouped {@code ga} to a window (the last may hold fewer).
     */
    public static List<List<Batch>> epochWindows(List<Example> rows, int batch, int ga, long seed, int epoch) {
        List<Example> order = new ArrayList<>(rows);
        Collections.shuffle(order, new Random(seed + epoch));
        List<List<Batch>> out = new ArrayList<>();
        List<Batch> cur = new ArrayList<>();
        for (int i = 0; i < order.size(); i += batch) {
            cur.add(Batch.of(order.subList(i, Math.min(order.size(), i + batch)), PAD_ID));
            if (cur.size() == ga) {
                out.add(cur);
                cur = new ArrayList<>();
            }
        }
        if (!cur.isEmpty()) out.add(cur);
        return out;
    }

    /** Micro-batches of {@code batch} rows in file order (evaluation). */
    public static List<Batch> batches(List<Example> rows, int batch) {
        List<Batch> out = new ArrayList<>();
        for (int i = 0; i < rows.size(); i += batch) out.add(Batch.of(rows.subList(i, Math.min(rows.size(), i + batch)), PAD_ID));
        return out;
    }
}
