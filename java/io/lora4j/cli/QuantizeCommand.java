package io.lora4j.cli;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.FormatException;
import io.lora4j.model.Bnb4bitWriter;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelFormat;
import io.lora4j.model.ModelLoader;
import io.lora4j.quant.Nf4;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.stream.Stream;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/** {@code lora4j quantize}: writes a model as a bnb-4bit HF directory. */
public final class QuantizeCommand implements Command {
    /** Tokenizer and generation files copied from an HF model directory. */
    static final List<String> HF_SIDE_FILES = List.of("tokenizer.model", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "generation_config.json", "chat_template.jinja");

    @Override public String name() { return "quantize"; }

    @Override public String summary() { return "write a model as a bnb-4bit (NF4) HF directory"; }

    @Override public String synopsis() {
        return "quantize --model M --out DIR [--blocksize 64] [--no-double-quant] [--compute-dtype float32|bfloat16] [--overwrite] [--tokenizer PATH] [--json]";
    }

    @Override public String description() {
        return "Quantizes the seven projections of every layer to NF4 exactly as bitsandbytes does (flattened blocks,\n"
                + "double-quantized absmax unless --no-double-quant) and writes config.json with quantization_config and\n"
                + "model.safetensors in the layout transformers loads with BitsAndBytesConfig. Embeddings, norms and lm_head\n"
                + "keep their dtype. Tokenizer files next to the model (or --tokenizer) are copied.";
    }

    @Override
    public Options options() {
        return new Options()
                .addOption(Option.builder().longOpt("model").hasArg().argName("M").required().desc("llama2.c .bin or HF model directory").get())
                .addOption(Option.builder().longOpt("out").hasArg().argName("DIR").required().desc("output directory (must not exist or be empty)").get())
                .addOption(Option.builder().longOpt("blocksize").hasArg().argName("N").desc("NF4 block size, a power of two in 32..4096 (default 64)").get())
                .addOption(Option.builder().longOpt("no-double-quant").desc("store absmax as fp32 instead of double-quantizing it").get())
                .addOption(Option.builder().longOpt("compute-dtype").hasArg().argName("DTYPE").desc("bnb_4bit_compute_dtype: float32 (default) or bfloat16").get())
                .addOption(Option.builder().longOpt("overwrite").desc("replace an existing non-empty --out").get())
                .addOption(Option.builder().longOpt("tokenizer").hasArg().argName("PATH").desc("tokenizer file to copy (default: the model's own)").get())
                .addOption(Option.builder().longOpt("json").desc("print the summary as JSON").get());
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        if (!cl.getArgList().isEmpty()) throw new UsageException("unexpected argument '" + cl.getArgList().get(0) + "'");
        Path model = Path.of(cl.getOptionValue("model"));
        Path out = Path.of(cl.getOptionValue("out"));
        int blocksize = parseBlocksize(cl.getOptionValue("blocksize", "64"));
        Bnb4bitWriter.ComputeDtype cd;
        try {
            cd = Bnb4bitWriter.ComputeDtype.parse(cl.getOptionValue("compute-dtype", "float32"));
        } catch (IllegalArgumentException e) {
            throw new UsageException("--compute-dtype: " + e.getMessage());
        }
        boolean dq = !cl.hasOption("no-double-quant");
        boolean overwrite = cl.hasOption("overwrite");

        AtomicFiles.checkOutput(out.toAbsolutePath(), overwrite);
        if (Files.exists(model) && Files.exists(out)) {
            Path realModel = model.toRealPath(), realOut = out.toRealPath();
            if (realModel.startsWith(realOut) || realOut.equals(realModel))
                throw new FormatException(out, "would replace the input model " + model + "; choose another --out");
        }
        List<Path> extras = tokenizerFiles(model, cl.getOptionValue("tokenizer"));

        long t0 = System.nanoTime();
        Bnb4bitWriter.Summary s;
        ModelFormat format;
        int layers;
        try (LlamaWeights w = ModelLoader.load(model)) {
            format = w.format();
            layers = w.config().numHiddenLayers();
            if (format == ModelFormat.HF_BNB4 && !cl.hasOption("json"))
                ctx.err().println("lora4j quantize: " + model + ": already bnb-4bit; its NF4 weights are copied unchanged");
            s = Bnb4bitWriter.write(w, out, new Bnb4bitWriter.Options(blocksize, dq, cd, overwrite, extras));
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        double ratio = s.outputBytes() > 0 ? (double) s.sourceBytes() / s.outputBytes() : 0;
        List<String> files = new ArrayList<>();
        try (Stream<Path> st = Files.list(out)) {
            st.map(p -> p.getFileName().toString()).sorted().forEach(files::add);
        }
        if (cl.hasOption("json")) {
            JsonObject j = new JsonObject();
            j.addProperty("model", model.toString());
            j.addProperty("source_format", format.name().toLowerCase(Locale.ROOT));
            j.addProperty("out", out.toString());
            j.addProperty("layers", layers);
            j.addProperty("quantized", s.quantized());
            j.addProperty("tensors", s.tensors());
            j.addProperty("blocksize", blocksize);
            j.addProperty("double_quant", dq);
            j.addProperty("compute_dtype", cd.torchName);
            j.addProperty("source_bytes", s.sourceBytes());
            j.addProperty("output_bytes", s.outputBytes());
            j.addProperty("ratio", Math.round(ratio * 1000) / 1000.0);
            j.addProperty("projection_source_bytes", s.projectionSourceBytes());
            j.addProperty("projection_nf4_bytes", s.projectionNf4Bytes());
            j.addProperty("seconds", Math.round(seconds * 1000) / 1000.0);
            JsonArray fa = new JsonArray();
            files.forEach(fa::add);
            j.add("files", fa);
            ctx.out().println(new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(j));
        } else {
            ctx.out().printf(Locale.ROOT, "quantized %d projections (%d layers) of %s to NF4, blocksize %d, %s, compute dtype %s%n",
                    s.quantized(), layers, model, blocksize, dq ? "double quant" : "fp32 absmax", cd.torchName);
            ctx.out().printf(Locale.ROOT, "projections %s -> %s (%.2fx smaller); whole model %s -> %s (%.2fx), %d tensors, %.2f s%n",
                    InspectCommand.human(s.projectionSourceBytes()), InspectCommand.human(s.projectionNf4Bytes()),
                    s.projectionNf4Bytes() > 0 ? (double) s.projectionSourceBytes() / s.projectionNf4Bytes() : 0,
                    InspectCommand.human(s.sourceBytes()), InspectCommand.human(s.outputBytes()), ratio, s.tensors(), seconds);
            ctx.out().println("wrote " + out + ": " + String.join(", ", files));
            if (extras.isEmpty()) ctx.out().println("note: no tokenizer file found next to the model; pass --tokenizer PATH to include one");
        }
        return OK;
    }

    static int parseBlocksize(String s) throws UsageException {
        int b;
        try {
            b = Integer.parseInt(s.trim());
        } catch (NumberFormatException e) {
            throw new UsageException("--blocksize '" + s + "' is not an integer");
        }
        try {
            Nf4.checkBlocksize(b);
        } catch (IllegalArgumentException e) {
            throw new UsageException("--blocksize: " + e.getMessage());
        }
        return b;
    }

    /** The tokenizer (and generation) files to copy: --tokenizer first, then the model's own. */
    static List<Path> tokenizerFiles(Path model, String explicit) throws IOException {
        List<Path> out = new ArrayList<>();
        if (explicit != null) {
            Path t = Path.of(explicit);
            if (!Files.isRegularFile(t)) throw new FormatException(t, Files.exists(t) ? "not a regular file" : "no such file");
            out.add(t);
        }
        if (Files.isDirectory(model)) {
            for (String f : HF_SIDE_FILES) {
                Path p = model.resolve(f);
                if (Files.isRegularFile(p)) out.add(p);
            }
        } else if (explicit == null) {
            Path parent = model.toAbsolutePath().getParent();
            Path sibling = parent == null ? null : parent.resolve("tokenizer.model");
            if (sibling != null && Files.isRegularFile(sibling)) out.add(sibling);
        }
        return out;
    }
}
