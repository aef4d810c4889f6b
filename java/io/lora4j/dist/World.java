package io.lora4j.dist;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Where this process stands among the ranks of a data-parallel run, as its launcher told it
 * through environment variables. Read once at start, before any collective.
 *
 * <p>Launchers, in the order they are looked for (the first whose variables are present wins):
 * <ol>
 *   <li>Open MPI's {@code mpirun}: {@code OMPI_COMM_WORLD_RANK}, {@code OMPI_COMM_WORLD_SIZE},
 *       {@code OMPI_COMM_WORLD_LOCAL_RANK};</li>
 *   <li>a Slurm job step ({@code srun}): {@code SLURM_PROCID}, {@code SLURM_NTASKS},
 *       {@code SLURM_LOCALID}, only where {@code SLURM_STEP_ID} says this is a step started by
 *       {@code srun} (a batch script also sees {@code SLURM_PROCID=0} and the job's task count);</li>
 *   <li>torchrun style: {@code RANK}, {@code WORLD_SIZE}, {@code LOCAL_RANK}, with
 *       {@code MASTER_ADDR} and {@code MASTER_PORT} (required when the world has more than one rank).</li>
 * </ol>
 * None of them: a single process, rank 0 of 1.
 *
 * @param rank      this process's rank, 0 ≤ rank &lt; size
 * @param size      the number of ranks (world size)
 * @param localRank rank among the processes on this machine (the GPU a multi-GPU node gives it)
 * @param launcher  who started the process
 * @param masterAddr rendezvous host of a torchrun-style start, else null
 * @param masterPort rendezvous port of a torchrun-style start, else 0
 */
public record World(int rank, int size, int localRank, Launcher launcher, String masterAddr, int masterPort) {
    /** Who started this process. */
    public enum Launcher {
        SINGLE("single process"),
        OPEN_MPI("Open MPI (mpirun)"),
        SLURM("Slurm (srun)"),
        TORCHRUN("torchrun-style variables");

        private final String label;

        Launcher(String label) { this.label = label; }

        @Override public String toString() { return label; }
    }

    /** The world of a process nobody else joins. */
    public static final World SINGLE = new World(0, 1, 0, Launcher.SINGLE, null, 0);

    public World {
        if (size < 1 || rank < 0 || rank >= size || localRank < 0)
            throw new IllegalArgumentException("rank " + rank + " of " + size + " (local rank " + localRank + ") is not a valid place in a world");
    }

    /** True for rank 0: the rank that alone writes adapters, checkpoints, metrics and charts. */
    public boolean isLeader() { return rank == 0; }

    /** True when other ranks take part (world size above 1). */
    public boolean distributed() { return size > 1; }

    /**
     * The launcher's variable that holds {@link #localRank()} ({@code OMPI_COMM_WORLD_LOCAL_RANK},
     * {@code SLURM_LOCALID}, {@code LOCAL_RANK}); null for a single process. Where it was unset the
     * local rank is the rank.
     */
    public String localRankVariable() {
        switch (launcher) {
            case OPEN_MPI: return "OMPI_COMM_WORLD_LOCAL_RANK";
            case SLURM: return "SLURM_LOCALID";
            case TORCHRUN: return "LOCAL_RANK";
            default: return null;
        }
    }

    /** "rank 1/2: " for messages of a distributed run, "" for a single process. */
    public String prefix() { return size > 1 ? "rank " + rank + "/" + size + ": " : ""; }

    /** The world this process's environment describes. */
    public static World fromEnvironment() { return discover(System.getenv()); }

    /**
     * The world the variables {@code env} describe (see the class comment).
     *
     * @throws IllegalArgumentException a one-line message naming the variable when a value is not a
     *                                  number, a rank is not below the size, or a torchrun-style
     *                                  start of more than one rank misses its address
     */
    public static World discover(Map<String, String> env) {
        if (env.containsKey("OMPI_COMM_WORLD_RANK") || env.containsKey("OMPI_COMM_WORLD_SIZE"))
            return counted(env, Launcher.OPEN_MPI, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", null, 0);
        if (env.containsKey("SLURM_PROCID") && env.containsKey("SLURM_STEP_ID"))
            return counted(env, Launcher.SLURM, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", null, 0);
        if (env.containsKey("RANK") || env.containsKey("WORLD_SIZE")) {
            int size = number(env, "WORLD_SIZE", -1);
            String addr = env.get("MASTER_ADDR");
            int port = 0;
            if (size > 1) {
                if (addr == null || addr.isBlank())
                    throw new IllegalArgumentException("WORLD_SIZE=" + size + " but MASTER_ADDR is not set: a torchrun-style start needs the rendezvous host");
                port = number(env, "MASTER_PORT", -1);
                if (port < 1 || port > 65535) throw new IllegalArgumentException("MASTER_PORT=" + env.get("MASTER_PORT") + " is not a TCP port (1..65535)");
            }
            return counted(env, Launcher.TORCHRUN, "RANK", "WORLD_SIZE", "LOCAL_RANK", addr == null ? null : addr.strip(), port);
        }
        return SINGLE;
    }

    private static World counted(Map<String, String> env, Launcher launcher, String rankVar, String sizeVar, String localVar,
            String addr, int port) {
        int rank = number(env, rankVar, -1);
        int size = number(env, sizeVar, -1);
        int local = env.containsKey(localVar) ? number(env, localVar, -1) : rank;
        List<String> bad = new ArrayList<>();
        if (size < 1) bad.add(sizeVar + " must be >= 1");
        if (rank < 0) bad.add(rankVar + " must be >= 0");
        if (size >= 1 && rank >= size) bad.add(rankVar + "=" + rank + " is not below " + sizeVar + "=" + size);
        if (local < 0) bad.add(localVar + " must be >= 0");
        if (!bad.isEmpty()) throw new IllegalArgumentException(launcher + ": " + String.join("; ", bad));
        return new World(rank, size, local, launcher, addr, port);
    }

    /** The integer in {@code name}; {@code missing} when it is absent. */
    private static int number(Map<String, String> env, String name, int missing) {
        String v = env.get(name);
        if (v == null) return missing;
        try {
            return Integer.parseInt(v.strip());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(name + "='" + v + "' is not an integer");
        }
    }
}
