package io.lora4j.cli;

import io.lora4j.advice.TrainingMonitor;
import io.lora4j.dist.MpiDataParallel;
import io.lora4j.dist.RankLog;
import io.lora4j.dist.World;
import io.lora4j.ops.Mpi;
import io.lora4j.train.DataParallel;
import io.lora4j.report.LossChart;
import io.lora4j.report.ProgressDisplay;
import io.lora4j.train.RunConfig;
import io.lora4j.train.TrainingListener;
import io.lora4j.train.TrainingRun;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;
import sun.misc.Signal;
import sun.misc.SignalHandler;

/**
 * {@code lora4j train}: LoRA/QLoRA fine-tuning from a YAML config, writing a PEFT adapter.
 *
 * <p>Ctrl-C (SIGINT) asks the run to stop after the current step: it writes a checkpoint, prints
 * the command that resumes it and exits {@value #INTERRUPTED}; a second Ctrl-C ends the process at
 * once (the JVM's own handler is back in place by then).
 */
public final class TrainCommand implements Command {
    /** Exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it). */
    public static final int INTERRUPTED = 130;
    private static final Set<String> OWN = Set.of("config", "out", "overwrite", "threads", "resume", "max-bad-steps", "nproc", "collective-timeout",
            "hash-every");

    @Override public String name() { return "train"; }

    @Override public String summary() { return "fine-tune a model with LoRA or QLoRA and write a PEFT adapter"; }

    @Override public String synopsis() {
        return "train --config run.yaml [--KEY VALUE ...] --out DIR [--overwrite] | train --config run.yaml [--KEY VALUE ...] --resume DIR";
    }

    @Override public String description() {
        return "Config keys (YAML and --KEY VALUE, Unsloth/TRL names): " + String.join(", ", RunConfig.keys()) + ".\n"
                + "Writes DIR/adapter_config.json, DIR/adapter_model.safetensors (loadable by PEFT), DIR/metrics.jsonl and\n"
                + "DIR/checkpoint-N/ (adapter, optimizer state, trainer state, manifest) every save_steps and at the end.\n"
                + "--resume DIR continues a run exactly from DIR's newest valid checkpoint (or from DIR = a checkpoint-N)\n"
                + "with the same config. Ctrl-C stops after the current step with a checkpoint (exit 130). A step with a\n"
                + "non-finite loss or gradient is skipped; --max-bad-steps in a row stop the run (exit 1).\n"
                + "Data: JSONL rows {\"text\"} or {\"input_ids\", \"labels\"?}.";
    }

    @Override
    public Options options() {
        Options o = new Options()
                .addOption(Option.builder().longOpt("config").hasArg().argName("YAML").desc("the run's YAML config").get())
                .addOption(Option.builder().longOpt("out").hasArg().argName("DIR").desc("output directory (overrides output_dir)").get())
                .addOption(Option.builder().longOpt("overwrite").desc("replace a non-empty output directory").get())
                .addOption(Option.builder().longOpt("threads").hasArg().argName("N").desc("CPU threads (default: the physical cores)").get())
                .addOption(Option.builder().longOpt("resume").hasArg().argName("DIR")
                        .desc("continue the run in DIR from its newest valid checkpoint, or from DIR = a checkpoint-N directory").get())
                .addOption(Option.builder().longOpt("max-bad-steps").hasArg().argName("N")
                        .desc("stop after N consecutive steps with a non-finite loss or gradient (default " + TrainingRun.DEFAULT_MAX_BAD_STEPS + ")").get())
                .addOption(Option.builder().longOpt("nproc").hasArg().argName("N")
                        .desc("data-parallel training: start N ranks on this machine through Open MPI's mpirun (global batch ="
                                + " batch x accumulation x N)").get())
                .addOption(Option.builder().longOpt("collective-timeout").hasArg().argName("SECONDS")
                        .desc("data-parallel: how long a rank waits for the others in a collective before it stops with an error (default "
                                + (int) MpiDataParallel.DEFAULT_TIMEOUT_S + ")").get())
                .addOption(Option.builder().longOpt("hash-every").hasArg().argName("STEPS")
                        .desc("data-parallel: compare the ranks' adapters every STEPS steps (default " + MpiDataParallel.DEFAULT_HASH_EVERY + ")").get());
        for (String k : RunConfig.keys()) if (!k.equals("output_dir")) o.addOption(Option.builder().longOpt(k).hasArg().argName("VALUE").desc("config key " + k).get());
        o.addOption(Option.builder().longOpt("output_dir").hasArg().argName("DIR").desc("config key output_dir").get());
        return o;
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        if (!cl.getArgList().isEmpty()) throw new UsageException("unexpected argument '" + cl.getArgList().get(0) + "'");
        if (cl.hasOption("threads")) {
            int n = Cli.parseInt(cl, "threads", 0);
            if (n < 1) throw new UsageException("--threads must be >= 1, got " + n);
            io.lora4j.ops.CpuThreads.set(n);
        }
        int maxBad = cl.hasOption("max-bad-steps") ? Cli.parseInt(cl, "max-bad-steps", 0) : TrainingRun.DEFAULT_MAX_BAD_STEPS;
        if (maxBad < 1) throw new UsageException("--max-bad-steps must be >= 1, got " + maxBad);
        World world = World.discover(ctx.env());
        if (cl.hasOption("nproc")) {
            int n = Cli.parseInt(cl, "nproc", 0);
            if (n < 1) throw new UsageException("--nproc must be >= 1, got " + n);
            if (world.distributed())
                throw new UsageException("--nproc starts the ranks itself, but this process already is rank " + world.rank() + " of " + world.size()
                        + " (" + world.launcher() + ")");
            if (n > 1) return MpiLaunch.run(cl, n, ctx);
        }
        double timeout = MpiDataParallel.DEFAULT_TIMEOUT_S;
        if (cl.hasOption("collective-timeout")) {
            try {
                timeout = Double.parseDouble(cl.getOptionValue("collective-timeout"));
            } catch (NumberFormatException e) {
                timeout = Double.NaN;
            }
            if (!(timeout > 0) || Double.isInfinite(timeout))
                throw new UsageException("--collective-timeout must be a positive number of seconds, got '" + cl.getOptionValue("collective-timeout") + "'");
        }
        int hashEvery = cl.hasOption("hash-every") ? Cli.parseInt(cl, "hash-every", 0) : MpiDataParallel.DEFAULT_HASH_EVERY;
        if (hashEvery < 1) throw new UsageException("--hash-every must be >= 1, got " + hashEvery);
        if (world.distributed()) return runRank(cl, ctx, world, timeout, hashEvery, maxBad);
        Target t = Target.of(cl);
        return runAlone(cl, ctx, t.cfg, t.resume, t.out, maxBad);
    }

    /** What a run trains and where it writes: the config and --out or --resume. */
    private record Target(RunConfig cfg, Path resume, Path out) {
        static Target of(CommandLine cl) throws Exception {
            RunConfig cfg = Cli.runConfig(cl, OWN);
            Path resume = cl.hasOption("resume") ? Path.of(cl.getOptionValue("resume")) : null;
            Path out = cl.hasOption("out") ? Path.of(cl.getOptionValue("out")) : resume == null ? cfg.outputDir() : null;
            if (resume != null && cl.hasOption("overwrite")) throw new UsageException("--resume continues a run: it cannot be combined with --overwrite");
            if (resume == null && out == null) throw new UsageException("give --out DIR (or output_dir in the config)");
            return new Target(cfg, resume, out);
        }
    }

    /**
     * One rank of a data-parallel run (see {@link MpiDataParallel}): rank 0 speaks and writes; every
     * rank's warnings and errors name it. MPI starts first, before the config is read: a rank that
     * fails after that is ended with the whole job ({@link Main} calls MPI_Abort), while one that
     * failed before it would leave the others waiting in MPI_Init under a launcher that does not
     * end the job when one task exits non-zero.
     */
    private int runRank(CommandLine cl, CliContext ctx, World world, double timeout, int hashEvery, int maxBad) throws Exception {
        PrintStream log = RankLog.of(ctx.err(), world);
        try {
            DataParallel parallel = MpiDataParallel.create(world, timeout, hashEvery, MpiDataParallel.GpuAllReduce.fromEnv(ctx.env()));
            Target t = Target.of(cl);
            RunConfig cfg = t.cfg;
            Path resume = t.resume, out = t.out;
            if (world.isLeader())
                log.println("data-parallel: " + world.size() + " ranks (" + world.launcher() + ", " + Mpi.libraryVersion() + "), global batch "
                        + cfg.train().perDeviceTrainBatchSize() + " x " + cfg.train().gradientAccumulationSteps() + " x " + world.size());
            TrainingListener watch = world.isLeader()
                    ? TrainingListener.all(new TrainingMonitor(log, cfg).withAdapterDir(String.valueOf(out != null ? out : resume)), LossChart.onFinish(log))
                    : TrainingListener.all();
            TrainingRun.Options opts = TrainingRun.Options.defaults().withOverwrite(cl.hasOption("overwrite")).withResume(resume)
                    .withMaxBadSteps(maxBad).withListener(watch).withParallel(parallel);
            TrainingRun.Summary s = TrainingRun.run(cfg, out, log, opts);
            if (world.isLeader() && parallel.exchange() instanceof MpiDataParallel m && s.steps() > 0)
                log.printf(Locale.ROOT, "data-parallel: rank 0 spent %.3f s in %d collectives, %.2f ms per step (waiting for slower ranks included)%n",
                        m.reduceSeconds(), m.reduceCalls(), 1e3 * m.reduceSeconds() / s.steps());
            Mpi.finalizeMpi();
            return s.status() == TrainingRun.Status.DIVERGED ? FAILURE : OK;
        } catch (Mpi.MpiException | IllegalStateException e) {
            // no MPI_Finalize: the other ranks may sit in a collective; Main ends them (MPI_Abort)
            ctx.err().println(world.prefix() + "lora4j train: " + e.getMessage());
            return FAILURE;
        } catch (Exception e) {
            return Main.fail(name(), e, ctx, world.prefix());
        }
    }

    private int runAlone(CommandLine cl, CliContext ctx, RunConfig cfg, Path resume, Path out, int maxBad) throws Exception {
        TrainingListener watch = TrainingListener.all(
                new ProgressDisplay(ctx.err(), ProgressDisplay.isTerminal(ctx.env())),
                new TrainingMonitor(ctx.err(), cfg).withAdapterDir(String.valueOf(out != null ? out : resume)),
                LossChart.onFinish(ctx.err()));
        TrainingRun.Options opts = TrainingRun.Options.defaults().withOverwrite(cl.hasOption("overwrite")).withResume(resume)
                .withMaxBadSteps(maxBad).withListener(watch);

        AtomicBoolean stop = new AtomicBoolean();
        Signal sigint = new Signal("INT");
        SignalHandler previous = null;
        try {
            SignalHandler[] prev = new SignalHandler[1];
            prev[0] = Signal.handle(sigint, sig -> {
                stop.set(true);
                ctx.err().println();
                ctx.err().println("Ctrl-C: stopping after this step and writing a checkpoint (Ctrl-C again aborts at once)");
                Signal.handle(sigint, prev[0]);
            });
            previous = prev[0];
        } catch (IllegalArgumentException e) {
            ctx.err().println("note: Ctrl-C cannot be caught here (" + e.getMessage() + "): it ends the run without a checkpoint");
        }
        TrainingRun.Summary s;
        try {
            s = TrainingRun.run(cfg, out, ctx.err(), opts.withStopRequested(stop::get));
        } finally {
            if (previous != null) Signal.handle(sigint, previous);
        }
        switch (s.status()) {
            case INTERRUPTED: {
                Path runDir = s.checkpoint().getParent();
                ctx.err().println("resume with: lora4j train " + resumeArgs(cl) + " --resume " + quote(runDir.toString()));
                return INTERRUPTED;
            }
            case DIVERGED:
                return FAILURE;
            default:
                return OK;
        }
    }

    /** The options of this invocation that a resume needs (config and overrides), as shell words. */
    private static String resumeArgs(CommandLine cl) {
        List<String> words = new ArrayList<>();
        for (Option opt : cl.getOptions()) {
            String n = opt.getLongOpt();
            if (n.equals("out") || n.equals("overwrite") || n.equals("resume")) continue;
            words.add("--" + n);
            if (opt.hasArg()) words.add(quote(opt.getValue()));
        }
        return String.join(" ", words);
    }

    /** {@code s} as one POSIX shell word. */
    static String quote(String s) {
        if (!s.isEmpty() && s.matches("[A-Za-z0-9_./=:,+@%-]+")) return s;
        return "'" + s.replace("'", "'\\''") + "'";
    }
}
