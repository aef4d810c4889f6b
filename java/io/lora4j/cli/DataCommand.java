package io.lora4j.cli;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import io.lora4j.data.DataConfig;
import io.lora4j.data.DataPipeline;
import io.lora4j.data.DemoData;
import io.lora4j.data.Example;
import io.lora4j.data.TokenText;
import io.lora4j.io.FormatException;
import io.lora4j.tokenizer.Tokenizer;
import io.lora4j.tokenizer.Tokenizers;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;
import org.yaml.snakeyaml.error.YAMLException;

/**
 * {@code lora4j data}: what the trainer will see. Reads the data keys of a run config (dataset,
 * chat_template, train_on_responses_only, ..., and model/tokenizer to find the tokenizer and its
 * chat template), prints a summary, and writes the tokenized rows ({@code --dump}) or shows a few
 * with their trained spans marked ({@code --show}).
 */
public final class DataCommand implements Command {
    /** Trained-span markers of --show where no colour is used. */
    static final String OPEN = "[[", CLOSE = "]]";
    private static final String GREEN = "\u001b[32m", RESET = "\u001b[0m";

    @Override public String name() { return "data"; }

    @Override public String summary() { return "tokenize a run's dataset and show or dump rows with their labels"; }

    @Override public String synopsis() {
        return "data --config run.yaml [--dump FILE [--limit N]] [--show N] [--eval]  |  data --demo-sets DIR";
    }

    @Override public String description() {
        return "Reads the data keys of the config (dataset, eval_dataset, eval_split, dataset_format, chat_template,\n"
                + "train_on_responses_only, instruction_part, response_part, last_response_only, packing, max_seq_length,\n"
                + "group_by_length, max_bad_row_fraction, seed) and model/tokenizer to find the tokenizer; other keys are ignored.\n"
                + "--dump writes one JSON object per row: {\"text\": rendered, \"input_ids\": [...], \"labels\": [...]} with labels\n"
                + "aligned to input_ids (-100 = no loss; the loss shifts). --show prints rows with trained tokens in [[ ]]\n"
                + "(green on a terminal). --demo-sets DIR writes the demo sets built from the fetched assets (scripts/fetch-assets.sh):\n"
                + "capitals-{train,eval}.jsonl (50 US state capitals as chats, held-out phrasings) and moby-dick-{train,eval}.jsonl\n"
                + "(chapters as text, every tenth held out).";
    }

    @Override
    public Options options() {
        return new Options()
                .addOption(Option.builder().longOpt("config").hasArg().argName("FILE").desc("run config (YAML)").get())
                .addOption(Option.builder().longOpt("demo-sets").hasArg().argName("DIR").desc("write the capitals and moby-dick demo sets into DIR").get())
                .addOption(Option.builder().longOpt("dump").hasArg().argName("FILE").desc("write the tokenized rows as JSONL").get())
                .addOption(Option.builder().longOpt("limit").hasArg().argName("N").desc("dump only the first N rows").get())
                .addOption(Option.builder().longOpt("show").hasArg().argName("N").desc("print the first N rows with trained spans marked").get())
                .addOption(Option.builder().longOpt("eval").desc("dump/show the eval rows instead of the training rows").get());
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        if (!cl.getArgList().isEmpty()) throw new UsageException("unexpected argument '" + cl.getArgList().get(0) + "'");
        int show = Cli.parseInt(cl, "show", 0), limit = Cli.parseInt(cl, "limit", Integer.MAX_VALUE);
        if (show < 0) throw new UsageException("--show must be >= 0, got " + show);
        if (limit < 0) throw new UsageException("--limit must be >= 0, got " + limit);
        if (cl.hasOption("limit") && !cl.hasOption("dump")) throw new UsageException("--limit needs --dump");
        if (cl.hasOption("demo-sets")) {
            if (cl.hasOption("config")) throw new UsageException("--demo-sets takes no --config");
            Path dir = Path.of(cl.getOptionValue("demo-sets"));
            Files.createDirectories(dir);
            for (DemoData.Written w : List.of(DemoData.capitals(DemoData.datasetsDir(), dir), DemoData.mobyDick(DemoData.datasetsDir(), dir)))
                ctx.out().printf(Locale.ROOT, "wrote %s (%d rows) and %s (%d rows)%n", w.train(), w.trainRows(), w.eval(), w.evalRows());
            return OK;
        }
        if (!cl.hasOption("config")) throw new UsageException("missing required option --config (or --demo-sets DIR)");
        Path configFile = Path.of(cl.getOptionValue("config"));
        Map<String, Object> config = readYaml(configFile);
        DataConfig dc;
        try {
            dc = DataConfig.fromMap(config);
        } catch (IllegalArgumentException e) {
            throw new FormatException(configFile, e.getMessage());
        }
        Path tokPath = tokenizerPath(configFile, config);
        Tokenizer tok = Tokenizers.load(tokPath);
        DataPipeline p = DataPipeline.build(dc, tok, tokPath);
        ctx.out().println(p.stats().summary());
        int batch = intKey(configFile, config, "per_device_train_batch_size", 2);
        int ga = intKey(configFile, config, "gradient_accumulation_steps", 8);
        ctx.out().printf(Locale.ROOT, "steps per epoch at batch %d x gradient accumulation %d: %d%n", batch, ga, p.stepsPerEpoch(batch, ga));
        List<DataPipeline.Row> rows = cl.hasOption("eval") ? p.evalRows() : p.trainRows();
        if (cl.hasOption("dump")) {
            Path out = Path.of(cl.getOptionValue("dump"));
            int n = dump(rows, out, limit);
            ctx.out().println("wrote " + n + " rows to " + out);
        }
        if (show > 0) {
            boolean color = System.console() != null && ctx.out() == System.out && !"dumb".equals(ctx.env().get("TERM"))
                    && !ctx.env().containsKey("NO_COLOR");
            for (int i = 0; i < Math.min(show, rows.size()); i++) show(ctx.out(), tok, rows.get(i), i, color);
        }
        return OK;
    }

    static Map<String, Object> readYaml(Path file) throws IOException {
        if (!Files.isRegularFile(file)) throw new FormatException(file, Files.exists(file) ? "not a regular file" : "no such file");
        LoaderOptions lo = new LoaderOptions();
        lo.setAllowDuplicateKeys(false);
        lo.setMaxAliasesForCollections(50);
        Object root;
        try (InputStream in = Files.newInputStream(file)) {
            root = new Yaml(new SafeConstructor(lo)).load(in);
        } catch (YAMLException e) {
            throw new FormatException(file, "not valid YAML: " + Main.oneLine(e.getMessage()));
        }
        if (root == null) return Map.of();
        if (!(root instanceof Map<?, ?> m)) throw new FormatException(file, "expected a mapping of config keys");
        @SuppressWarnings("unchecked")
        Map<String, Object> r = (Map<String, Object>) m;
        return r;
    }

    /** {@code tokenizer}, else the model's (ModelArgs.tokenizerPath rules). */
    static Path tokenizerPath(Path configFile, Map<String, Object> config) throws FormatException {
        Object tok = config.get("tokenizer"), model = config.get("model");
        if (tok != null) return Path.of(String.valueOf(tok));
        if (model == null) throw new FormatException(configFile, "needs \"model\" or \"tokenizer\" to tokenize the dataset");
        return ModelArgs.tokenizerPath(Path.of(String.valueOf(model)), null);
    }

    private static int intKey(Path file, Map<String, Object> config, String key, int dflt) throws FormatException {
        Object v = config.get(key);
        if (v == null) return dflt;
        if (v instanceof Integer i && i >= 1) return i;
        throw new FormatException(file, key + " '" + v + "' is not a positive integer");
    }

    static int dump(List<DataPipeline.Row> rows, Path out, int limit) throws IOException {
        Gson gson = new GsonBuilder().disableHtmlEscaping().create();
        int n = 0;
        Path parent = out.toAbsolutePath().getParent();
        if (parent != null) Files.createDirectories(parent);
        try (BufferedWriter w = Files.newBufferedWriter(out, StandardCharsets.UTF_8)) {
            for (DataPipeline.Row r : rows) {
                if (n >= limit) break;
                JsonObject o = new JsonObject();
                o.addProperty("text", r.text());
                JsonArray ids = new JsonArray(), labels = new JsonArray();
                for (int id : r.example().inputIds()) ids.add(id);
                for (int l : r.example().labels()) labels.add(l);
                o.add("input_ids", ids);
                o.add("labels", labels);
                w.write(gson.toJson(o));
                w.write('\n');
                n++;
            }
        }
        return n;
    }

    /** One row with its trained tokens marked. */
    static void show(PrintStream out, Tokenizer tok, DataPipeline.Row r, int index, boolean color) {
        Example e = r.example();
        int[] ids = e.inputIds(), labels = e.labels();
        int trained = 0;
        for (int l : labels) if (l != Example.IGNORE_INDEX) trained++;
        out.printf(Locale.ROOT, "--- row %d (%s line %d): %d tokens, %d with a label%n", index, r.source(), r.line(), ids.length, trained);
        out.println(marked(tok, ids, labels, color));
    }

    /** The decoded ids with label-carrying runs wrapped in [[ ]] (or green). */
    static String marked(Tokenizer tok, int[] ids, int[] labels, boolean color) {
        TokenText t = TokenText.of(tok, ids);
        StringBuilder sb = new StringBuilder();
        int i = 0;
        while (i < ids.length) {
            boolean on = labels[i] != Example.IGNORE_INDEX;
            int j = i;
            while (j < ids.length && (labels[j] != Example.IGNORE_INDEX) == on) j++;
            String text = t.text(i, j);
            if (on) sb.append(color ? GREEN : OPEN).append(text).append(color ? RESET : CLOSE);
            else sb.append(text);
            i = j;
        }
        return sb.toString();
    }
}
