package io.lora4j.dist;

import io.lora4j.data.Batch;
import io.lora4j.data.DataPipeline;
import io.lora4j.ops.Backend;
import io.lora4j.ops.CudaDevices;
import io.lora4j.ops.Mpi;
import io.lora4j.ops.Nccl;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import io.lora4j.train.DataParallel;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A rank's part in a data-parallel run over MPI ({@link Mpi}): the {@link DataParallel.Shard} and
 * {@link DataParallel.Exchange} of {@link io.lora4j.train.Trainer}.
 *
 * <p><b>Sharding.</b> Every rank builds the same data pipeline (same seed, same order). The
 * global window of optimizer step s is window s of {@code data.steps(epoch, b, G·W)}: the
 * micro-batches a single process with accumulation G·W would train, so for a fixed global batch
 * b·G·W the order does not depend on the world size. Rank r trains micro-batches
 * [r·G, (r+1)·G) of it (contiguous; a short last window of an epoch leaves the last ranks fewer,
 * possibly none, which is fine: they contribute zeros). The step count follows: an epoch has
 * ceil(rows / (b·G·W)) steps.
 *
 * <p><b>Sums.</b> Per step, before the backward passes: one 8-byte all-reduce of the window's
 * unmasked target count N, so that every rank scales its cross-entropy gradient by the same
 * global 1/N, the arithmetic of the single process (never a mean of per-rank means). After them:
 * ONE all-reduce over a flat fp64 buffer [P gradients, loss sum]: fp32 gradients are widened, so
 * that for two ranks the sum is exact and is rounded once to fp32 (more ranks: fp64 summation
 * order, far below fp32's rounding). Clipping and AdamW then see the same reduced gradient on every
 * rank.
 *
 * <p>Dropout masks follow the global micro-batch index ({@link #firstMicroBatch}); eval
 * batches are dealt round-robin to the ranks and their loss sum and target count reduced in one
 * collective.
 *
 * <p><b>Drift check.</b> Every {@code hashEvery} steps (and after step 1) the ranks compare a
 * 64-bit hash of the adapter's parameters with rank 0's; any difference stops every rank with an
 * {@link IllegalStateException} naming the step and the ranks that differ.
 *
 * <p><b>On the CUDA backend</b> the gradient sum runs on the device through NCCL where
 * {@code libnccl.so.2} loads on every rank ({@link Nccl}; rank 0's ncclUniqueId reaches the others
 * over MPI): one ncclAllReduce (fp32 sum, in place) of the flat gradient buffer, queued on the
 * step's stream, so clipping and AdamW queued after it read the sum without copying it through the host;
 * the host waits for it with the collective deadline ({@link Nccl.Communicator#allReduceSum}). The
 * loss and target count are host values and stay on MPI. For two ranks the fp32 sum is the
 * host-staged one bit for bit (a + b rounded once either way); for more, NCCL's summation order
 * differs by fp32 rounding. Where NCCL does not load on every rank the sums are staged through the
 * host (download, the fp64 MPI all-reduce above, upload). Rank 0 logs the choice in one line;
 * {@link GpuAllReduce} forces either.
 */
public final class MpiDataParallel implements DataParallel.Shard, DataParallel.Exchange {
    /** Default seconds a collective may wait for the slowest rank (model loading and eval included). */
    public static final double DEFAULT_TIMEOUT_S = 600;
    /** Default steps between two adapter hash checks. */
    public static final int DEFAULT_HASH_EVERY = 10;

    private static final Logger LOG = System.getLogger("io.lora4j");

    /**
     * How a CUDA run sums its gradients: {@code LORA4J_ALLREDUCE} = {@code auto} (NCCL where it
     * loads on every rank, else host-staged MPI; the default), {@code nccl} (NCCL or an error) or
     * {@code mpi} (host-staged MPI); {@code LORA4J_NCCL} names the NCCL library ({@link Nccl#ENV}).
     */
    public record GpuAllReduce(Mode mode, String ncclLibrary) {
        public enum Mode { AUTO, NCCL, MPI }

        /** Variable choosing the mode. */
        public static final String ENV = "LORA4J_ALLREDUCE";

        public GpuAllReduce {
            java.util.Objects.requireNonNull(mode, "mode");
        }

        /** The choice {@code env} makes (see the record comment). */
        public static GpuAllReduce fromEnv(Map<String, String> env) {
            String v = env.getOrDefault(ENV, "auto").strip();
            Mode m;
            try {
                m = Mode.valueOf(v.toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException(ENV + " must be auto, nccl or mpi, got '" + v + "'");
            }
            return new GpuAllReduce(m, env.get(Nccl.ENV));
        }
    }

    private final World world;
    private final double timeout;
    private final int hashEvery;
    private final GpuAllReduce gpu;
    private long reduceNanos, reduceCalls;
    /** Decided at the first gradient sum on a CUDA backend: NCCL's communicator, or null for host-staged MPI. */
    private boolean gpuDecided;
    private Nccl.Communicator nccl;

    private MpiDataParallel(World world, double timeoutSeconds, int hashEvery, GpuAllReduce gpu) {
        if (!(timeoutSeconds > 0)) throw new IllegalArgumentException("collective timeout must be > 0 s, got " + timeoutSeconds);
        if (hashEvery < 1) throw new IllegalArgumentException("hash check interval must be >= 1 step, got " + hashEvery);
        this.world = world;
        this.timeout = timeoutSeconds;
        this.hashEvery = hashEvery;
        this.gpu = gpu;
    }

    /**
     * The {@link DataParallel} of this rank of {@code world} (which must be distributed), after
     * checking that MPI sees the same world as the launcher's variables. A CUDA backend opened
     * after this call runs on the GPU of the rank's local rank ({@link CudaDevices}).
     *
     * @throws Mpi.MpiException         when MPI is missing or does not start
     * @throws IllegalStateException    when MPI's rank or size differ from the launcher's variables, or
     *                                  the rendezvous of a torchrun-style world fails ({@link Rendezvous})
     */
    public static DataParallel create(World world, double timeoutSeconds, int hashEvery) {
        return create(world, timeoutSeconds, hashEvery, new GpuAllReduce(GpuAllReduce.Mode.AUTO, null));
    }

    /** {@link #create(World, double, int)} with the CUDA gradient sum chosen by {@code gpu}. */
    public static DataParallel create(World world, double timeoutSeconds, int hashEvery, GpuAllReduce gpu) {
        if (!world.distributed()) throw new IllegalArgumentException("a world of one rank needs no data parallelism");
        joinWorld(world, timeoutSeconds);
        // rank r of a multi-GPU node trains on GPU LOCAL_RANK, should its backend be CUDA
        CudaDevices.useLocalRank(world.localRank(), world.localRankVariable());
        MpiDataParallel p = new MpiDataParallel(world, timeoutSeconds, hashEvery, gpu);
        return new DataParallel(world.rank(), world.size(), p, p);
    }

    /**
     * Starts MPI in this process of {@code world}: under mpirun or srun, MPI_Init; from
     * torchrun-style variables, the {@link Rendezvous} that joins the processes into one world,
     * waiting at most {@code timeoutSeconds} for the others.
     *
     * @throws Mpi.MpiException      when MPI is missing or does not start
     * @throws IllegalStateException when MPI's rank or size differ from the launcher's variables,
     *                               or the rendezvous fails
     */
    public static void joinWorld(World world, double timeoutSeconds) {
        if (world.launcher() == World.Launcher.TORCHRUN) Rendezvous.join(world, timeoutSeconds);
        else Mpi.init();
        int rank = Mpi.rank(), size = Mpi.size();
        if (rank != world.rank() || size != world.size())
            throw new IllegalStateException("MPI places this process at rank " + rank + " of " + size + ", the launcher's variables ("
                    + world.launcher() + ") at rank " + world.rank() + " of " + world.size());
    }

    // ---- Shard ----

    @Override
    public List<List<Batch>> windows(DataPipeline data, int epoch, int batch, int accumulation) {
        List<List<Batch>> global = data.steps(epoch, batch, accumulation * world.size());
        List<List<Batch>> mine = new ArrayList<>(global.size());
        for (List<Batch> w : global) {
            int from = Math.min(w.size(), world.rank() * accumulation), to = Math.min(w.size(), from + accumulation);
            mine.add(List.copyOf(w.subList(from, to)));
        }
        return mine;
    }

    @Override
    public long sequences(DataPipeline data) {
        // ceil(ceil(rows / W) / (b·G)) = ceil(rows / (b·G·W)): the global step count of an epoch
        long rows = data.trainSequences();
        return (rows + world.size() - 1) / world.size();
    }

    @Override
    public int firstMicroBatch(int accumulation) {
        return world.rank() * accumulation;
    }

    /** Eval batches i with i mod W = rank: every rank gets a share of about the same size. */
    @Override
    public List<Batch> evalBatches(List<Batch> all) {
        List<Batch> mine = new ArrayList<>();
        for (int i = world.rank(); i < all.size(); i += world.size()) mine.add(all.get(i));
        return mine;
    }

    // ---- Exchange ----

    @Override
    public double[] sumLossAndTargets(double loss, long targets) {
        double[] buf = {loss, targets};
        reduce(buf);
        return buf;
    }

    @Override
    public long sumTargets(long local) {
        double[] n = {local};
        reduce(n);
        return Math.round(n[0]);
    }

    @Override
    public double sumLoss(double local) {
        double[] l = {local};
        reduce(l);
        return l[0];
    }

    @Override
    public void sumGradients(Backend backend, Tensor gradients) {
        sumGradientsAndLoss(backend, gradients, 0);
    }

    @Override
    public double sumGradientsAndLoss(Backend backend, Tensor gradients, double loss) {
        if (backend.device() == Device.CUDA && !gpuDecided) {
            nccl = openNccl(backend);
            gpuDecided = true;
        }
        if (nccl != null) {
            long t0 = System.nanoTime();
            nccl.allReduceSum(gradients); // queued on the step's stream, waited for with the collective deadline
            reduceNanos += System.nanoTime() - t0;
            reduceCalls++;
            double[] l = {loss};
            reduce(l);
            return l[0];
        }
        float[] g = hostCopy(backend, gradients);
        double[] buf = new double[g.length + 1];
        for (int i = 0; i < g.length; i++) buf[i] = g[i];
        buf[g.length] = loss;
        reduce(buf);
        for (int i = 0; i < g.length; i++) g[i] = (float) buf[i];
        if (backend.device() == Device.CPU) {
            gradients.floatPointer().put(g);
        } else {
            // Host-staged (no NCCL): back onto the device as g ← g - g + reduced, exact in fp32
            // (x - x = 0, 0 + 1·r = r); the backend has no upload into an existing tensor.
            try (Tensor host = Tensor.ofFloats(g, g.length); Tensor reduced = backend.upload(host, MemoryCategory.WORKSPACE)) {
                backend.axpy(-1f, gradients, gradients);
                backend.axpy(1f, reduced, gradients);
            }
        }
        return buf[g.length];
    }

    /**
     * NCCL's communicator when {@link #gpu} allows it and NCCL loads on every rank, else null
     * (host-staged MPI); every rank takes the same decision, and rank 0 logs it in one line.
     *
     * @throws IllegalStateException when NCCL was required and does not load on some rank
     */
    private Nccl.Communicator openNccl(Backend backend) {
        if (gpu.mode() == GpuAllReduce.Mode.MPI) {
            logChoice("host-staged MPI (" + GpuAllReduce.ENV + "=mpi)");
            return null;
        }
        String why;
        try {
            why = Nccl.load(gpu.ncclLibrary());
        } catch (LinkageError | RuntimeException e) {
            why = e.getMessage();
        }
        double[] failed = {why == null ? 0 : 1};
        reduce(failed);
        if (failed[0] > 0) {
            String reason = why != null ? why : "it did not load on " + (long) failed[0] + " of " + world.size() + " ranks";
            if (gpu.mode() == GpuAllReduce.Mode.NCCL)
                throw new IllegalStateException(GpuAllReduce.ENV + "=nccl, but NCCL " + (why != null ? "did not load: " + why : reason));
            logChoice("host-staged MPI (NCCL not used: " + reason + ")");
            return null;
        }
        byte[] id = world.isLeader() ? Nccl.uniqueId() : new byte[Nccl.uniqueIdBytes()];
        Mpi.broadcast(id, 0, timeout);
        Nccl.Communicator c = Nccl.communicator(backend, world.size(), id, world.rank(), timeout);
        logChoice(Nccl.describe() + ", fp32 sum on the CUDA stream");
        return c;
    }

    private void logChoice(String how) {
        if (world.isLeader()) LOG.log(Level.INFO, "data-parallel gradient all-reduce: {0}", how);
    }

    /** The values of a tensor of {@code backend}'s device, on the host. */
    private static float[] hostCopy(Backend backend, Tensor t) {
        if (backend.device() == Device.CPU) return t.toFloats();
        try (Tensor h = backend.download(t)) {
            return h.toFloats();
        }
    }

    @Override
    public void afterStep(Backend backend, Tensor parameters, long step) {
        if (step != 1 && step % hashEvery != 0) return;
        long mine = hash(hostCopy(backend, parameters));
        byte[] root = ByteBuffer.allocate(8).putLong(mine).array();
        Mpi.broadcast(root, 0, timeout);
        long rootHash = ByteBuffer.wrap(root).getLong();
        // every rank learns how many differ, so that all of them stop, not only the drifted ones
        double[] differing = {rootHash == mine ? 0 : 1};
        reduce(differing);
        if (differing[0] > 0)
            throw new IllegalStateException(String.format(Locale.ROOT,
                    "the adapters of %d rank(s) drifted from rank 0's after step %d (this rank's hash %016x, rank 0's %016x):"
                            + " ranks must apply bit-identical updates; mixed CPU types or library builds can break that",
                    (long) differing[0], step, mine, rootHash));
    }

    /** Seconds spent in this rank's collectives so far (waiting for slower ranks included), and their count. */
    public double reduceSeconds() { return reduceNanos / 1e9; }

    public long reduceCalls() { return reduceCalls; }

    private void reduce(double[] buf) {
        long t0 = System.nanoTime();
        Mpi.allReduceSum(buf, timeout);
        reduceNanos += System.nanoTime() - t0;
        reduceCalls++;
    }

    /** FNV-1a over the parameters' bit patterns (little-endian fp32), 64-bit. */
    static long hash(float[] v) {
        long h = 0xcbf29ce484222325L;
        for (float f : v) {
            int bits = Float.floatToRawIntBits(f);
            for (int k = 0; k < 4; k++) {
                h ^= (bits >>> (8 * k)) & 0xff;
                h *= 0x100000001b3L;
            }
        }
        return h;
    }
}
