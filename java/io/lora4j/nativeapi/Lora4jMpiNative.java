package io.lora4j.nativeapi;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;

/**
 * Raw JavaCPP binding of liblora4j_mpi ({@code native/include/lora4j/mpi.h}), the MPI shim of
 * data-parallel runs. A separate library from liblora4j: touching this class loads it, and with it
 * libmpi, so only a run whose world has more than one rank does. No validation here: use
 * {@code io.lora4j.ops.Mpi}. Native {@code std::runtime_error}s arrive as {@link RuntimeException}s.
 */
@Platform(include = "lora4j/mpi.h", link = "lora4j_mpi")
public final class Lora4jMpiNative {
    static {
        Loader.load();
    }

    private Lora4jMpiNative() {}

    /** Forces the class (and so liblora4j_mpi and libmpi) to load; throws if they cannot. */
    public static void ensureLoaded() {}

    public static native int lora4j_mpi_available();

    public static native @Cast("const char*") BytePointer lora4j_mpi_library_version();

    public static native void lora4j_mpi_init();

    public static native int lora4j_mpi_initialized();

    public static native int lora4j_mpi_rank();

    public static native int lora4j_mpi_size();

    public static native void lora4j_mpi_allreduce_sum_f32(FloatPointer buf, long n, double timeoutS);

    public static native void lora4j_mpi_allreduce_sum_f64(DoublePointer buf, long n, double timeoutS);

    public static native void lora4j_mpi_broadcast(Pointer buf, long bytes, int root, double timeoutS);

    public static native void lora4j_mpi_barrier(double timeoutS);

    public static native void lora4j_mpi_abort(int code);

    public static native void lora4j_mpi_use_name_server(String uri);

    public static native @Cast("const char*") BytePointer lora4j_mpi_open_port();

    public static native void lora4j_mpi_close_port();

    public static native void lora4j_mpi_join_accept();

    public static native void lora4j_mpi_join_connect(String port);

    public static native void lora4j_mpi_finalize();
}
