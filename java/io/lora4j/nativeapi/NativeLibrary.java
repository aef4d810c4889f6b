package io.lora4j.nativeapi;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.util.Map;
import org.bytedeco.javacpp.Loader;

/**
 * Loads liblora4j (through JavaCPP, from the jar) exactly once, and installs OpenBLAS from the
 * JavaCPP preset as the sgemm of the CPU kernels. Thread-safe; the first caller pays.
 */
public final class NativeLibrary {
    private static final Logger LOG = System.getLogger("io.lora4j");
    private static volatile boolean loaded;
    private static String blasName = "builtin";

    private NativeLibrary() {}

    /** Loads the native libraries if not yet loaded; throws {@link LinkageError} when they cannot load. */
    public static void load() {
        if (loaded) return;
        synchronized (NativeLibrary.class) {
            if (loaded) return;
            Lora4jNative.ensureLoaded();
            blasName = installOpenBlas();
            loaded = true;
            LOG.log(Level.DEBUG, "liblora4j: {0}; sgemm: {1}", buildInfo(), blasName);
        }
    }

    /** Version, compiler, SIMD level and CUDA architectures of the loaded library. */
    public static String buildInfo() {
        load0();
        return Lora4jNative.lora4j_build_info().getString();
    }

    /** "openblas:PATH", or "builtin" when OpenBLAS could not be loaded (slower, still correct). */
    public static String blasName() {
        load();
        return blasName;
    }

    /**
     * Sets the thread count of the CPU kernels, the calling thread included; {@code n <= 0} leaves it
     * as it is. liblora4j runs every CPU kernel, OpenBLAS's sgemm included (single-threaded inside
     * each worker), on its own pool, whose idle workers sleep after a few microseconds: a JVM
     * application needs no environment variable (such as OMP_WAIT_POLICY) to train at full speed.
     */
    public static void setNumThreads(int n) {
        load();
        Lora4jNative.lora4j_set_num_threads(n);
    }

    /**
     * Threads the CPU kernels use. Default: the environment variable LORA4J_NUM_THREADS, else
     * OMP_NUM_THREADS, else {@link #physicalCores()}.
     */
    public static int numThreads() {
        load();
        return Lora4jNative.lora4j_get_num_threads();
    }

    /** Physical cores among the CPUs this process may run on (hyper-threads count once). */
    public static int physicalCores() {
        load();
        return Lora4jNative.lora4j_physical_cores();
    }

    private static void load0() {
        Lora4jNative.ensureLoaded();
    }

    private static String installOpenBlas() {
        try {
            Loader.load(org.bytedeco.openblas.global.openblas_nolapack.class);
            for (Map.Entry<String, String> e : Loader.getLoadedLibraries().entrySet()) {
                String path = e.getValue();
                if (path != null && path.matches(".*/libopenblas[^/]*\\.so(\\.\\d+)*$")) {
                    if (Lora4jNative.lora4j_blas_load(path) == 0) return Lora4jNative.lora4j_blas_name().getString();
                    LOG.log(Level.WARNING, "OpenBLAS not usable, CPU matmuls use the builtin sgemm: {0}",
                            Lora4jNative.lora4j_blas_error().getString());
                    return "builtin";
                }
            }
            LOG.log(Level.WARNING, "OpenBLAS loaded but its library path is unknown; CPU matmuls use the builtin sgemm");
        } catch (LinkageError e) {
            LOG.log(Level.WARNING, "OpenBLAS could not be loaded ({0}); CPU matmuls use the builtin sgemm", e.toString());
        }
        return "builtin";
    }
}
