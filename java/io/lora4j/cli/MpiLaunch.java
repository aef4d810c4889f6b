package io.lora4j.cli;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;

/**
 * {@code lora4j train --nproc N}: starts N ranks of this same command on this machine through
 * Open MPI's {@code mpirun} and waits for them. Each rank runs this JVM's Java, class path and JVM
 * options, finds its rank in mpirun's variables ({@link io.lora4j.dist.World}) and gets
 * {@code cores / N} CPU threads unless {@code --threads} says otherwise. The environment variable
 * {@value #EXTRA} adds words to mpirun's command line (e.g. {@code --oversubscribe}, or
 * {@code --allow-run-as-root} in a container).
 */
final class MpiLaunch {
    /** Extra mpirun arguments, split on white space. */
    static final String EXTRA = "LORA4J_MPIRUN_ARGS";

    private MpiLaunch() {}

    /** Runs the job; returns mpirun's exit code (non-zero when any rank failed). */
    static int run(CommandLine cl, int n, CliContext ctx) throws Exception {
        String mpirun = find("mpirun", ctx.env().getOrDefault("PATH", ""));
        if (mpirun == null)
            throw new UsageException("--nproc " + n + " starts the ranks with Open MPI's mpirun, which is not on the PATH"
                    + " (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev)");
        List<String> cmd = new ArrayList<>(List.of(mpirun, "-np", Integer.toString(n), "--bind-to", "none"));
        String extra = ctx.env().getOrDefault(EXTRA, "").strip();
        if (!extra.isEmpty()) cmd.addAll(List.of(extra.split("\\s+")));
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName(), "train"));
        for (Option opt : cl.getOptions()) {
            if (opt.getLongOpt().equals("nproc")) continue;
            cmd.add("--" + opt.getLongOpt());
            if (opt.hasArg()) cmd.add(opt.getValue());
        }
        // the ranks' output goes to this command's error stream, line by line (rank 0 speaks; see dist.RankLog)
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectInput(ProcessBuilder.Redirect.INHERIT);
        if (!cl.hasOption("threads") && !ctx.env().containsKey("LORA4J_NUM_THREADS")) {
            int threads = Math.max(1, Runtime.getRuntime().availableProcessors() / n);
            pb.environment().put("LORA4J_NUM_THREADS", Integer.toString(threads));
        }
        ctx.err().println("lora4j train: starting " + n + " ranks: " + String.join(" ", cmd.subList(0, Math.min(cmd.size(), 5))) + " ...");
        Process p = pb.start();
        try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
            for (String line; (line = r.readLine()) != null; ) ctx.err().println(line);
            return p.waitFor();
        } catch (InterruptedException e) {
            p.destroy();
            Thread.currentThread().interrupt();
            return TrainCommand.INTERRUPTED;
        }
    }

    private static String find(String exe, String path) {
        for (String dir : path.split(":")) {
            Path p = Path.of(dir.isEmpty() ? "." : dir, exe);
            if (Files.isExecutable(p)) return p.toString();
        }
        return null;
    }
}
