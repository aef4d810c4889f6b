package io.lora4j.cli;

import io.lora4j.io.FormatException;
import io.lora4j.lora.AdaptedModel;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.model.LlamaModel;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.Device;
import io.lora4j.tokenizer.Tokenizer;
import io.lora4j.tokenizer.Tokenizers;
import io.lora4j.tokenizer.TokenizerPath;
import java.io.IOException;
import java.nio.file.Path;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/**
 * The options every model-running command shares (--model, --tokenizer, --device,
 * --load-in-4bit, --threads) and what they resolve to: weights, a model on a backend, a tokenizer
 * whose vocabulary matches the model's.
 */
final class ModelArgs implements AutoCloseable {
    final LlamaWeights weights;
    final AdaptedModel adapted; // null without --adapter
    final LlamaModel model;
    final Tokenizer tokenizer;
    final Path modelPath;

    private ModelArgs(LlamaWeights weights, AdaptedModel adapted, LlamaModel model, Tokenizer tokenizer, Path modelPath) {
        this.weights = weights;
        this.adapted = adapted;
        this.model = model;
        this.tokenizer = tokenizer;
        this.modelPath = modelPath;
    }

    static Options addTo(Options o) {
        return o.addOption(Option.builder().longOpt("model").hasArg().argName("M").required()
                        .desc("llama2.c .bin or HF model directory (plain or bnb-4bit)").get())
                .addOption(Option.builder().longOpt("tokenizer").hasArg().argName("PATH")
                        .desc("tokenizer.model, tokenizer.bin or tokenizer.json (default: the model's own, or tokenizer.model beside a .bin)").get())
                .addOption(Option.builder().longOpt("device").hasArg().argName("cpu|cuda|cuda:N")
                        .desc("compute device, cuda:N the N-th visible GPU (default: cuda when a device is present, else cpu)").get())
                .addOption(Option.builder().longOpt("load-in-4bit").desc("quantize the projections to NF4 on load (QLoRA's base)").get())
                .addOption(Option.builder().longOpt("bnb-4bit-compute-dtype").hasArg().argName("float32|bfloat16")
                        .desc("NF4 products in float32 (exact) or bfloat16 (bf16 operands, fp32 sums, as bitsandbytes; default: the checkpoint's quantization_config, else float32)").get())
                .addOption(Option.builder().longOpt("threads").hasArg().argName("N").desc("CPU threads (default: the physical cores)").get())
                .addOption(Option.builder().longOpt("adapter").hasArg().argName("DIR").desc("apply a PEFT LoRA adapter (ours or PEFT's)").get())
                .addOption(Option.builder().longOpt("scale").hasArg().argName("S").desc("multiply the adapter's scaling by S (post-training alpha scaling; default 1)").get());
    }

    static ModelArgs open(CommandLine cl) throws IOException, UsageException {
        String device = cl.getOptionValue("device");
        if (device != null) {
            try {
                Device.parse(device);
            } catch (IllegalArgumentException e) {
                throw new UsageException("--device: " + e.getMessage());
            }
        }
        if (cl.hasOption("threads")) {
            int n = Cli.parseInt(cl, "threads", 0);
            if (n < 1) throw new UsageException("--threads must be >= 1, got " + n);
            io.lora4j.ops.CpuThreads.set(n);
        }
        Backend backend;
        try {
            backend = Backends.select(device);
        } catch (IllegalStateException e) {
            throw new IllegalArgumentException("--device " + cl.getOptionValue("device") + ": " + e.getMessage());
        }
        Path modelPath = Path.of(cl.getOptionValue("model"));
        Tokenizer tok = Tokenizers.load(tokenizerPath(modelPath, cl.getOptionValue("tokenizer")));
        ModelLoader.Options opts = (cl.hasOption("load-in-4bit") ? ModelLoader.Options.in4bit() : ModelLoader.Options.defaults())
                .withBackend(backend);
        if (cl.hasOption("bnb-4bit-compute-dtype")) {
            try {
                opts = opts.withComputeDtype(io.lora4j.model.Bnb4bit.computeDtype(cl.getOptionValue("bnb-4bit-compute-dtype")));
            } catch (IllegalArgumentException e) {
                throw new UsageException("--bnb-4bit-compute-dtype: " + e.getMessage());
            }
        }
        LlamaWeights w = ModelLoader.load(modelPath, opts);
        try {
            // more embedding rows than tokens is normal (Qwen pads 151,669 tokens to 151,936 rows); fewer is not
            if (tok.vocabSize() > w.config().vocabSize())
                throw new FormatException(modelPath, "the tokenizer has " + tok.vocabSize() + " tokens, more than the model's vocabulary of "
                        + w.config().vocabSize() + ": they do not belong together");
            AdaptedModel am = null;
            if (cl.hasOption("adapter")) {
                float scale = Cli.parseFloat(cl, "scale", 1f);
                try (LoraAdapter a = LoraAdapter.load(Path.of(cl.getOptionValue("adapter")), backend, w.config())) {
                    am = AdaptedModel.merge(backend, w, a, scale);
                }
            } else if (cl.hasOption("scale")) {
                throw new UsageException("--scale needs --adapter");
            }
            try {
                return new ModelArgs(w, am, LlamaModel.create(backend, am != null ? am.weights() : w), tok, modelPath);
            } catch (RuntimeException e) {
                if (am != null) am.close();
                throw e;
            }
        } catch (IOException | RuntimeException | UsageException e) {
            w.close();
            throw e;
        }
    }

    /** --tokenizer, else the model's own (see {@link TokenizerPath#of}). */
    static Path tokenizerPath(Path model, String explicit) throws FormatException {
        return TokenizerPath.of(model, explicit == null ? null : Path.of(explicit));
    }

    @Override
    public void close() {
        model.close();
        if (adapted != null) adapted.close();
        weights.close();
    }
}
