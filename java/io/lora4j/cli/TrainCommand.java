package io.lora4j.cli;

import io.lora4j.train.RunConfig;
import io.lora4j.train.TrainingRun;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/** {@code lora4j train}: LoRA/QLoRA fine-tuning from a YAML config, writing a PEFT adapter. */
public final class TrainCommand implements Command {
    @Override public String name() { return "train"; }

    @Override public String summary() { return "fine-tune a model with LoRA or QLoRA and write a PEFT adapter"; }

    @Override public String synopsis() { return "train --config run.yaml [--KEY VALUE ...] --out DIR [--overwrite]"; }

    @Override public String description() {
        return "Config keys (YAML and --KEY VALUE, Unsloth/TRL names): " + String.join(", ", RunConfig.keys()) + ".\n"
                + "Writes DIR/adapter_config.json, DIR/adapter_model.safetensors (loadable by PEFT), DIR/metrics.jsonl and\n"
                + "DIR/checkpoint-N/ with save_steps. Data: JSONL rows {\"text\"} or {\"input_ids\", \"labels\"?}.";
    }

    @Override
    public Options options() {
        Options o = new Options()
                .addOption(Option.builder().longOpt("config").hasArg().argName("YAML").desc("the run's YAML config").get())
                .addOption(Option.builder().longOpt("out").hasArg().argName("DIR").desc("output directory (overrides output_dir)").get())
                .addOption(Option.builder().longOpt("overwrite").desc("replace a non-empty output directory").get())
                .addOption(Option.builder().longOpt("threads").hasArg().argName("N").desc("CPU threads (default: all cores)").get());
        for (String k : RunConfig.keys()) if (!k.equals("output_dir")) o.addOption(Option.builder().longOpt(k).hasArg().argName("VALUE").desc("config key " + k).get());
        o.addOption(Option.builder().longOpt("output_dir").hasArg().argName("DIR").desc("config key output_dir").get());
        return o;
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        if (!cl.getArgList().isEmpty()) throw new UsageException("unexpected argument '" + cl.getArgList().get(0) + "'");
        Map<String, String> overrides = new LinkedHashMap<>();
        for (Option opt : cl.getOptions())
            if (!java.util.Set.of("config", "out", "overwrite", "threads").contains(opt.getLongOpt()))
                overrides.put(opt.getLongOpt(), opt.getValue());
        if (cl.hasOption("threads")) {
            int n = Cli.parseInt(cl, "threads", 0);
            if (n < 1) throw new UsageException("--threads must be >= 1, got " + n);
            io.lora4j.nativeapi.NativeLibrary.setNumThreads(n);
        }
        Path yaml = cl.hasOption("config") ? Path.of(cl.getOptionValue("config")) : null;
        if (yaml == null && overrides.isEmpty()) throw new UsageException("give --config run.yaml (and/or --KEY VALUE settings)");
        RunConfig cfg;
        try {
            cfg = RunConfig.load(yaml, overrides);
        } catch (IllegalArgumentException e) {
            throw new UsageException(e.getMessage());
        }
        Path out = cl.hasOption("out") ? Path.of(cl.getOptionValue("out")) : cfg.outputDir();
        if (out == null) throw new UsageException("give --out DIR (or output_dir in the config)");
        TrainingRun.run(cfg, out, cl.hasOption("overwrite"), ctx.err());
        return OK;
    }
}
