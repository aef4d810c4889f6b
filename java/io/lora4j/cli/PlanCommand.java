package io.lora4j.cli;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import io.lora4j.io.FormatException;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.Llama2c;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.Projection;
import io.lora4j.plan.MemoryEstimate;
import io.lora4j.plan.MemoryPlanner;
import io.lora4j.plan.PlanSettings;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.train.CheckpointMode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/**
 * {@code lora4j plan}: predicted peak memory of a training step per category, LoRA (dense base)
 * and QLoRA (NF4 base) side by side, and what fits a memory budget: the largest micro-batch (with
 * the gradient accumulation that keeps the effective batch) and the longest sequence. Reads only the
 * model's shape ({@link MemoryPlanner}).
 */
public final class PlanCommand implements Command {
    private static final long DEFAULT_VRAM = 24L << 30;

    @Override public String name() { return "plan"; }

    @Override public String summary() { return "predict training memory; largest batch and sequence for a budget"; }

    @Override public String synopsis() {
        return "plan --model M|config.json [--vram 24GiB] [--r 16] [--seq-len 2048] [--batch 2] [--checkpointing none|true|unsloth|chunked]"
                + " [--checkpoint-every k] [--load-in-4bit] [--effective-batch 16] [--json]";
    }

    @Override public String description() {
        return "M is a llama2.c .bin (its header is read), an HF model directory or a bare config.json: no weights are read.\n"
                + "Prints the peak bytes per memory category of one optimizer step as lora4j allocates them, for LoRA and QLoRA\n"
                + "side by side, then the largest batch (up to --effective-batch) and the longest sequence (up to\n"
                + "max_position_embeddings) that fit --vram. Storage follows --dtype (embedding, lm_head and the dense base in bf16\n"
                + "on cuda, fp32 on cpu; the NF4 base as packed nibbles + 8-bit double-quantized absmax, with an fp32 absmax copy on\n"
                + "cpu; norms fp32), activations follow --bf16 (on cuda the ones kept for the backward are bf16, each widened to\n"
                + "fp32 while it is made or read; products, norms' statistics, softmax and the loss are fp32); LoRA A/B, their\n"
                + "gradients and AdamW's moments are fp32.\n"
                + "Not counted: the CUDA context, the allocator's fragmentation, the JVM heap. Sizes: 24GiB, 24GB (10^9), 800MiB, bytes.";
    }

    @Override
    public Options options() {
        return new Options()
                .addOption(Option.builder().longOpt("model").hasArg().argName("M").required().desc("llama2.c .bin, HF directory or config.json").get())
                .addOption(Option.builder().longOpt("vram").hasArg().argName("SIZE").desc("memory budget of the device (default 24GiB)").get())
                .addOption(Option.builder().longOpt("r").hasArg().argName("N").desc("LoRA rank (default 16)").get())
                .addOption(Option.builder().longOpt("target-modules").hasArg().argName("LIST")
                        .desc("comma-separated projections (default all 7: " + LoraConfig.validTargets() + ")").get())
                .addOption(Option.builder().longOpt("lora-dropout").hasArg().argName("P").desc("lora_dropout: > 0 keeps dropout masks (default 0)").get())
                .addOption(Option.builder().longOpt("seq-len").hasArg().argName("N").desc("tokens per row (default 2048)").get())
                .addOption(Option.builder().longOpt("batch").hasArg().argName("N").desc("rows per micro-batch (default 2)").get())
                .addOption(Option.builder().longOpt("checkpointing").hasArg().argName("MODE")
                        .desc("use_gradient_checkpointing: none, true, unsloth or chunked (default unsloth, as train)").get())
                .addOption(Option.builder().longOpt("checkpoint-every").hasArg().argName("K")
                        .desc("chunked: layers per group (default: the lowest-peak group size, as train chooses it)").get())
                .addOption(Option.builder().longOpt("load-in-4bit")
                        .desc("you plan QLoRA: its column is the selected one (--json 'selected'); implied by a bnb-4bit config.json").get())
                .addOption(Option.builder().longOpt("effective-batch").hasArg().argName("N").desc("batch x gradient accumulation to keep (default 16)").get())
                .addOption(Option.builder().longOpt("device").hasArg().argName("cpu|cuda").desc("training device (default cuda)").get())
                .addOption(Option.builder().longOpt("dtype").hasArg().argName("auto|bfloat16|float32")
                        .desc("storage of embedding, lm_head and dense projections (default auto: bfloat16 on cuda, float32 on cpu)").get())
                .addOption(Option.builder().longOpt("bf16").hasArg().argName("auto|true|false")
                        .desc("TRL's bf16: activations kept for the backward in bf16 (default auto: true on cuda, false on cpu)").get())
                .addOption(Option.builder().longOpt("json").desc("print the plan as JSON").get());
    }

    /** The model's shape from a llama2.c .bin, an HF directory or a config.json file. */
    static LlamaConfig readConfig(Path m) throws IOException {
        if (Files.isDirectory(m)) return LlamaConfig.read(m.resolve(LlamaConfig.FILE));
        if (!Files.isRegularFile(m)) throw new FormatException(m, "no such file or directory");
        if (m.getFileName().toString().endsWith(".json")) return LlamaConfig.read(m);
        return Llama2c.readHeader(m).config();
    }

    /** Whether M's config.json declares a bitsandbytes 4-bit checkpoint (quantization_config.load_in_4bit). */
    static boolean isBnb4bit(Path m) throws IOException {
        Path f = Files.isDirectory(m) ? m.resolve(LlamaConfig.FILE) : m;
        if (!f.getFileName().toString().endsWith(".json")) return false;
        try {
            JsonObject o = com.google.gson.JsonParser.parseString(Files.readString(f)).getAsJsonObject();
            JsonObject q = o.has("quantization_config") && o.get("quantization_config").isJsonObject() ? o.getAsJsonObject("quantization_config") : null;
            return q != null && q.has("load_in_4bit") && q.get("load_in_4bit").isJsonPrimitive() && q.get("load_in_4bit").getAsBoolean();
        } catch (RuntimeException e) { // LlamaConfig.read has already accepted the file: an odd quantization_config only means "no"
            return false;
        }
    }

    private static final Pattern SIZE = Pattern.compile("(?i)\\s*([0-9]+(?:\\.[0-9]+)?)\\s*(b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)?\\s*");

    /** Bytes of "24GiB", "24GB", "24G" (= GiB), "800MiB", "1e9"-free plain byte counts. */
    static long parseSize(String s) throws UsageException {
        Matcher m = SIZE.matcher(s);
        if (!m.matches()) throw new UsageException("--vram '" + s + "' is not a size (e.g. 24GiB, 48GB, 800MiB)");
        double v = Double.parseDouble(m.group(1));
        String u = m.group(2) == null ? "b" : m.group(2).toLowerCase(Locale.ROOT);
        double mult;
        switch (u) {
            case "b": mult = 1; break;
            case "kb": mult = 1e3; break;
            case "mb": mult = 1e6; break;
            case "gb": mult = 1e9; break;
            case "tb": mult = 1e12; break;
            case "k": case "kib": mult = 1L << 10; break;
            case "m": case "mib": mult = 1L << 20; break;
            case "g": case "gib": mult = 1L << 30; break;
            default: mult = 1L << 40; break;
        }
        double bytes = v * mult;
        if (!(bytes >= 1) || bytes > 9e18) throw new UsageException("--vram '" + s + "' is out of range");
        return (long) bytes;
    }

    private static int positive(CommandLine cl, String opt, int dflt) throws UsageException {
        int v = Cli.parseInt(cl, opt, dflt);
        if (v < 1) throw new UsageException("--" + opt + " must be >= 1, got " + v);
        return v;
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        long vram = cl.hasOption("vram") ? parseSize(cl.getOptionValue("vram")) : DEFAULT_VRAM;
        int r = positive(cl, "r", 16), seq = Cli.parseInt(cl, "seq-len", 2048), batch = positive(cl, "batch", 2);
        int eff = positive(cl, "effective-batch", 16);
        if (seq < 2) throw new UsageException("--seq-len must be >= 2, got " + seq);
        CheckpointMode mode;
        try {
            mode = CheckpointMode.parse(cl.getOptionValue("checkpointing", "unsloth"));
        } catch (IllegalArgumentException e) {
            throw new UsageException("--checkpointing: " + e.getMessage());
        }
        int every = Cli.parseInt(cl, "checkpoint-every", 0);
        if (every < 0 || cl.hasOption("checkpoint-every") && every < 1) throw new UsageException("--checkpoint-every must be >= 1, got " + every);
        if (every > 0 && mode != CheckpointMode.CHUNKED) throw new UsageException("--checkpoint-every needs --checkpointing chunked");
        Device device;
        try {
            device = Device.parse(cl.getOptionValue("device", "cuda"));
        } catch (IllegalArgumentException e) {
            throw new UsageException("--device: " + e.getMessage());
        }
        Set<Projection> targets = EnumSet.allOf(Projection.class);
        if (cl.hasOption("target-modules")) {
            try {
                targets = LoraConfig.parseTargets(Arrays.asList(cl.getOptionValue("target-modules").split("\\s*,\\s*")));
            } catch (IllegalArgumentException e) {
                throw new UsageException("--target-modules: " + e.getMessage());
            }
        }
        double dropout = Cli.parseFloat(cl, "lora-dropout", 0f);
        if (!(dropout >= 0 && dropout < 1)) throw new UsageException("--lora-dropout must be in [0, 1), got " + dropout);
        Path m = Path.of(cl.getOptionValue("model"));
        LlamaConfig c = readConfig(m);
        boolean selectQ = cl.hasOption("load-in-4bit") || isBnb4bit(m);

        io.lora4j.tensor.DType dtype;
        try {
            dtype = io.lora4j.model.DeviceWeights.parseStorage(cl.getOptionValue("dtype", "auto"));
        } catch (IllegalArgumentException e) {
            throw new UsageException("--dtype: " + e.getMessage());
        }
        Boolean bf16;
        switch (cl.getOptionValue("bf16", "auto").trim().toLowerCase(Locale.ROOT)) {
            case "auto": bf16 = null; break;
            case "true": bf16 = true; break;
            case "false": bf16 = false; break;
            default: throw new UsageException("--bf16 must be auto, true or false, got '" + cl.getOptionValue("bf16") + "'");
        }
        PlanSettings base = new PlanSettings(r, targets, seq, batch, mode, every, false, 64, true, dropout, device, dtype, bf16);
        if (mode == CheckpointMode.CHUNKED && every == 0) {
            // as train resolves checkpoint_every 0: the selected column's lowest-peak group size
            every = MemoryPlanner.bestCheckpointEvery(c, base.withLoadIn4bit(selectQ));
            base = new PlanSettings(r, targets, seq, batch, mode, every, false, 64, true, dropout, device, dtype, bf16);
        }
        Column lora = column(c, base, vram, eff), qlora = column(c, base.withLoadIn4bit(true), vram, eff);
        if (cl.hasOption("json")) {
            JsonObject o = new JsonObject();
            o.addProperty("model", m.toString());
            JsonObject shape = new JsonObject();
            shape.addProperty("hidden_size", c.hiddenSize());
            shape.addProperty("intermediate_size", c.intermediateSize());
            shape.addProperty("num_hidden_layers", c.numHiddenLayers());
            shape.addProperty("num_attention_heads", c.numAttentionHeads());
            shape.addProperty("num_key_value_heads", c.numKeyValueHeads());
            shape.addProperty("head_dim", c.headDim());
            shape.addProperty("vocab_size", c.vocabSize());
            shape.addProperty("parameters", c.parameterCount());
            o.add("config", shape);
            JsonObject st = new JsonObject();
            st.addProperty("r", r);
            st.addProperty("target_modules", String.join(",", LoraConfig.defaults().withTargets(targets).targetModuleNames()));
            st.addProperty("lora_parameters", MemoryPlanner.loraParameterCount(c, r, targets));
            st.addProperty("seq_len", seq);
            st.addProperty("batch", batch);
            st.addProperty("checkpointing", mode.name().toLowerCase(Locale.ROOT));
            if (mode == CheckpointMode.CHUNKED)
                st.addProperty("checkpoint_every", io.lora4j.train.LoraTrainingModel.groupSize(mode, every, c.numHiddenLayers()));
            st.addProperty("lora_dropout", dropout);
            st.addProperty("device", device.name().toLowerCase(Locale.ROOT));
            st.addProperty("dtype", base.storage() == io.lora4j.tensor.DType.BF16 ? "bfloat16" : "float32");
            st.addProperty("bf16", base.keptBf16());
            st.addProperty("effective_batch", eff);
            st.addProperty("vram_bytes", vram);
            o.add("settings", st);
            o.addProperty("best_checkpoint_every", MemoryPlanner.bestCheckpointEvery(c, base.withLoadIn4bit(selectQ)));
            o.add("lora", lora.json());
            o.add("qlora", qlora.json());
            o.addProperty("loftq_startup_bytes", MemoryPlanner.loftqStartupBytes(c, base.withLoadIn4bit(true)));
            o.addProperty("selected", selectQ ? "qlora" : "lora");
            ctx.out().println(new GsonBuilder().setPrettyPrinting().create().toJson(o));
            return OK;
        }
        var out = ctx.out();
        out.printf(Locale.ROOT, "%s: %d layers, hidden %d, MLP %d, %d heads / %d KV heads of %d, vocab %d (%.2f B parameters)%n", m,
                c.numHiddenLayers(), c.hiddenSize(), c.intermediateSize(), c.numAttentionHeads(), c.numKeyValueHeads(), c.headDim(),
                c.vocabSize(), c.parameterCount() / 1e9);
        String ck = mode.name().toLowerCase(Locale.ROOT)
                + (mode == CheckpointMode.CHUNKED ? " every " + io.lora4j.train.LoraTrainingModel.groupSize(mode, every, c.numHiddenLayers()) : "");
        out.printf(Locale.ROOT, "r %d on %s (%.2f M LoRA parameters), seq %d x batch %d, checkpointing %s, device %s, kept activations %s%n%n", r,
                String.join(",", LoraConfig.defaults().withTargets(targets).targetModuleNames()),
                MemoryPlanner.loraParameterCount(c, r, targets) / 1e6, seq, batch, ck, device.name().toLowerCase(Locale.ROOT),
                base.keptBf16() ? "bf16" : "fp32");
        String h1 = (selectQ ? "  " : "* ") + "LoRA (" + (base.storage() == io.lora4j.tensor.DType.BF16 ? "bf16" : "fp32") + " base)",
                h2 = (selectQ ? "* " : "  ") + "QLoRA (NF4 base)";
        out.printf(Locale.ROOT, "%-34s %18s %18s%n", "peak per category", h1, h2);
        String[][] rows = {{"WEIGHTS", "base weights"}, {"LORA", "LoRA parameters (fp32)"}, {"GRADS", "LoRA gradients (fp32)"},
            {"OPTIMIZER", "AdamW moments (fp32)"}, {"ACTIVATIONS", "activations"}, {"CHECKPOINTS", "checkpointed layer inputs"},
            {"WORKSPACE", "workspace"}, {"LOGITS", "logits (chunked CE)"}, {"OFFLOADED", "offloaded inputs" + (device == Device.CUDA ? " (host)" : "")}};
        for (String[] row : rows) {
            MemoryCategory cat = MemoryCategory.valueOf(row[0]);
            out.printf(Locale.ROOT, "%-34s %18s %18s%n", row[1], human(lora.est.peak(cat)), human(qlora.est.peak(cat)));
        }
        out.printf(Locale.ROOT, "%-34s %18s %18s%n", "peak total (" + (device == Device.CUDA ? "device" : "all") + ")",
                human(lora.est.peakTotal()), human(qlora.est.peakTotal()));
        if (device == Device.CUDA)
            out.printf(Locale.ROOT, "%-34s %18s %18s%n", "host memory of the step", human(lora.est.hostPeak()), human(qlora.est.hostPeak()));
        out.printf(Locale.ROOT, "%-34s %18s %18s%n", "LoftQ start-up spike (loftq init)", "-",
                human(MemoryPlanner.loftqStartupBytes(c, base.withLoadIn4bit(true))));
        out.printf(Locale.ROOT, "%nbudget %s%s:%n", human(vram), cl.hasOption("vram") ? " (--vram " + cl.getOptionValue("vram") + ")" : "");
        out.printf(Locale.ROOT, "%-34s %18s %18s%n", "fits at batch " + batch + ", seq " + seq, lora.fits(vram), qlora.fits(vram));
        out.printf(Locale.ROOT, "%-34s %18s %18s%n", "largest batch at seq " + seq, lora.maxBatchText(eff), qlora.maxBatchText(eff));
        out.printf(Locale.ROOT, "%-34s %18s %18s%n", "batch x GA for effective " + eff, lora.advice(), qlora.advice());
        out.printf(Locale.ROOT, "%-34s %18s %18s%n", "longest seq at batch " + batch, lora.maxSeqText(c), qlora.maxSeqText(c));
        if (mode == CheckpointMode.CHUNKED) {
            PlanSettings sel = base.withLoadIn4bit(selectQ);
            int k = MemoryPlanner.bestCheckpointEvery(c, sel);
            out.printf(Locale.ROOT, "%-34s %37s%n", "lowest-peak checkpoint_every", k + " (" + (selectQ ? "QLoRA" : "LoRA") + " peak "
                    + human(MemoryPlanner.estimate(c, sel.withCheckpointing(CheckpointMode.CHUNKED, k)).peakTotal()) + ")");
        }
        out.println();
        out.println("Counted: every tensor lora4j allocates (replayed from the training code). Not counted: CUDA context (~0.5 GiB),");
        out.println("allocator fragmentation, the JVM heap. Per-category figures are each category's own peak; the total is the peak of the sum.");
        return OK;
    }

    /** One column of the table: the estimate at the given settings and what fits the budget. */
    private record Column(MemoryEstimate est, int maxBatch, int maxSeq, int advisedBatch, int ga) {
        String fits(long vram) {
            return est.peakTotal() <= vram ? "yes" : "no (+" + human(est.peakTotal() - vram) + ")";
        }

        String maxBatchText(int eff) {
            return maxBatch == 0 ? "none fits" : maxBatch >= eff ? ">= " + eff : String.valueOf(maxBatch);
        }

        String advice() {
            return maxBatch == 0 ? "-" : advisedBatch + " x " + ga;
        }

        String maxSeqText(LlamaConfig c) {
            return maxSeq == 0 ? "none fits" : maxSeq >= c.maxPositionEmbeddings() ? ">= " + c.maxPositionEmbeddings() : String.valueOf(maxSeq);
        }

        JsonObject json() {
            JsonObject o = new JsonObject();
            o.addProperty("peak_total_bytes", est.peakTotal());
            o.addProperty("host_peak_bytes", est.hostPeak());
            Map<MemoryCategory, Long> p = new EnumMap<>(MemoryCategory.class), a = new EnumMap<>(MemoryCategory.class);
            for (MemoryCategory m : MemoryCategory.values()) {
                p.put(m, est.peak(m));
                a.put(m, est.atPeak().get(m));
            }
            o.add("peak_bytes", MemoryCategory.toJson(p));
            o.add("at_peak_bytes", MemoryCategory.toJson(a));
            o.addProperty("max_batch", maxBatch);
            o.addProperty("advised_batch", advisedBatch);
            o.addProperty("gradient_accumulation_steps", ga);
            o.addProperty("max_seq_len", maxSeq);
            return o;
        }
    }

    private static Column column(LlamaConfig c, PlanSettings s, long vram, int eff) {
        MemoryEstimate e = MemoryPlanner.estimate(c, s);
        int mb = MemoryPlanner.maxBatch(c, s, vram, eff);
        int ms = MemoryPlanner.maxSeqLen(c, s, vram, Math.max(2, c.maxPositionEmbeddings()));
        int advised = 0, ga = 0;
        if (mb > 0) { // the largest divisor of the effective batch that fits: batch x GA is exactly the effective batch
            for (int b = Math.min(mb, eff); b >= 1; b--)
                if (eff % b == 0) {
                    advised = b;
                    break;
                }
            ga = eff / advised;
        }
        return new Column(e, mb, ms, advised, ga);
    }

    /** Bytes in MiB below 1 GiB, else GiB, two decimals. */
    static String human(long bytes) {
        if (bytes < (1L << 30)) return String.format(Locale.ROOT, "%.2f MiB", bytes / (double) (1L << 20));
        return String.format(Locale.ROOT, "%.2f GiB", bytes / (double) (1L << 30));
    }
}
