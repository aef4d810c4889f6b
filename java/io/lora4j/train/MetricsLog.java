package io.lora4j.train;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import io.lora4j.io.AtomicFiles;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * {@code metrics.jsonl}: one JSON object per line, appended and flushed row by row, fsynced before
 * each checkpoint so that the rows a checkpoint's step covers are on disk with it. A resumed run
 * keeps the rows up to its checkpoint's step, drops the later ones (the steps it will redo and the
 * old final summary) and appends.
 */
final class MetricsLog implements AutoCloseable {
    /** Non-finite losses are written as NaN/Infinity, as Python's json module reads them. */
    private static final Gson GSON = new GsonBuilder().serializeSpecialFloatingPointValues().create();

    private final FileOutputStream stream;
    private final Writer writer;

    /** {@code file} null: rows go nowhere. */
    private MetricsLog(Path file, boolean append) throws IOException {
        stream = file == null ? null : new FileOutputStream(file.toFile(), append);
        writer = file == null ? Writer.nullWriter() : new OutputStreamWriter(stream, StandardCharsets.UTF_8);
    }

    /** A log that writes nothing: a data-parallel rank that does not write the run's outputs. */
    static MetricsLog discarding() throws IOException {
        return new MetricsLog(null, false);
    }

    /** A new, empty log (an existing file is truncated). */
    static MetricsLog create(Path file) throws IOException {
        return new MetricsLog(file, false);
    }

    /**
     * Keeps the rows of {@code file} whose {@code step} is at most {@code step} (rewritten
     * atomically), then appends to it.
     */
    static MetricsLog resume(Path file, long step) throws IOException {
        StringBuilder kept = new StringBuilder();
        if (Files.isRegularFile(file)) {
            for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
                if (line.isBlank()) continue;
                try {
                    JsonElement e = JsonParser.parseString(line);
                    if (e.isJsonObject() && e.getAsJsonObject().has("step") && e.getAsJsonObject().get("step").getAsLong() <= step)
                        kept.append(line).append('\n');
                } catch (JsonParseException | IllegalStateException | NumberFormatException | UnsupportedOperationException e) {
                    // a line torn by a killed process: it was after the checkpoint's rows, drop it
                }
            }
        }
        AtomicFiles.writeBytes(file, kept.toString().getBytes(StandardCharsets.UTF_8));
        return new MetricsLog(file, true);
    }

    /** Appends a step's row (see {@link MetricsRow} for the fields and their order). */
    void write(MetricsRow row) throws IOException {
        JsonObject j = new JsonObject();
        j.addProperty("step", row.step());
        j.addProperty("epoch", row.epoch());
        if (row.skipped() != null) j.addProperty("skipped", row.skipped());
        if (row.loss() != null) j.addProperty("loss", row.loss());
        if (row.learningRate() != null) j.addProperty("learning_rate", row.learningRate());
        if (row.gradNorm() != null) j.addProperty("grad_norm", row.gradNorm());
        if (row.tokensPerSecond() != null) j.addProperty("tokens_per_second", row.tokensPerSecond());
        if (row.rowIds() != null) j.add("row_ids", GSON.toJsonTree(row.rowIds()));
        if (row.sourceLines() != null) j.add("source_lines", GSON.toJsonTree(row.sourceLines()));
        if (row.evalLoss() != null) j.addProperty("eval_loss", row.evalLoss());
        write(j);
    }

    /** Appends {@code row} (an event or the final summary) as one line and flushes it to the OS. */
    void write(JsonObject row) throws IOException {
        writer.write(GSON.toJson(row));
        writer.write('\n');
        writer.flush();
    }

    /** Forces the rows written so far to disk. */
    void sync() throws IOException {
        writer.flush();
        if (stream != null) stream.getFD().sync();
    }

    @Override
    public void close() throws IOException {
        writer.close();
    }
}
