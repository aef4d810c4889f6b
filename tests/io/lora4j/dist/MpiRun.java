package io.lora4j.dist;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.lora4j.cli.Main;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Starts test JVMs under Open MPI's {@code mpirun} on this machine (loopback). Without mpirun on
 * the PATH the tests are skipped, saying what to install, except where {@code LORA4J_REQUIRE_MPI=1}
 * (CI's {@code .ci/run}, which installs it): there they fail.
 */
final class MpiRun {
    /** What a finished mpirun job printed and returned. */
    record Result(int exit, String output, double seconds) {}

    private MpiRun() {}

    /** What an in-process {@code lora4j} run printed on its error stream and returned. */
    record Cli(int code, String err) {}

    /** {@code lora4j args...} in this JVM, with this process's environment plus {@code extraEnv}. */
    static Cli main(Map<String, String> extraEnv, String... args) {
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        Map<String, String> env = new HashMap<>(System.getenv());
        env.putAll(extraEnv);
        int code = Main.run(args, new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8), env);
        return new Cli(code, err.toString(StandardCharsets.UTF_8));
    }

    /** mpirun's path; skips (or, under LORA4J_REQUIRE_MPI=1, fails) the test when there is none. */
    static String mpirun() {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(":")) {
            Path p = Path.of(dir.isEmpty() ? "." : dir, "mpirun");
            if (Files.isExecutable(p)) return p.toString();
        }
        String msg = "mpirun not found on the PATH: install Open MPI (apt-get install openmpi-bin libopenmpi-dev) to run the data-parallel tests";
        if ("1".equals(System.getenv("LORA4J_REQUIRE_MPI"))) fail(msg + " (LORA4J_REQUIRE_MPI=1)");
        assumeTrue(false, msg);
        return null;
    }

    /**
     * {@code mpirun -np n java -cp <this classpath> main args...}, with {@code env} added
     * ("KEY=VALUE" each), waited for at most {@code timeoutS}; a job still running then is killed
     * and the test fails.
     */
    static Result run(int n, List<String> env, long timeoutS, String main, String... args) throws IOException, InterruptedException {
        try (Job job = start(n, env, main, args)) {
            return job.await(timeoutS);
        }
    }

    /** A running mpirun job whose merged output is collected. */
    static final class Job implements AutoCloseable {
        final Process process;
        final int n;
        private final StringBuilder out = new StringBuilder();
        private final Thread reader;
        private final long t0 = System.nanoTime();

        Job(Process p, int n) {
            this.process = p;
            this.n = n;
            reader = new Thread(() -> {
                try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                    for (String l; (l = r.readLine()) != null; ) synchronized (out) { out.append(l).append('\n'); }
                } catch (IOException e) {
                    synchronized (out) { out.append("(reading mpirun's output failed: ").append(e).append(")\n"); }
                }
            });
            reader.setDaemon(true);
            reader.start();
        }

        String output() {
            synchronized (out) {
                return out.toString();
            }
        }

        /** SIGKILL to mpirun and every process under it (the ranks): the whole job dies at once. */
        void killAll() {
            List<ProcessHandle> all = new ArrayList<>(process.descendants().toList());
            all.add(process.toHandle());
            for (ProcessHandle h : all) {
                try {
                    new ProcessBuilder("kill", "-9", Long.toString(h.pid())).start().waitFor();
                } catch (IOException | InterruptedException e) {
                    h.destroyForcibly();
                }
            }
        }

        Result await(long timeoutS) throws InterruptedException {
            if (!process.waitFor(timeoutS, TimeUnit.SECONDS)) {
                killAll();
                reader.join(2000);
                fail("mpirun -np " + n + " still running after " + timeoutS + " s:\n" + output());
            }
            reader.join(5000);
            return new Result(process.exitValue(), output(), (System.nanoTime() - t0) / 1e9);
        }

        @Override
        public void close() {
            if (process.isAlive()) killAll();
        }
    }

    /** Starts {@code mpirun -np n java ... main args...} without waiting (see {@link #run}). */
    static Job start(int n, List<String> env, String main, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(mpirun(), "--oversubscribe", "--bind-to", "none", "-np", Integer.toString(n)));
        for (String e : env) cmd.addAll(List.of("-x", e));
        cmd.addAll(java(main));
        cmd.addAll(List.of(args));
        return new Job(process(cmd).start(), n);
    }

    /**
     * {@code mpirun [mpirunArgs] -np 1 java ... main args[0] : -np 1 java ... main args[1] ...}: one
     * rank per entry of {@code argsPerRank}, each with its own arguments (MPMD), waited for as
     * {@link #run} does.
     */
    static Result runEach(List<String> mpirunArgs, List<String> env, long timeoutS, String main, List<List<String>> argsPerRank)
            throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(mpirun(), "--oversubscribe", "--bind-to", "none"));
        cmd.addAll(mpirunArgs);
        for (int r = 0; r < argsPerRank.size(); r++) {
            if (r > 0) cmd.add(":");
            cmd.addAll(List.of("-np", "1"));
            for (String e : env) cmd.addAll(List.of("-x", e));
            cmd.addAll(java(main));
            cmd.addAll(argsPerRank.get(r));
        }
        try (Job job = new Job(process(cmd).start(), argsPerRank.size())) {
            return job.await(timeoutS);
        }
    }

    /**
     * A torchrun-style start without any MPI launcher: {@code extraEnv.size()} JVMs started by hand
     * with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT, plus rank r's
     * {@code extraEnv.get(r)} (which may override them); all waited for at most {@code timeoutS}.
     * The exit is the first non-zero exit in rank order, else 0; the output is rank 0's, then rank 1's ...
     */
    static Result torchrun(List<Map<String, String>> extraEnv, long timeoutS, String main, String... args) throws IOException, InterruptedException {
        mpirun(); // Open MPI must be installed (ompi-server comes with it)
        int n = extraEnv.size(), port;
        try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
            port = s.getLocalPort();
        }
        List<String> cmd = new ArrayList<>(java(main));
        cmd.addAll(List.of(args));
        List<Job> jobs = new ArrayList<>();
        long t0 = System.nanoTime();
        try {
            for (int r = 0; r < n; r++) {
                ProcessBuilder pb = process(cmd);
                pb.environment().putAll(Map.of("RANK", Integer.toString(r), "WORLD_SIZE", Integer.toString(n), "LOCAL_RANK", Integer.toString(r),
                        "MASTER_ADDR", "127.0.0.1", "MASTER_PORT", Integer.toString(port)));
                pb.environment().putAll(extraEnv.get(r));
                jobs.add(new Job(pb.start(), n));
            }
            int exit = 0;
            StringBuilder out = new StringBuilder();
            for (Job j : jobs) {
                long left = Math.max(1, timeoutS - (System.nanoTime() - t0) / 1_000_000_000L);
                Result r = j.await(left);
                if (exit == 0) exit = r.exit();
                out.append(r.output());
            }
            return new Result(exit, out.toString(), (System.nanoTime() - t0) / 1e9);
        } finally {
            for (Job j : jobs) j.close();
        }
    }

    /** A test JVM's command line up to its arguments: this JVM's java and class path, a small quick-starting heap. */
    static List<String> java(String main) {
        return List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx768m",
                "-cp", System.getProperty("java.class.path"), main);
    }

    private static ProcessBuilder process(List<String> cmd) {
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        // Root in a container: Open MPI refuses to start without both of these.
        pb.environment().put("OMPI_ALLOW_RUN_AS_ROOT", "1");
        pb.environment().put("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        return pb;
    }
}
