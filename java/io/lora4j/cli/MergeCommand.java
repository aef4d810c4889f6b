package io.lora4j.cli;

import io.lora4j.io.AtomicFiles;
import io.lora4j.io.FormatException;
import io.lora4j.lora.AdaptedModel;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.model.HfWriter;
import io.lora4j.model.LlamaModel;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Tensor;
import io.lora4j.tokenizer.TokenizerPath;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/**
 * {@code lora4j merge}: W' = W + S·s·B·A into an HF directory, merged in fp32, then checked: the
 * written model's logits on a probe sequence must equal those of the in-memory merge, else the
 * output is removed and the command fails (a silent wrong merge is the common merge bug).
 */
public final class MergeCommand implements Command {
    /** Probe logits, f32 output: the reload must reproduce the merge (same fp32 weights). */
    static final double F32_ATOL = 1e-4;
    /** bf16/f16 output: weight rounding moves logits; allowed: 5 % of the largest |logit|. */
    static final double HALF_RELATIVE = 0.05;

    @Override public String name() { return "merge"; }

    @Override public String summary() { return "merge a LoRA adapter into the base weights (HF directory)"; }

    @Override public String synopsis() {
        return "merge --model M --adapter A --out DIR [--scale S | --average] [--dtype f32|bf16|f16] [--tokenizer PATH] [--overwrite]";
    }

    @Override public String description() {
        return "Writes config.json, model.safetensors and the tokenizer. The merge runs in fp32 against the base as loaded: for a\n"
                + "bnb-4bit base the NF4 weights are dequantized first (a warning says so: give the 16-bit original as --model to\n"
                + "avoid carrying NF4 rounding into the merged model). --scale S multiplies the adapter's scaling (post-training\n"
                + "alpha scaling); --average is (base + fine-tuned)/2, i.e. --scale 0.5.";
    }

    @Override
    public Options options() {
        return new Options()
                .addOption(Option.builder().longOpt("model").hasArg().argName("M").required().desc("llama2.c .bin or HF directory").get())
                .addOption(Option.builder().longOpt("adapter").hasArg().argName("A").required().desc("PEFT LoRA adapter directory").get())
                .addOption(Option.builder().longOpt("out").hasArg().argName("DIR").required().desc("output HF directory").get())
                .addOption(Option.builder().longOpt("scale").hasArg().argName("S").desc("multiply the adapter's scaling by S (default 1)").get())
                .addOption(Option.builder().longOpt("average").desc("weight averaging: (base + fine-tuned)/2 = --scale 0.5").get())
                .addOption(Option.builder().longOpt("dtype").hasArg().argName("DTYPE").desc("f32 (default), bf16 or f16").get())
                .addOption(Option.builder().longOpt("tokenizer").hasArg().argName("PATH").desc("tokenizer to copy (default: the model's own)").get())
                .addOption(Option.builder().longOpt("overwrite").desc("replace an existing non-empty --out").get());
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        if (!cl.getArgList().isEmpty()) throw new UsageException("unexpected argument '" + cl.getArgList().get(0) + "'");
        if (cl.hasOption("scale") && cl.hasOption("average")) throw new UsageException("--average is --scale 0.5: give one of them");
        float scale = cl.hasOption("average") ? 0.5f : Cli.parseFloat(cl, "scale", 1f);
        DType dtype;
        switch (cl.getOptionValue("dtype", "f32")) {
            case "f32": case "float32": dtype = DType.F32; break;
            case "bf16": case "bfloat16": dtype = DType.BF16; break;
            case "f16": case "float16": dtype = DType.F16; break;
            default: throw new UsageException("--dtype must be f32, bf16 or f16, got '" + cl.getOptionValue("dtype") + "'");
        }
        Path model = Path.of(cl.getOptionValue("model")), adapterDir = Path.of(cl.getOptionValue("adapter"));
        Path out = Path.of(cl.getOptionValue("out"));
        boolean overwrite = cl.hasOption("overwrite");
        AtomicFiles.checkOutput(out.toAbsolutePath(), overwrite);
        List<Path> extras = new ArrayList<>();
        Path tok = null;
        try {
            tok = TokenizerPath.of(model, cl.hasOption("tokenizer") ? Path.of(cl.getOptionValue("tokenizer")) : null);
        } catch (FormatException e) {
            ctx.err().println("lora4j merge: note: " + e.getMessage() + "; the merged directory gets no tokenizer");
        }
        if (tok != null) {
            if (Files.isDirectory(tok)) {
                for (String f : QuantizeCommand.HF_SIDE_FILES) if (Files.isRegularFile(tok.resolve(f))) extras.add(tok.resolve(f));
            } else {
                extras.add(tok);
            }
        }
        Backend cpu = Backends.cpu();
        try (LlamaWeights w = ModelLoader.load(model); LoraAdapter a = LoraAdapter.load(adapterDir, cpu, w.config())) {
            if (w.quantized())
                ctx.err().println("lora4j merge: WARNING: " + model + " holds NF4 weights: they are dequantized before the merge, so the merged "
                        + "model carries their rounding; merge against the 16-bit original (--model) to avoid it");
            try (AdaptedModel merged = AdaptedModel.merge(cpu, w, a, scale)) {
                HfWriter.write(merged.weights(), out, new HfWriter.Options(dtype, overwrite, extras));
                double[] check = probe(cpu, merged.weights(), out, dtype);
                if (!(check[0] <= check[1])) {
                    AtomicFiles.deleteRecursively(out);
                    throw new FormatException(out, String.format(Locale.ROOT,
                            "the written model's logits differ from the merge by %.3g (allowed %.3g): removed", check[0], check[1]));
                }
                ctx.out().printf(Locale.ROOT, "merged %s (scale x%s) into %s -> %s (%s); probe logits max |diff| %.3g (allowed %.3g)%n",
                        adapterDir, fmt(scale), model, out, dtype, check[0], check[1]);
            }
        }
        return OK;
    }

    /** {max |logit diff|, allowed} between the in-memory merge and the directory written. */
    static double[] probe(Backend cpu, LlamaWeights merged, Path out, DType dtype) throws Exception {
        int n = Math.min(32, merged.config().maxPositionEmbeddings());
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = (int) ((1L + 7919L * i) % merged.config().vocabSize());
        float[] want, got;
        try (LlamaModel m = LlamaModel.create(cpu, merged); Tensor l = m.forward(new int[][] {ids})) {
            want = l.toFloats();
        }
        try (LlamaWeights w = ModelLoader.load(out); LlamaModel m = LlamaModel.create(cpu, w); Tensor l = m.forward(new int[][] {ids})) {
            got = l.toFloats();
        }
        double max = 0, scale = 0;
        for (int i = 0; i < want.length; i++) {
            max = Math.max(max, Math.abs(want[i] - got[i]));
            scale = Math.max(scale, Math.abs(want[i]));
        }
        return new double[] {max, dtype == DType.F32 ? F32_ATOL : HALF_RELATIVE * scale};
    }

    static String fmt(double d) {
        return d == Math.rint(d) ? Long.toString((long) d) : Double.toString(d);
    }
}
