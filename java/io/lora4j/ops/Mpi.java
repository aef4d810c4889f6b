package io.lora4j.ops;

import io.lora4j.nativeapi.Lora4jMpiNative;
import io.lora4j.nativeapi.NativeLibrary;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.DoublePointer;

/**
 * The MPI collectives of a data-parallel run over {@code MPI_COMM_WORLD}, through liblora4j_mpi
 * (Open MPI from Debian: {@code openmpi-bin libopenmpi-dev}). Every collective waits at most
 * {@code timeoutSeconds}: a peer that died or hangs turns into an {@link MpiException}, never a
 * silent hang. Only the thread that called {@link #init()} may call the others
 * ({@code MPI_THREAD_FUNNELED}).
 */
public final class Mpi {
    /** A failed or timed-out collective, or an MPI that is missing. */
    public static final class MpiException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        public MpiException(String message, Throwable cause) { super(message, cause); }
    }

    /** True once {@link #init()} succeeded in this process (a Java flag: asking it loads nothing). */
    private static volatile boolean started;

    private Mpi() {}

    /**
     * Loads liblora4j_mpi and libmpi, then {@code MPI_Init_thread}; a second call is a no-op.
     *
     * @throws MpiException when the library cannot load, was built without MPI, or MPI_Init fails
     */
    public static synchronized void init() {
        try {
            NativeLibrary.load();
            Lora4jMpiNative.ensureLoaded();
        } catch (LinkageError e) {
            throw new MpiException("MPI is not available (" + e.getMessage() + "): install openmpi-bin and libopenmpi-dev", e);
        }
        if (Lora4jMpiNative.lora4j_mpi_available() == 0)
            throw new MpiException("this lora4j was built without MPI: install openmpi-bin and libopenmpi-dev, then rebuild", null);
        call(Lora4jMpiNative::lora4j_mpi_init);
        started = true;
    }

    /**
     * {@link #init()} of a process that joins others without an MPI launcher: Open MPI's name
     * server at {@code uri} ({@code ompi-server --report-uri}) lets separately started processes
     * connect.
     */
    public static synchronized void initWithNameServer(String uri) {
        if (uri == null || uri.isBlank()) throw new IllegalArgumentException("empty ompi-server URI");
        try {
            NativeLibrary.load();
            Lora4jMpiNative.ensureLoaded();
        } catch (LinkageError e) {
            throw new MpiException("MPI is not available (" + e.getMessage() + "): install openmpi-bin and libopenmpi-dev", e);
        }
        if (!started) call(() -> Lora4jMpiNative.lora4j_mpi_use_name_server(uri));
        init();
    }

    /** True between {@link #init()} and {@link #finalizeMpi()}. */
    public static boolean initialized() {
        try {
            return Lora4jMpiNative.lora4j_mpi_initialized() != 0;
        } catch (LinkageError e) {
            return false;
        }
    }

    /** The MPI library's version line, e.g. "Open MPI v4.1.4, package: Debian OpenMPI, ...". */
    public static String libraryVersion() { return Lora4jMpiNative.lora4j_mpi_library_version().getString(); }

    public static int rank() { return Lora4jMpiNative.lora4j_mpi_rank(); }

    public static int size() { return Lora4jMpiNative.lora4j_mpi_size(); }

    /**
     * Replaces {@code buf} by its element-wise sum over all ranks (in fp64).
     *
     * @throws MpiException when the collective fails or does not complete in {@code timeoutSeconds}
     */
    public static void allReduceSum(double[] buf, double timeoutSeconds) {
        checkTimeout(timeoutSeconds);
        try (DoublePointer p = new DoublePointer(buf)) {
            call(() -> Lora4jMpiNative.lora4j_mpi_allreduce_sum_f64(p, buf.length, timeoutSeconds));
            p.get(buf);
        }
    }

    /**
     * Copies {@code buf} of rank {@code root} into {@code buf} of every rank (all ranks pass arrays
     * of the same length).
     */
    public static void broadcast(byte[] buf, int root, double timeoutSeconds) {
        checkTimeout(timeoutSeconds);
        if (root < 0) throw new IllegalArgumentException("broadcast root must be >= 0, got " + root);
        try (BytePointer p = new BytePointer(buf)) {
            call(() -> Lora4jMpiNative.lora4j_mpi_broadcast(p, buf.length, root, timeoutSeconds));
            p.get(buf);
        }
    }

    /** Returns once every rank has called it; throws after {@code timeoutSeconds}. */
    public static void barrier(double timeoutSeconds) {
        checkTimeout(timeoutSeconds);
        call(() -> Lora4jMpiNative.lora4j_mpi_barrier(timeoutSeconds));
    }

    /** MPI_Finalize; a no-op when MPI was never initialized. */
    public static synchronized void finalizeMpi() {
        if (initialized()) call(Lora4jMpiNative::lora4j_mpi_finalize);
    }

    /**
     * The CLI's last word after a failure: when this process takes part in a world of more than
     * one rank (MPI initialized, not finalized), ends every rank of the job with {@code code}
     * (MPI_Abort) and never returns; otherwise returns at once. A rank that failed alone would
     * otherwise leave the others waiting in a collective until its deadline, and a launcher such as
     * {@code srun} does not end the other tasks when one exits non-zero.
     */
    public static void abortJobIfJoined(int code) {
        if (!started || !initialized()) return;
        int size;
        try {
            size = size();
        } catch (RuntimeException e) {
            size = 2; // MPI cannot say: abort rather than leave others waiting
        }
        if (size > 1) Lora4jMpiNative.lora4j_mpi_abort(code);
    }

    // ---- joining singletons (a torchrun-style start; see io.lora4j.dist.Rendezvous) ----

    /** Rank 0: opens the port the others connect to, and returns its name (a few hundred bytes of text). */
    public static String openPort() {
        String[] name = new String[1];
        call(() -> name[0] = Lora4jMpiNative.lora4j_mpi_open_port().getString());
        return name[0];
    }

    /** Rank 0, once every process joined: closes the port. */
    public static void closePort() { call(Lora4jMpiNative::lora4j_mpi_close_port); }

    /** Every member of the world so far admits the next process, which becomes the last rank. */
    public static void joinAccept() { call(Lora4jMpiNative::lora4j_mpi_join_accept); }

    /** This singleton joins the world whose rank 0 opened {@code port}, as its last rank. */
    public static void joinConnect(String port) { call(() -> Lora4jMpiNative.lora4j_mpi_join_connect(port)); }

    private static void checkTimeout(double s) {
        if (!(s > 0) || Double.isInfinite(s)) throw new IllegalArgumentException("collective timeout must be a positive number of seconds, got " + s);
    }

    private static void call(Runnable r) {
        try {
            r.run();
        } catch (MpiException e) {
            throw e;
        } catch (RuntimeException e) {
            throw new MpiException(e.getMessage(), e);
        }
    }
}
