package io.lora4j.nativeapi;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.bytedeco.javacpp.Loader;

/**
 * Loads liblora4j (through JavaCPP, from the jar) exactly once, and installs OpenBLAS from the
 * JavaCPP preset as the sgemm of the CPU kernels. Thread-safe; the first caller pays.
 *
 * <p>Another build of liblora4j can stand in for the jar's: the system property {@value #PROPERTY}
 * or the environment variable {@value #ENV} (the property wins) names its file, or says {@code emu}
 * for the CUDA emulation build ({@code native/emu/README.md}) in {@code native-emu/} of the build
 * directory that holds these classes or this jar. It is loaded by absolute path before JavaCPP
 * loads its JNI glue, whose {@code NEEDED liblora4j.so} the dynamic linker then satisfies with the
 * object already loaded under that soname.
 */
public final class NativeLibrary {
    /** System property naming a stand-in liblora4j: a path, or {@code emu}. */
    public static final String PROPERTY = "lora4j.native";
    /** Environment variable with the same meaning as {@link #PROPERTY}. */
    public static final String ENV = "LORA4J_NATIVE";

    private static final Logger LOG = System.getLogger("io.lora4j");
    private static volatile boolean loaded;
    private static String blasName = "builtin";
    private static Path standIn;

    private NativeLibrary() {}

    /** Loads the native libraries if not yet loaded; throws {@link LinkageError} when they cannot load. */
    public static void load() {
        if (loaded) return;
        synchronized (NativeLibrary.class) {
            if (loaded) return;
            standIn = loadStandIn();
            Lora4jNative.ensureLoaded();
            blasName = installOpenBlas();
            loaded = true;
            LOG.log(Level.DEBUG, "liblora4j: {0}; sgemm: {1}", buildInfo(), blasName);
        }
    }

    /** The stand-in library loaded instead of the jar's ({@link #PROPERTY}), or null. */
    public static Path standIn() {
        load();
        return standIn;
    }

    /** True when the loaded library runs its CUDA kernels on the SIMT emulator, not on a GPU. */
    public static boolean cudaEmulated() {
        return buildInfo().contains("cuda archs emulated");
    }

    /** Version, compiler, SIMD level and CUDA architectures of the loaded library. */
    public static String buildInfo() {
        load();
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
        Lora4jOpsNative.lora4j_set_num_threads(n);
    }

    /**
     * Threads the CPU kernels use. Default: the environment variable LORA4J_NUM_THREADS, else
     * OMP_NUM_THREADS, else {@link #physicalCores()}.
     */
    public static int numThreads() {
        load();
        return Lora4jOpsNative.lora4j_get_num_threads();
    }

    /**
     * Loads the library {@link #PROPERTY} / {@link #ENV} asks for, before anything binds the JNI
     * glue; null when neither is set. Throws {@link UnsatisfiedLinkError} naming the file when it
     * is missing or does not load.
     */
    private static Path loadStandIn() {
        String asked = System.getProperty(PROPERTY);
        String origin = "-D" + PROPERTY;
        if (asked == null || asked.isBlank()) {
            asked = System.getenv(ENV);
            origin = ENV;
        }
        if (asked == null || asked.isBlank()) return null;
        Path lib = asked.strip().equals("emu") ? emulatedInBuildDir() : Path.of(asked.strip()).toAbsolutePath();
        if (!Files.isRegularFile(lib)) {
            throw new UnsatisfiedLinkError(origin + "=" + asked + ": no library at " + lib
                    + " (build the emulated one with: cmake -S . -B target/native-emu -DLORA4J_CUDA_EMU=ON"
                    + " && cmake --build target/native-emu --target lora4j)");
        }
        System.load(lib.toString());
        LOG.log(Level.INFO, "liblora4j: {0} instead of the jar''s ({1})", lib, origin);
        return lib;
    }

    /** native-emu/liblora4j.so beside target/classes or the jar these classes came from. */
    private static Path emulatedInBuildDir() {
        try {
            Path here = Path.of(NativeLibrary.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            return here.toAbsolutePath().getParent().resolve("native-emu").resolve("liblora4j.so");
        } catch (URISyntaxException | RuntimeException e) {
            throw new UnsatisfiedLinkError(PROPERTY + "=emu: cannot locate the build directory of these classes ("
                    + e + "); give the library's path instead");
        }
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
