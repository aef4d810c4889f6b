package io.lora4j.cli;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import io.lora4j.model.ModelInspector;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/** {@code lora4j inspect PATH}: what a model file or directory holds. */
public final class InspectCommand implements Command {
    private static final String[] CONFIG_KEYS = {"model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings", "rms_norm_eps",
        "rope_theta", "rope_scaling", "tie_word_embeddings", "bos_token_id", "eos_token_id", "torch_dtype"};

    @Override public String name() { return "inspect"; }

    @Override public String summary() { return "list the tensors and configuration of a model file or directory"; }

    @Override public String synopsis() { return "inspect PATH [--json]"; }

    @Override public String description() {
        return "PATH is a .safetensors file, an HF model directory (plain or bnb-4bit) or a llama2.c .bin. Lists every tensor\n"
                + "(name, dtype, shape, bytes; for NF4 weights blocksize, source dtype and double quantization) after a summary.";
    }

    @Override
    public Options options() {
        return new Options().addOption(Option.builder().longOpt("json").desc("print the result as JSON").get());
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        List<String> args = cl.getArgList();
        if (args.isEmpty()) throw new UsageException("missing PATH");
        if (args.size() > 1) throw new UsageException("one PATH expected, got " + args.size());
        ModelInspector.ModelInfo info = ModelInspector.inspect(Path.of(args.get(0)));
        if (cl.hasOption("json")) {
            ctx.out().println(new GsonBuilder().setPrettyPrinting().serializeNulls().disableHtmlEscaping().create().toJson(info.toJson()));
            return OK;
        }
        var out = ctx.out();
        out.printf(Locale.ROOT, "%s: %s, %s parameters, %d tensors, %s of tensors, %s on disk%n", info.path(), info.format(),
                count(info.parameterCount()), info.tensors().size(), human(info.tensorBytes()), human(info.fileBytes()));
        JsonObject cfg = info.config();
        if (cfg != null) {
            List<String> parts = new ArrayList<>();
            for (String k : CONFIG_KEYS) if (cfg.has(k)) parts.add(k + " " + compact(cfg.get(k)));
            out.println("config: " + String.join(", ", parts));
            if (cfg.has("quantization_config") && cfg.get("quantization_config").isJsonObject()) {
                JsonObject q = cfg.getAsJsonObject("quantization_config");
                List<String> qp = new ArrayList<>();
                for (String k : new String[] {"quant_method", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype",
                    "bnb_4bit_quant_storage", "load_in_4bit", "load_in_8bit"})
                    if (q.has(k)) qp.add(k + " " + compact(q.get(k)));
                out.println("quantization: " + String.join(", ", qp));
            }
        }
        if (!info.metadata().isEmpty()) {
            List<String> md = new ArrayList<>();
            for (Map.Entry<String, String> e : info.metadata().entrySet()) md.add(e.getKey() + "=" + e.getValue());
            out.println("metadata: " + String.join(", ", md));
        }
        for (String n : info.notes()) out.println("note: " + n);
        out.println();
        int wn = 4, wd = 5, ws = 5, wb = 5;
        List<String[]> rows = new ArrayList<>();
        for (ModelInspector.TensorInfo t : info.tensors()) {
            String extra = "";
            if (t.nf4() != null) {
                extra = String.format(Locale.ROOT, "NF4 %s blocksize %d from %s, %s", Arrays.toString(t.nf4().shape()),
                        t.nf4().blocksize(), t.nf4().sourceDtype(), t.nf4().doubleQuant() ? "double quant" : "fp32 absmax");
            }
            String[] r = {t.name(), t.dtype(), Arrays.toString(t.shape()), Long.toString(t.bytes()), extra};
            rows.add(r);
            wn = Math.max(wn, r[0].length());
            wd = Math.max(wd, r[1].length());
            ws = Math.max(ws, r[2].length());
            wb = Math.max(wb, r[3].length());
        }
        String fmt = "%-" + wn + "s  %-" + wd + "s  %-" + ws + "s  %" + wb + "s  %s%n";
        out.printf(Locale.ROOT, fmt, "name", "dtype", "shape", "bytes", "");
        for (String[] r : rows) out.printf(Locale.ROOT, fmt, (Object[]) r);
        return OK;
    }

    private static String compact(JsonElement e) {
        return e.isJsonPrimitive() && e.getAsJsonPrimitive().isString() ? e.getAsString() : e.toString();
    }

    /** Bytes in binary units ("60.8 MiB"). */
    static String human(long bytes) {
        if (bytes < 1024) return bytes + " B";
        String[] u = {"KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int i = -1;
        while (v >= 1024 && i < u.length - 1) {
            v /= 1024;
            i++;
        }
        return String.format(Locale.ROOT, "%.1f %s", v, u[i]);
    }

    /** A parameter count ("15.2M"). */
    static String count(long n) {
        if (n >= 1_000_000_000L) return String.format(Locale.ROOT, "%.2fB", n / 1e9);
        if (n >= 1_000_000L) return String.format(Locale.ROOT, "%.2fM", n / 1e6);
        if (n >= 1_000L) return String.format(Locale.ROOT, "%.1fK", n / 1e3);
        return Long.toString(n);
    }
}
