package io.lora4j.cli;

import io.lora4j.data.ChatTemplate;
import io.lora4j.gguf.GgmlType;
import io.lora4j.gguf.GgufAdapterExport;
import io.lora4j.gguf.GgufArchitecture;
import io.lora4j.gguf.GgufFileType;
import io.lora4j.gguf.GgufModelExport;
import io.lora4j.gguf.OllamaModelfile;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.FormatException;
import io.lora4j.lora.AdaptedModel;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tokenizer.Tokenizer;
import io.lora4j.tokenizer.TokenizerException;
import io.lora4j.tokenizer.Tokenizers;
import io.lora4j.tokenizer.TokenizerPath;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/**
 * {@code lora4j export}: a model (with an adapter merged in) as one GGUF file, or an adapter as a
 * GGUF LoRA adapter, for llama.cpp, Ollama and LM Studio; optionally an Ollama Modelfile beside it.
 */
public final class ExportCommand implements Command {
    /** The Modelfile's name, beside the GGUF. */
    static final String MODELFILE = "Modelfile";

    @Override public String name() { return "export"; }

    @Override public String summary() { return "write a GGUF model (adapter merged) or GGUF LoRA adapter, and an Ollama Modelfile"; }

    @Override public String synopsis() {
        return "export --model M [--adapter A [--scale S]] --out FILE.gguf [--quant " + GgufFileType.names() + "] [--modelfile] "
                + "[--chat-template NAME] [--tokenizer PATH] [--name NAME] [--overwrite]\n"
                + "       lora4j export --adapter A --base M --out FILE.gguf [--scale S] [--modelfile] [--overwrite]";
    }

    @Override public String description() {
        return "With --model: the model as llama.cpp's converter writes it (its architecture for the family: llama for Llama and\n"
                + "Mistral, with q/k rows in its interleaved order; qwen2, qwen3, gemma3, gemma2, phi3; its tensor names, architecture and tokenizer\n"
                + "metadata, the chat template), the adapter merged in fp32 first (an NF4 base is\n"
                + "dequantized, with a warning, as merge does). --quant (default f16): norms stay f32; q8_0, q4_0 and q4_K_M use ggml's\n"
                + "reference quantizers and llama-quantize's choice of type per tensor (q4_K_M: q6_K for output, half of attn_v and\n"
                + "ffn_down; rows that 256 does not divide fall back to q5_0/q8_0 as llama.cpp does).\n"
                + "With --base: the adapter alone as a GGUF LoRA adapter (llama.cpp --lora, Ollama ADAPTER), checked against the base.\n"
                + "--modelfile writes Modelfile beside FILE (FROM, ADAPTER, TEMPLATE for the built-in chat templates, PARAMETER stop):\n"
                + "then `ollama create NAME -f Modelfile`. --chat-template NAME picks a built-in (" + builtinNames() + ") when the\n"
                + "tokenizer has none or you trained with another.";
    }

    private static String builtinNames() {
        StringBuilder sb = new StringBuilder();
        for (ChatTemplate.Builtin b : ChatTemplate.Builtin.values()) sb.append(sb.length() == 0 ? "" : ", ").append(b.key());
        return sb.toString();
    }

    @Override
    public Options options() {
        return new Options()
                .addOption(Option.builder().longOpt("model").hasArg().argName("M").desc("llama2.c .bin or HF directory to export").get())
                .addOption(Option.builder().longOpt("adapter").hasArg().argName("A").desc("PEFT LoRA adapter directory").get())
                .addOption(Option.builder().longOpt("base").hasArg().argName("M").desc("with --adapter alone: the base the adapter belongs to").get())
                .addOption(Option.builder().longOpt("out").hasArg().argName("FILE").required().desc("the GGUF file to write").get())
                .addOption(Option.builder().longOpt("quant").hasArg().argName("TYPE").desc(GgufFileType.names() + " (default f16)").get())
                .addOption(Option.builder().longOpt("scale").hasArg().argName("S").desc("multiply the adapter's scaling by S (default 1)").get())
                .addOption(Option.builder().longOpt("modelfile").desc("also write an Ollama Modelfile beside FILE").get())
                .addOption(Option.builder().longOpt("chat-template").hasArg().argName("NAME").desc("built-in chat template to record (default: the tokenizer's)").get())
                .addOption(Option.builder().longOpt("tokenizer").hasArg().argName("PATH").desc("tokenizer (default: the model's own)").get())
                .addOption(Option.builder().longOpt("name").hasArg().argName("NAME").desc("general.name (default: the file name)").get())
                .addOption(Option.builder().longOpt("overwrite").desc("replace an existing FILE (and Modelfile)").get());
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        if (!cl.getArgList().isEmpty()) throw new UsageException("unexpected argument '" + cl.getArgList().get(0) + "'");
        boolean adapterOnly = cl.hasOption("base");
        if (adapterOnly && cl.hasOption("model")) throw new UsageException("give --model (a model GGUF) or --base with --adapter (an adapter GGUF), not both");
        if (!adapterOnly && !cl.hasOption("model")) throw new UsageException("missing --model (or --base with --adapter for an adapter GGUF)");
        if (adapterOnly && !cl.hasOption("adapter")) throw new UsageException("--base needs --adapter");
        if (adapterOnly && (cl.hasOption("quant") || cl.hasOption("chat-template") || cl.hasOption("tokenizer")))
            throw new UsageException("--quant, --chat-template and --tokenizer apply to a model GGUF (--model), not an adapter GGUF");
        if (cl.hasOption("scale") && !cl.hasOption("adapter")) throw new UsageException("--scale needs --adapter");
        float scale = Cli.parseFloat(cl, "scale", 1f);
        GgufFileType quant = GgufFileType.parse(cl.getOptionValue("quant", "f16"));
        if (quant == null) throw new UsageException("--quant must be one of " + GgufFileType.names() + ", got '" + cl.getOptionValue("quant") + "'");
        Optional<ChatTemplate.Builtin> forced = Optional.empty();
        if (cl.hasOption("chat-template")) {
            forced = ChatTemplate.Builtin.parse(cl.getOptionValue("chat-template"));
            if (forced.isEmpty())
                throw new UsageException("--chat-template must be one of " + builtinNames() + ", got '" + cl.getOptionValue("chat-template") + "'");
        }
        Path out = Path.of(cl.getOptionValue("out")).toAbsolutePath();
        boolean overwrite = cl.hasOption("overwrite");
        Path modelfile = cl.hasOption("modelfile") ? out.getParent().resolve(MODELFILE) : null;
        for (Path p : modelfile == null ? new Path[] {out} : new Path[] {out, modelfile}) {
            if (Files.isDirectory(p)) throw new FormatException(p, "is a directory");
            if (Files.exists(p) && !overwrite) throw new FormatException(p, "exists (--overwrite replaces it)");
        }
        if (!Files.isDirectory(out.getParent())) throw new FormatException(out.getParent(), "no such directory");
        String name = cl.getOptionValue("name", stripGguf(out.getFileName().toString()));
        Backend cpu = Backends.cpu();

        if (adapterOnly) {
            Path base = Path.of(cl.getOptionValue("base")), adapterDir = Path.of(cl.getOptionValue("adapter"));
            try (LlamaWeights w = ModelLoader.load(base); LoraAdapter a = LoraAdapter.load(adapterDir, cpu, w.config())) {
                warnCaveat(w.config(), ctx);
                long bytes = GgufAdapterExport.write(a, w.config(), scale, name, out);
                ctx.out().printf(Locale.ROOT, "wrote %s: GGUF LoRA adapter of %s for %s (r %d, %d tensors, alpha for llama.cpp %s), %s%n", out, adapterDir,
                        base, a.config().r(), 2 * a.slots().size(), trim(a.config().scaling() * scale * a.config().r()), size(bytes));
            } catch (FormatException e) {
                throw new FormatException(e.file(), e.problem() + (e.file().startsWith(adapterDir) ? " (does the adapter belong to " + base + "?)" : ""));
            }
            if (modelfile != null) {
                writeModelfile(modelfile, OllamaModelfile.render(base.toString(), "./" + out.getFileName(), null, null));
                ctx.out().println("wrote " + modelfile + " (FROM names the base as given: point it at the base's GGUF or Ollama model)");
            }
            return OK;
        }

        Path model = Path.of(cl.getOptionValue("model"));
        Path tokPath = null;
        Tokenizer tok = null;
        try {
            tokPath = TokenizerPath.of(model, cl.hasOption("tokenizer") ? Path.of(cl.getOptionValue("tokenizer")) : null);
            tok = Tokenizers.load(tokPath);
        } catch (FormatException | TokenizerException e) {
            if (cl.hasOption("tokenizer")) throw e;
            ctx.err().println("lora4j export: note: " + e.getMessage() + "; the GGUF gets placeholder tokens (<unk>, <s>, </s>, [tN]): llama.cpp runs it on token ids, text needs --tokenizer");
            tokPath = null;
        }
        String template = null;
        ChatTemplate.Builtin builtin = forced.orElse(null);
        if (builtin != null) {
            template = builtin.source();
        } else if (tok != null) {
            ChatTemplate.Tokens tokens = new ChatTemplate.Tokens(tok.bosId() >= 0 ? tok.piece(tok.bosId()) : "",
                    tok.eosId() >= 0 ? tok.piece(tok.eosId()) : "", null, null);
            Optional<ChatTemplate> t = ChatTemplate.fromModel(tokPath, tokens);
            if (t.isPresent()) {
                template = t.get().source();
                for (ChatTemplate.Builtin b : ChatTemplate.Builtin.values()) if (b.source().equals(template)) builtin = b;
            }
        }
        try (LlamaWeights w = ModelLoader.load(model)) {
            AdaptedModel merged = null;
            try {
                if (cl.hasOption("adapter")) {
                    Path adapterDir = Path.of(cl.getOptionValue("adapter"));
                    if (w.quantized())
                        ctx.err().println("lora4j export: WARNING: " + model + " holds NF4 weights: they are dequantized before the merge, so the "
                                + "export carries their rounding; merge against the 16-bit original (--model) to avoid it");
                    try (LoraAdapter a = LoraAdapter.load(adapterDir, cpu, w.config())) {
                        merged = AdaptedModel.merge(cpu, w, a, scale);
                    }
                } else if (w.quantized()) {
                    ctx.err().println("lora4j export: WARNING: " + model + " holds NF4 weights: they are dequantized, and the export carries their rounding");
                }
                LlamaWeights src = merged != null ? merged.weights() : w;
                warnCaveat(w.config(), ctx);
                GgufModelExport.Summary s = GgufModelExport.write(src, new GgufModelExport.Options(quant, name, tok, tokPath, template), out);
                StringBuilder types = new StringBuilder();
                for (Map.Entry<GgmlType, Integer> e : s.types().entrySet())
                    types.append(types.length() == 0 ? "" : ", ").append(e.getValue()).append(' ').append(e.getKey().ggmlName());
                ctx.out().printf(Locale.ROOT, "wrote %s: %s%s as %s (%s tensors: %s), %s%n", out, model,
                        cl.hasOption("adapter") ? " + " + cl.getOptionValue("adapter") + (scale != 1f ? " x" + trim(scale) : "") : "", quant,
                        s.types().values().stream().mapToInt(Integer::intValue).sum(), types, size(s.bytes()));
                if (!s.fallbacks().isEmpty()) {
                    Map<String, Integer> byChange = new java.util.TreeMap<>();
                    for (String f : s.fallbacks()) byChange.merge(f.substring(f.indexOf(": ") + 2), 1, Integer::sum);
                    StringBuilder sb = new StringBuilder();
                    byChange.forEach((k, n) -> sb.append(sb.length() == 0 ? "" : ", ").append(n).append(' ').append(k));
                    ctx.out().println("  " + s.fallbacks().size() + " tensors have rows their block does not divide and fell back as llama.cpp does: " + sb);
                }
                if (template == null) ctx.out().println("  no chat template recorded (the tokenizer has none; --chat-template NAME adds a built-in)");
            } finally {
                if (merged != null) merged.close();
            }
        }
        if (modelfile != null) {
            String eos = tok != null && tok.eosId() >= 0 ? tok.piece(tok.eosId()) : null;
            writeModelfile(modelfile, OllamaModelfile.render("./" + out.getFileName(), null, builtin, eos));
            ctx.out().println("wrote " + modelfile + (builtin == null ? " (no TEMPLATE: the chat template is not one of the built-ins)" : " (TEMPLATE " + builtin.key() + ")")
                    + "; then: ollama create " + name + " -f " + modelfile);
        }
        return OK;
    }

    private static void warnCaveat(io.lora4j.model.LlamaConfig c, CliContext ctx) {
        GgufArchitecture.of(c.modelType()).map(a -> a.caveat(c)).ifPresent(w -> ctx.err().println("lora4j export: WARNING: " + w));
    }

    private static void writeModelfile(Path file, String text) throws java.io.IOException {
        AtomicFiles.writeBytes(file, text.getBytes(StandardCharsets.UTF_8));
    }

    private static String stripGguf(String f) {
        return f.toLowerCase(Locale.ROOT).endsWith(".gguf") ? f.substring(0, f.length() - 5) : f;
    }

    private static String trim(double d) {
        return d == Math.rint(d) ? Long.toString((long) d) : String.format(Locale.ROOT, "%.6g", d);
    }

    private static String size(long bytes) {
        return bytes >= 10L << 20 ? String.format(Locale.ROOT, "%.1f MiB", bytes / 1048576.0) : String.format(Locale.ROOT, "%.1f KiB", bytes / 1024.0);
    }
}
