package io.lora4j.ops;

import static io.lora4j.nativeapi.Lora4jNcclNative.*;

import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.Tensor;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Pointer;

/**
 * NCCL, the GPU all-reduce of a data-parallel run on the CUDA backend, through liblora4j's shim
 * ({@code native/include/lora4j/nccl.h}): {@code libnccl.so.2} is opened with dlopen at run time,
 * never linked, so a machine without NCCL loses only this path (the caller falls back to a
 * host-staged MPI all-reduce). Which library: {@value #ENV} names it (a path, or a file name the
 * dynamic linker searches for), default {@value #DEFAULT_LIBRARY} (found through
 * {@code LD_LIBRARY_PATH} and the ld.so cache: the CUDA toolkit's, a distribution package's, or
 * NVIDIA's pip wheel's {@code nvidia/nccl/lib} when that directory is on {@code LD_LIBRARY_PATH}).
 */
public final class Nccl {
    /** Environment variable naming the NCCL library to open. */
    public static final String ENV = "LORA4J_NCCL";
    /** The library opened when {@value #ENV} is not set: NCCL 2's soname. */
    public static final String DEFAULT_LIBRARY = "libnccl.so.2";

    private Nccl() {}

    /**
     * Opens the NCCL library named by {@code library} (null or blank: {@value #DEFAULT_LIBRARY}) once
     * per process; a later call answers from the first one that succeeded.
     *
     * @return null when NCCL loaded, else why not (the dynamic linker's message, or the entries missing)
     */
    public static synchronized String load(String library) {
        NativeLibrary.load();
        String path = library == null || library.isBlank() ? DEFAULT_LIBRARY : library;
        return lora4j_nccl_load(path) != 0 ? null : lora4j_nccl_error().getString();
    }

    /** "NCCL 2.18.3 (/usr/lib/x86_64-linux-gnu/libnccl.so.2)": the loaded library, after {@link #load}. */
    public static String describe() {
        int v = lora4j_nccl_version();
        // NCCL_VERSION_CODE: major*10000 + minor*100 + patch since 2.9, major*1000 + minor*100 + patch before
        int major = v >= 10000 ? v / 10000 : v / 1000, minor = v >= 10000 ? v / 100 % 100 : v / 100 % 10, patch = v % 100;
        return "NCCL " + major + "." + minor + "." + patch + " (" + lora4j_nccl_library().getString() + ")";
    }

    /** Size of an ncclUniqueId: 128 bytes. */
    public static int uniqueIdBytes() {
        NativeLibrary.load();
        return lora4j_nccl_unique_id_bytes();
    }

    /** A new ncclUniqueId ({@link #uniqueIdBytes()} bytes), on the rank that then sends it to the others. */
    public static byte[] uniqueId() {
        byte[] id = new byte[uniqueIdBytes()];
        try (BytePointer p = new BytePointer(id.length)) {
            lora4j_nccl_get_unique_id(p);
            p.get(id);
        }
        return id;
    }

    /**
     * The communicator of rank {@code rank} of {@code nranks} on {@code backend}'s device, every rank
     * passing the same {@code id} (rank 0's {@link #uniqueId()}). Blocks until every rank called it.
     *
     * @throws IllegalArgumentException when {@code backend} is not a CUDA backend, or the id or ranks are malformed
     * @throws RuntimeException         when ncclCommInitRank fails (its message names the NCCL error)
     */
    public static Communicator communicator(Backend backend, int nranks, byte[] id, int rank, double timeoutSeconds) {
        if (!(timeoutSeconds > 0) || Double.isInfinite(timeoutSeconds))
            throw new IllegalArgumentException("collective timeout must be a positive number of seconds, got " + timeoutSeconds);
        CudaBackend cuda = cuda(backend);
        if (nranks < 1 || rank < 0 || rank >= nranks) throw new IllegalArgumentException("NCCL rank " + rank + " of " + nranks);
        if (id.length != lora4j_nccl_unique_id_bytes())
            throw new IllegalArgumentException("an ncclUniqueId has " + lora4j_nccl_unique_id_bytes() + " bytes, got " + id.length);
        // NCCL binds the communicator to the calling thread's current device: the backend's
        io.lora4j.nativeapi.Lora4jNative.lora4j_cuda_set_device(cuda.ordinal());
        try (BytePointer p = new BytePointer(id)) {
            return new Communicator(cuda, lora4j_nccl_comm_init_rank(nranks, p, rank), timeoutSeconds);
        }
    }

    /** An NCCL communicator bound to one CUDA backend; its collectives are queued on the backend's stream. */
    public static final class Communicator implements AutoCloseable {
        private final CudaBackend backend;
        private final double timeout;
        private Pointer comm;
        /** Recorded after each all-reduce: what {@link #allReduceSum} waits on with its deadline. */
        private Pointer done;

        private Communicator(CudaBackend backend, Pointer comm, double timeoutSeconds) {
            this.backend = backend;
            this.comm = comm;
            this.timeout = timeoutSeconds;
            this.done = io.lora4j.nativeapi.Lora4jNative.lora4j_cuda_event_create();
        }

        /**
         * Replaces {@code t} (fp32, on this communicator's device) by its element-wise sum over the
         * ranks, in place, queued on the backend's stream after the kernels that wrote it; the ops
         * queued next see the sum. Returns once it completed (the step reads the gradient norm on
         * the host next anyway), or throws after the communicator's deadline or an NCCL error,
         * having aborted the communicator: a peer that died or hangs is an error, never a hang.
         */
        public void allReduceSum(Tensor t) {
            if (comm == null) throw new IllegalStateException("the NCCL communicator is closed");
            if (t.dtype() != DType.F32 || t.device() != Device.CUDA) throw new IllegalArgumentException("NCCL all-reduce of " + t + ": needs an F32 CUDA tensor");
            lora4j_nccl_allreduce_sum_f32(t.floatPointer(), t.floatPointer(), t.numel(), comm, backend.stream());
            io.lora4j.nativeapi.Lora4jNative.lora4j_cuda_event_record(done, backend.stream());
            try {
                lora4j_nccl_wait(comm, done, timeout);
            } catch (RuntimeException e) {
                comm = null; // aborted by the wait: unusable
                throw e;
            }
        }

        /** ncclCommDestroy, after the backend's stream drained; a second call is a no-op. */
        @Override
        public void close() {
            if (comm == null) return;
            backend.synchronize();
            lora4j_nccl_comm_destroy(comm);
            comm = null;
            io.lora4j.nativeapi.Lora4jNative.lora4j_cuda_event_destroy(done);
        }
    }

    private static CudaBackend cuda(Backend b) {
        Backend inner = b instanceof CheckedBackend c ? c.unchecked() : b;
        if (inner instanceof CudaBackend cb) return cb;
        throw new IllegalArgumentException("NCCL runs on the CUDA backend, not on " + b.description());
    }
}
