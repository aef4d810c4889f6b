package io.lora4j.cli;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import io.lora4j.advice.GuideRules;
import io.lora4j.advice.GuideRules.DatasetFacts;
import io.lora4j.advice.GuideRules.Finding;
import io.lora4j.advice.RunReport;
import io.lora4j.data.DatasetReader;
import io.lora4j.train.RunConfig;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/**
 * {@code lora4j doctor --config run.yaml [--KEY VALUE ...] [--json]}: checks a run's settings
 * against the LoRA hyperparameters guide, rule by rule ({@link GuideRules}). Reads the dataset
 * when it exists (to tell chat data and count rows, after the eval split), never the model. Exit
 * 0: no advice; 3: advice or warnings (so CI can gate on it); 2: the config is invalid.
 *
 * <p>{@code lora4j doctor --run DIR [--config run.yaml]} explains a finished run from its
 * metrics.jsonl ({@link RunReport}): the overfitting and underfitting signals and the guide's
 * remedies. Exit 0: no signal; 3: signals.
 */
public final class DoctorCommand implements Command {
    /** Exit code when the guide has advice for the config. */
    public static final int ADVICE = 3;
    private static final Set<String> OWN = Set.of("config", "json", "run");

    @Override
    public String name() {
        return "doctor";
    }

    @Override
    public String summary() {
        return "check a run config against the LoRA hyperparameters guide, rule by rule";
    }

    @Override
    public String synopsis() {
        return "doctor --config run.yaml [--KEY VALUE ...] [--json] | doctor --run DIR [--config run.yaml]";
    }

    @Override
    public String description() {
        return "Prints each rule of the guide the config breaks: what it found, what to change, and the guide's reason.\n"
                + "Exit 0: no advice; 3: advice or warnings; 2: invalid config. Reads the dataset (if present), never the model.\n"
                + "--run DIR explains a finished run from its metrics.jsonl: overfitting/underfitting signals and the guide's remedies.";
    }

    @Override
    public Options options() {
        Options o = new Options()
                .addOption(Option.builder().longOpt("config").hasArg().argName("YAML").desc("the run's YAML config").get())
                .addOption(Option.builder().longOpt("json").desc("print the findings as a JSON array").get())
                .addOption(Option.builder().longOpt("run").hasArg().argName("DIR").desc("explain a finished run from DIR/metrics.jsonl").get());
        for (String k : RunConfig.keys()) o.addOption(Option.builder().longOpt(k).hasArg().argName("VALUE").desc("config key " + k).get());
        return o;
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        if (!cl.getArgList().isEmpty()) throw new UsageException("unexpected argument '" + cl.getArgList().get(0) + "'");
        if (cl.hasOption("run")) {
            boolean keys = cl.hasOption("config") || java.util.Arrays.stream(cl.getOptions()).anyMatch(o -> !OWN.contains(o.getLongOpt()));
            RunConfig cfg = keys ? Cli.runConfig(cl, OWN) : null; // the run's values in the remedies
            RunReport report = RunReport.explain(Path.of(cl.getOptionValue("run")), cfg);
            ctx.out().print(report.text());
            return report.signals().isEmpty() ? OK : ADVICE;
        }
        RunConfig cfg = Cli.runConfig(cl, OWN);
        DatasetFacts facts = DatasetFacts.unknown();
        if (cfg.dataset() != null && Files.exists(cfg.dataset())) {
            DatasetReader.Result r = DatasetReader.read(cfg.dataset(), cfg.data().datasetFormat(), cfg.data().maxBadRowFraction());
            int rows = r.samples().size();
            long evalRows = cfg.data().evalRows(rows);
            if (cfg.evalDataset() != null && Files.exists(cfg.evalDataset()))
                evalRows = DatasetReader.read(cfg.evalDataset(), cfg.data().datasetFormat(), cfg.data().maxBadRowFraction()).samples().size();
            else if (cfg.evalDataset() != null) evalRows = -1;
            facts = new DatasetFacts(DatasetFacts.isChat(r.format()), rows - cfg.data().evalRows(rows), -1, evalRows);
            ctx.err().println("lora4j doctor: " + cfg.data().describeEvalSplit(rows) + "; " + cfg.data().describeResponsesOnly(DatasetFacts.isChat(r.format())));
        } else if (cfg.dataset() != null) {
            ctx.err().println("lora4j doctor: " + cfg.dataset() + " not found: dataset rules use the config alone");
        }
        List<Finding> findings = GuideRules.check(cfg, facts);
        if (cl.hasOption("json")) {
            JsonArray a = new JsonArray();
            for (Finding f : findings) {
                JsonObject o = new JsonObject();
                o.addProperty("rule", f.rule());
                o.addProperty("severity", f.severity().label());
                o.addProperty("found", f.found());
                o.addProperty("change", f.change());
                o.addProperty("why", f.why());
                o.addProperty("section", f.section());
                a.add(o);
            }
            ctx.out().println(new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(a));
        } else if (findings.isEmpty()) {
            ctx.out().println("no advice: the config follows the LoRA hyperparameters guide");
        } else {
            for (Finding f : findings) ctx.out().println(f.describe());
            long warnings = findings.stream().filter(f -> f.severity() == GuideRules.Severity.WARNING).count();
            ctx.out().println(findings.size() + " finding" + (findings.size() == 1 ? "" : "s") + " (" + warnings + " warning"
                    + (warnings == 1 ? "" : "s") + ")");
        }
        return findings.isEmpty() ? OK : ADVICE;
    }
}
