package io.lora4j.cli;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import io.lora4j.data.Example;
import io.lora4j.io.FormatException;
import io.lora4j.model.Perplexity;
import io.lora4j.tokenizer.Tokenizer;
import io.lora4j.train.SimpleDataset;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/** {@code lora4j eval}: mean next-token cross-entropy and perplexity over a JSONL file. */
public final class EvalCommand implements Command {
    @Override public String name() { return "eval"; }

    @Override public String summary() { return "mean token loss and perplexity of a model on a JSONL file"; }

    @Override public String synopsis() {
        return "eval --model M --data FILE [--json]";
    }

    @Override public String description() {
        return "FILE holds one JSON object per line: {\"text\": ...} (scored as [BOS] + text + [EOS]) or {\"input_ids\": [...]}\n"
                + "(scored as given). Every token after the first of a row is predicted once; rows longer than the model's\n"
                + "max_position_embeddings are scored in consecutive windows of that length.";
    }

    @Override
    public Options options() {
        return ModelArgs.addTo(new Options())
                .addOption(Option.builder().longOpt("data").hasArg().argName("FILE").required().desc("JSONL of {text} or {input_ids} rows").get())
                .addOption(Option.builder().longOpt("json").desc("print {loss, perplexity, tokens, rows} as JSON").get());
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        if (!cl.getArgList().isEmpty()) throw new UsageException("unexpected argument '" + cl.getArgList().get(0) + "'");
        Path data = Path.of(cl.getOptionValue("data"));
        if (!Files.isRegularFile(data)) throw new FormatException(data, Files.exists(data) ? "not a regular file" : "no such file");
        try (ModelArgs m = ModelArgs.open(cl)) {
            List<int[]> rows = readRows(data, m.tokenizer, m.model.config().vocabSize());
            long t0 = System.nanoTime();
            Perplexity.Result r = Perplexity.evaluate(m.model, rows);
            double seconds = (System.nanoTime() - t0) / 1e9;
            if (cl.hasOption("json")) {
                JsonObject j = new JsonObject();
                j.addProperty("loss", r.meanLoss());
                j.addProperty("perplexity", r.perplexity());
                j.addProperty("tokens", r.tokens());
                j.addProperty("rows", rows.size());
                j.addProperty("windows", r.windows());
                j.addProperty("seconds", seconds);
                ctx.out().println(new GsonBuilder().setPrettyPrinting().create().toJson(j));
            } else {
                ctx.out().printf(Locale.ROOT, "loss %.4f  perplexity %.3f  (%d tokens in %d rows, %.1f s)%n", r.meanLoss(),
                        r.perplexity(), r.tokens(), rows.size(), seconds);
            }
        }
        return OK;
    }

    /**
     * Token rows of a JSONL file ({@link SimpleDataset}'s rules: [BOS] + text + [EOS], or input_ids
     * as given; a bad line is a {@link FormatException} naming file and line). Nothing is truncated:
     * {@link Perplexity} scores long rows in windows.
     */
    static List<int[]> readRows(Path file, Tokenizer tok, int vocab) throws IOException {
        List<int[]> rows = new ArrayList<>();
        for (Example e : SimpleDataset.read(file, tok, vocab, Integer.MAX_VALUE).rows()) rows.add(e.inputIds());
        return rows;
    }
}
