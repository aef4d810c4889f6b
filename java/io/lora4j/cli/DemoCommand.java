package io.lora4j.cli;

import io.lora4j.advice.TrainingMonitor;
import io.lora4j.data.DataConfig;
import io.lora4j.data.DataPipeline;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.FormatException;
import io.lora4j.lora.AdaptedModel;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.model.LlamaModel;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.model.Sampler;
import io.lora4j.ops.CpuThreads;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.report.LossChart;
import io.lora4j.tensor.Device;
import io.lora4j.tokenizer.Tokenizer;
import io.lora4j.tokenizer.Tokenizers;
import io.lora4j.train.RunConfig;
import io.lora4j.train.TrainingListener;
import io.lora4j.train.TrainingRun;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/**
 * {@code lora4j demo}: the first thing a new user runs. Fine-tunes a LoRA on the real stories15M
 * with the guide's defaults on a small instruction set shipped in the jar, and shows what changed:
 * the held-out eval loss before and after, and the answers to held-out prompts before and after.
 */
public final class DemoCommand implements Command {
    /** The hand-written instruction set (examples/data/simple-instructions.jsonl), packaged in the jar. */
    static final String DATA_RESOURCE = "/io/lora4j/demo/simple-instructions.jsonl";
    static final String MARKER = ".lora4j-demo";
    static final int SHOWN_PROMPTS = 3;

    @Override public String name() { return "demo"; }

    @Override public String summary() { return "fine-tune stories15M on a small instruction set and show the difference"; }

    @Override public String synopsis() {
        return "demo [--out DIR] [--epochs N] [--learning-rate LR] [--threads N] [--device cpu|cuda]";
    }

    @Override public String description() {
        return "Uses the assets of scripts/fetch-assets.sh (the ./lora4j launcher fetches them first) from $LORA4J_CACHE or\n"
                + "~/.cache/lora4j: Karpathy's stories15M and the Llama-2 tokenizer. Trains a LoRA (r 16, alpha 16, all 7 projections,\n"
                + "lr 2e-4, batch 2 x accumulation 4, linear schedule with 10% warmup, weight decay 0.01: the guide's defaults) on 134\n"
                + "hand-written instructions in the alpaca template, responses only, 10% held out; then prints the eval loss and the\n"
                + "held-out answers before and after, and where the adapter was written. A previous demo output is replaced.";
    }

    @Override
    public Options options() {
        return new Options()
                .addOption(Option.builder().longOpt("out").hasArg().argName("DIR").desc("output directory (default ./lora4j-demo)").get())
                .addOption(Option.builder().longOpt("epochs").hasArg().argName("N").desc("epochs (default 3, the guide's upper end)").get())
                .addOption(Option.builder().longOpt("learning-rate").hasArg().argName("LR").desc("learning rate (default 2e-4)").get())
                .addOption(Option.builder().longOpt("threads").hasArg().argName("N").desc("CPU threads (default: the physical cores)").get())
                .addOption(Option.builder().longOpt("device").hasArg().argName("cpu|cuda").desc("compute device (default: automatic)").get());
    }

    static Path cache(CliContext ctx) {
        String env = ctx.env().get("LORA4J_CACHE");
        return env != null && !env.isEmpty() ? Path.of(env) : Path.of(System.getProperty("user.home"), ".cache", "lora4j");
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        if (!cl.getArgList().isEmpty()) throw new UsageException("unexpected argument '" + cl.getArgList().get(0) + "'");
        Path out = Path.of(cl.getOptionValue("out", "lora4j-demo"));
        int epochs = Cli.parseInt(cl, "epochs", 3);
        if (epochs < 1) throw new UsageException("--epochs must be >= 1, got " + epochs);
        float lr = Cli.parseFloat(cl, "learning-rate", 2e-4f);
        if (!(lr > 0)) throw new UsageException("--learning-rate must be > 0, got " + lr);
        if (cl.hasOption("threads")) {
            int n = Cli.parseInt(cl, "threads", 0);
            if (n < 1) throw new UsageException("--threads must be >= 1, got " + n);
            CpuThreads.set(n);
        }
        String device = cl.getOptionValue("device");
        if (device != null && !device.equals("cpu") && !device.equals("cuda"))
            throw new UsageException("--device must be cpu or cuda, got '" + device + "'");

        Path cache = cache(ctx);
        Path model = cache.resolve("stories15M.bin"), tokenizer = cache.resolve("tokenizer.model");
        for (Path p : List.of(model, tokenizer))
            if (!Files.isRegularFile(p)) throw new FormatException(p, "missing: run scripts/fetch-assets.sh (the ./lora4j launcher does it for demo)");
        if (Files.exists(out) && !Files.exists(out.resolve(MARKER))) AtomicFiles.checkOutput(out.toAbsolutePath(), false);

        ctx.out().println("lora4j demo: LoRA fine-tuning of stories15M (15M parameters, Llama 2 architecture) on 134 short instructions");
        ctx.out().println("model " + model + ", tokenizer " + tokenizer + ", output " + out.toAbsolutePath());

        Path dataDir = out.resolve("data");
        Files.createDirectories(dataDir);
        Files.writeString(out.resolve(MARKER), "written by lora4j demo; a later demo may replace this directory\n");
        Path data = dataDir.resolve("simple-instructions.jsonl");
        try (InputStream in = DemoCommand.class.getResourceAsStream(DATA_RESOURCE)) {
            if (in == null) throw new IllegalStateException("the jar lacks " + DATA_RESOURCE);
            Files.copy(in, data, StandardCopyOption.REPLACE_EXISTING);
        }

        Map<String, Object> cfg = new LinkedHashMap<>();
        cfg.put("model", model.toString());
        cfg.put("tokenizer", tokenizer.toString());
        cfg.put("dataset", data.toString());
        cfg.put("eval_split", 0.1);
        cfg.put("chat_template", "alpaca");
        cfg.put("train_on_responses_only", true);
        cfg.put("max_seq_length", 256);
        cfg.put("r", 16);
        cfg.put("lora_alpha", 16);
        cfg.put("learning_rate", (double) lr);
        cfg.put("num_train_epochs", epochs);
        cfg.put("per_device_train_batch_size", 2);
        cfg.put("gradient_accumulation_steps", 4);
        cfg.put("warmup_ratio", 0.1);
        cfg.put("weight_decay", 0.01);
        cfg.put("logging_steps", 5);
        cfg.put("eval_steps", 16);
        if (device != null) cfg.put("device", device);
        RunConfig run = RunConfig.from(cfg);

        // The held-out prompts: eval rows cut at the response marker.
        Tokenizer tok = Tokenizers.load(tokenizer);
        DataPipeline pipeline = DataPipeline.build(run.data(), tok, tokenizer);
        String marker = pipeline.masker().map(m -> m.response()).orElse("### Response:\n");
        List<String> prompts = new ArrayList<>(), references = new ArrayList<>();
        for (DataPipeline.Row r : pipeline.evalRows()) {
            int at = r.text().indexOf(marker);
            if (at < 0) continue;
            prompts.add(r.text().substring(0, at + marker.length()));
            references.add(r.text().substring(at + marker.length()).strip());
            if (prompts.size() == SHOWN_PROMPTS) break;
        }

        Backend backend;
        try {
            backend = Backends.select(device == null ? Optional.empty() : Optional.of(Device.parse(device)));
        } catch (IllegalStateException e) {
            throw new IllegalArgumentException("--device " + device + ": " + e.getMessage());
        }
        List<String> before = answer(backend, model, tok, prompts, null);

        ctx.out().println();
        ctx.out().println("== training (" + epochs + " epochs, lr " + lr + "; the log follows) ==");
        Path adapterDir = out.resolve("adapter");
        long t0 = System.nanoTime();
        TrainingRun.Summary s = TrainingRun.run(run, adapterDir, true, ctx.out(),
                TrainingListener.all(new TrainingMonitor(ctx.out(), run), LossChart.onFinish(ctx.out())));
        double seconds = (System.nanoTime() - t0) / 1e9;

        List<String> after = answer(backend, model, tok, prompts, adapterDir);
        ctx.out().println();
        ctx.out().println("== held-out instructions: base model vs fine-tuned ==");
        for (int i = 0; i < prompts.size(); i++) {
            String instr = prompts.get(i).replace(marker, "").strip();
            int cut = instr.lastIndexOf("### Instruction:");
            ctx.out().println("instruction: " + (cut >= 0 ? instr.substring(cut + "### Instruction:".length()).strip() : instr));
            ctx.out().println("  reference : " + references.get(i).replace("</s>", "").strip());
            ctx.out().println("  before    : " + before.get(i));
            ctx.out().println("  after     : " + after.get(i));
        }
        ctx.out().println();
        ctx.out().printf(Locale.ROOT, "eval loss on %d held-out instructions (response tokens only): %.4f before -> %.4f after (%+.1f %%)%n",
                pipeline.eval().size(), s.initialEval(), s.finalEval(), 100 * (s.finalEval() / s.initialEval() - 1));
        ctx.out().printf(Locale.ROOT, "train loss: %s%n", curve(s.losses()));
        ctx.out().printf(Locale.ROOT, "%d steps in %.0f s; adapter (PEFT format): %s; metrics: %s%n", s.steps(), seconds,
                adapterDir.toAbsolutePath(), adapterDir.resolve(TrainingRun.METRICS).toAbsolutePath());
        ctx.out().println("use it: lora4j generate --model " + model + " --adapter " + adapterDir + " --prompt TEXT"
                + "  |  lora4j verify " + adapterDir);
        return OK;
    }

    /** Greedy answers (up to 48 tokens, stopping at EOS) of the base model, or with an adapter. */
    static List<String> answer(Backend backend, Path model, Tokenizer tok, List<String> prompts, Path adapter) throws IOException {
        List<String> answers = new ArrayList<>();
        try (LlamaWeights w = ModelLoader.load(model, ModelLoader.Options.defaults().withBackend(backend))) {
            AdaptedModel am = null;
            if (adapter != null) {
                try (LoraAdapter a = LoraAdapter.load(adapter, backend, w.config())) {
                    am = AdaptedModel.merge(backend, w, a, 1.0);
                }
            }
            try (LlamaModel m = LlamaModel.create(backend, am != null ? am.weights() : w)) {
                for (String p : prompts) {
                    // The rendered prompt already starts with BOS: encode it without adding another.
                    int[] ids = tok.encodeWithSpecials(p, true, false);
                    StringBuilder sb = new StringBuilder();
                    List<Integer> gen = new ArrayList<>();
                    try (LlamaModel.KvCache c = m.newCache(Math.min(m.config().maxPositionEmbeddings(), ids.length + 48))) {
                        float[] logits = null;
                        for (int id : ids) logits = m.decode(c, id);
                        while (c.length() < ids.length + 48 && c.length() < m.config().maxPositionEmbeddings()) {
                            int next = Sampler.argmax(logits);
                            if (next == tok.eosId()) break;
                            gen.add(next);
                            if (c.length() + 1 >= ids.length + 48) break;
                            logits = m.decode(c, next);
                        }
                    }
                    int[] g = gen.stream().mapToInt(Integer::intValue).toArray();
                    sb.append(tok.decode(g).strip().replace('\n', ' '));
                    answers.add(sb.toString());
                }
            } finally {
                if (am != null) am.close();
            }
        }
        return answers;
    }

    /** A one-line sparkline of the per-step train loss. */
    static String curve(List<Double> losses) {
        if (losses.isEmpty()) return "(no steps)";
        String bars = "▁▂▃▄▅▆▇█";
        double lo = Double.MAX_VALUE, hi = -Double.MAX_VALUE;
        for (double l : losses) {
            lo = Math.min(lo, l);
            hi = Math.max(hi, l);
        }
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "%.3f ", losses.get(0)));
        for (double l : losses) sb.append(bars.charAt(hi > lo ? (int) Math.round((l - lo) / (hi - lo) * 7) : 0));
        sb.append(String.format(Locale.ROOT, " %.3f", losses.get(losses.size() - 1)));
        return sb.toString();
    }
}
