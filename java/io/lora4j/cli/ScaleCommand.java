package io.lora4j.cli;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.FormatException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/**
 * {@code lora4j scale}: post-training alpha scaling. Writes a copy of an adapter whose lora_alpha is
 * multiplied by the factor, so that its scale s = alpha/r (or alpha/√r) is; the tensors are copied
 * unchanged.
 */
public final class ScaleCommand implements Command {
    @Override public String name() { return "scale"; }

    @Override public String summary() { return "post-training alpha scaling of an adapter (rewrites lora_alpha)"; }

    @Override public String synopsis() { return "scale --adapter A --factor F --out DIR [--overwrite]"; }

    @Override
    public Options options() {
        return new Options()
                .addOption(Option.builder().longOpt("adapter").hasArg().argName("A").required().desc("PEFT LoRA adapter directory").get())
                .addOption(Option.builder().longOpt("factor").hasArg().argName("F").required().desc("multiplies lora_alpha (> 0)").get())
                .addOption(Option.builder().longOpt("out").hasArg().argName("DIR").required().desc("output adapter directory").get())
                .addOption(Option.builder().longOpt("overwrite").desc("replace an existing non-empty --out").get());
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        if (!cl.getArgList().isEmpty()) throw new UsageException("unexpected argument '" + cl.getArgList().get(0) + "'");
        float factor = Cli.parseFloat(cl, "factor", 1f);
        if (!(factor > 0)) throw new UsageException("--factor must be > 0, got " + factor);
        Path in = Path.of(cl.getOptionValue("adapter")), out = Path.of(cl.getOptionValue("out"));
        Path cfgFile = in.resolve("adapter_config.json"), weights = in.resolve("adapter_model.safetensors");
        for (Path p : new Path[] {cfgFile, weights})
            if (!Files.isRegularFile(p)) throw new FormatException(p, "missing: not a PEFT adapter directory");
        JsonObject cfg;
        try {
            JsonElement e = JsonParser.parseString(Files.readString(cfgFile, StandardCharsets.UTF_8));
            if (!e.isJsonObject()) throw new FormatException(cfgFile, "not a JSON object");
            cfg = e.getAsJsonObject();
        } catch (JsonParseException e) {
            throw new FormatException(cfgFile, "not valid JSON");
        }
        JsonElement alpha = cfg.get("lora_alpha");
        if (alpha == null || !alpha.isJsonPrimitive() || !alpha.getAsJsonPrimitive().isNumber())
            throw new FormatException(cfgFile, "lora_alpha is missing or not a number");
        double before = alpha.getAsDouble(), after = before * factor;
        cfg.addProperty("lora_alpha", after == Math.rint(after) && Math.abs(after) < 1e15 ? (Number) (long) after : (Number) after);
        String json = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(cfg);
        AtomicFiles.writeDirectory(out, cl.hasOption("overwrite"), tmp -> {
            Files.writeString(tmp.resolve("adapter_config.json"), json, StandardCharsets.UTF_8);
            Files.copy(weights, tmp.resolve("adapter_model.safetensors"), StandardCopyOption.COPY_ATTRIBUTES);
        });
        ctx.out().println("wrote " + out + ": lora_alpha " + MergeCommand.fmt(before) + " -> " + MergeCommand.fmt(after)
                + " (scale x" + MergeCommand.fmt(factor) + "), tensors unchanged");
        return OK;
    }
}
