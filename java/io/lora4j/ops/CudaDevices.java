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
 */
public final class CudaDevices {
    /** The ordinal asked for, and who asked ("OMPI_COMM_WORLD_LOCAL_RANK=1"); null: nobody, device 0. */
    private static int wanted;
    private static String source;
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
    }

    /** The ordinal the backend opened, or -1 when no CUDA backend opened in this process. */
    public static synchronized int opened() { return opened; }

    /** Called once by {@link CudaBackend} with the runtime's device count: the ordinal to open. */
    static synchronized int open(int visible) {
        int d = resolve(wanted, source, visible, System.getenv("CUDA_VISIBLE_DEVICES"));
        opened = d;
        visibleAtOpen = visible;
        return d;
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
