package io.lora4j.ops;

/**
 * Which CUDA device this process's {@link CudaBackend} opens: device 0, unless a data-parallel
 * rank asked for its local rank's device ({@link #useLocalRank}) before the backend opened.
 *
 * <p>Ordinals index the devices the CUDA runtime makes visible, so {@code CUDA_VISIBLE_DEVICES}
 * applies as in PyTorch ({@code cuda:1} is the second visible device). One exception, for
 * launchers that bind one GPU to each rank (Slurm's {@code --gpus-per-task=1}, or a wrapper that
 * sets {@code CUDA_VISIBLE_DEVICES=$LOCAL_RANK}): where {@code CUDA_VISIBLE_DEVICES} names exactly
 * one device and one is visible, every local rank takes that device (ordinal 0). Otherwise a
 * local rank with no device of its own is an {@link IllegalStateException} naming the variable
 * and the count, raised when the backend opens (a CPU run of the same ranks never asks).
 *
 * <p>A single process may name its device instead ({@link #useDevice}, from {@code --device cuda:N}
 * or {@code device: cuda:N}): ordinal N among the visible devices, as PyTorch's {@code cuda:N}, and
 * an error when fewer are visible.
 */
public final class CudaDevices {
    /** The ordinal asked for, and who asked ("OMPI_COMM_WORLD_LOCAL_RANK=1"); null: nobody, device 0. */
    private static int wanted;
    private static String source;
    /** The request came from a device name ({@link #useDevice}), not from a launcher's local rank. */
    private static boolean named;
    /** The ordinal the backend opened, or -1 before it opened, and the devices visible then. */
    private static int opened = -1, visibleAtOpen;

    private CudaDevices() {}

    /**
     * Asks for device {@code localRank}, the launcher's local rank in {@code variable} (e.g.
     * {@code OMPI_COMM_WORLD_LOCAL_RANK}): the GPU of rank r on a multi-GPU node.
     *
     * @throws IllegalStateException when the CUDA backend already opened another device
     */
    public static synchronized void useLocalRank(int localRank, String variable) {
        if (localRank < 0) throw new IllegalArgumentException(variable + "=" + localRank + " is not a local rank");
        String asker = variable + "=" + localRank;
        if (opened >= 0 && opened != resolve(localRank, asker, visibleAtOpen, System.getenv("CUDA_VISIBLE_DEVICES")))
            throw new IllegalStateException("the CUDA backend already runs on device " + opened + "; " + asker
                    + " must choose the device before it opens");
        wanted = localRank;
        source = asker;
        named = false;
    }

    /**
     * Asks for device {@code ordinal}, named {@code spec} ("cuda:1") by the user; checked against the
     * device count when the backend opens.
     *
     * @throws IllegalStateException when a data-parallel rank already asked for its local rank's device
     *                               (each rank takes its own: name the device "cuda"), or the
     *                               backend already opened another device
     */
    public static synchronized void useDevice(int ordinal, String spec) {
        if (ordinal < 0) throw new IllegalArgumentException(spec + " is not a device ordinal");
        if (source != null && !named && wanted != ordinal)
            throw new IllegalStateException("a data-parallel rank trains on its local rank's GPU (" + source + "), not on " + spec
                    + ": name the device cuda");
        if (opened >= 0 && opened != ordinal)
            throw new IllegalStateException("the CUDA backend of this process already runs on cuda:" + opened + ", not " + spec);
        if (source != null && !named) return; // the local rank's device is the one named
        wanted = ordinal;
        source = spec;
        named = true;
    }

    /** The ordinal the backend opened, or -1 when no CUDA backend opened in this process. */
    public static synchronized int opened() { return opened; }

    /** Called once by {@link CudaBackend} with the runtime's device count: the ordinal to open. */
    static synchronized int open(int visible) {
        int d = named ? resolveNamed(wanted, visible, System.getenv("CUDA_VISIBLE_DEVICES"))
                : resolve(wanted, source, visible, System.getenv("CUDA_VISIBLE_DEVICES"));
        opened = d;
        visibleAtOpen = visible;
        return d;
    }

    /** The device for {@code cuda:wanted} among {@code visible} devices; an error naming the count when it is not one of them. */
    static int resolveNamed(int wanted, int visible, String cudaVisibleDevices) {
        if (wanted < visible) return wanted;
        throw new IllegalStateException("no CUDA device " + wanted + ": " + visible + (visible == 1 ? " device is" : " devices are") + " visible"
                + (cudaVisibleDevices != null ? " (CUDA_VISIBLE_DEVICES=" + cudaVisibleDevices + ")" : "") + ", cuda:0"
                + (visible > 1 ? " to cuda:" + (visible - 1) : ""));
    }

    /**
     * The device for a request of ordinal {@code wanted} by {@code source} (null: nobody asked,
     * device 0) among {@code visible} devices, {@code cudaVisibleDevices} being the variable's
     * value or null (see the class comment).
     *
     * @throws IllegalStateException when the request names a device that is not visible
     */
    static int resolve(int wanted, String source, int visible, String cudaVisibleDevices) {
        if (source == null || wanted < visible) return source == null ? 0 : wanted;
        boolean oneBound = cudaVisibleDevices != null && !cudaVisibleDevices.isBlank() && !cudaVisibleDevices.contains(",");
        if (visible == 1 && oneBound) return 0;
        throw new IllegalStateException(source + " asks for CUDA device " + wanted + ", but " + visible + (visible == 1 ? " device is" : " devices are")
                + " visible" + (cudaVisibleDevices != null ? " (CUDA_VISIBLE_DEVICES=" + cudaVisibleDevices + ")" : "")
                + ": start at most " + visible + " rank(s) per machine, or give each rank one GPU with CUDA_VISIBLE_DEVICES");
    }
}
