package io.lora4j.ops;

import io.lora4j.nativeapi.Lora4jNative;
import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.tensor.Device;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.util.EnumMap;
import java.util.Map;
import java.util.Optional;

/**
 * Chooses the backend once per device and caches it; every backend returned is wrapped in a
 * {@link CheckedBackend}, so bad arguments fail in Java before any native call. Without a request, CUDA is taken only when
 * the probe finds a device; otherwise the CPU, with the reason logged. Asking for CUDA where
 * there is none is an {@link IllegalStateException} naming the reason.
 */
public final class Backends {
    private static final Logger LOG = System.getLogger("io.lora4j");
    private static final Map<Device, Backend> CACHE = new EnumMap<>(Device.class);
    private static Backend defaultBackend;

    private Backends() {}

    /** The CPU backend. */
    public static Backend cpu() {
        return get(Device.CPU);
    }

    /** The (checked) backend of {@code device}, created on first use. */
    public static synchronized Backend get(Device device) {
        Backend b = CACHE.get(device);
        if (b == null) {
            // every backend handed out checks its arguments in Java before native code sees them
            b = new CheckedBackend(device == Device.CUDA ? new CudaBackend() : new CpuBackend());
            CACHE.put(device, b);
        }
        return b;
    }

    /**
     * {@link #select(Optional)} of a device name: null (automatic), "cpu", "cuda", or "cuda:N" for
     * the N-th visible CUDA device ({@link CudaDevices#useDevice}).
     *
     * @throws IllegalArgumentException when {@code spec} names no device
     * @throws IllegalStateException    when the device is unavailable, or not the one a data-parallel rank trains on
     */
    public static synchronized Backend select(String spec) {
        if (spec == null) return select(Optional.empty());
        Device d = Device.parse(spec);
        int ordinal = Device.ordinal(spec);
        if (ordinal >= 0) CudaDevices.useDevice(ordinal, spec);
        return select(Optional.of(d));
    }

    /** The backend for a user's {@code --device} choice, or the automatic choice when empty. */
    public static synchronized Backend select(Optional<Device> requested) {
        if (requested.isPresent()) {
            Backend b = get(requested.get());
            LOG.log(Level.INFO, "backend: {0} (requested)", b.description());
            return b;
        }
        if (defaultBackend == null) {
            int n = cudaDeviceCount();
            if (n > 0) {
                defaultBackend = get(Device.CUDA);
                LOG.log(Level.INFO, "backend: {0} (a CUDA device is present)", defaultBackend.description());
            } else {
                defaultBackend = get(Device.CPU);
                LOG.log(Level.INFO, "backend: {0} (CUDA not used: {1})", defaultBackend.description(), cudaProbeReason(n));
            }
        }
        return defaultBackend;
    }

    /** Devices reported by the CUDA probe; {@code <= 0} means none (negative: -cudaError). */
    public static int cudaDeviceCount() {
        NativeLibrary.load();
        return Lora4jNative.lora4j_cuda_device_count();
    }

    /** Why the probe's answer {@code n <= 0} means no CUDA, in words. */
    static String cudaProbeReason(int n) {
        if (n > 0) return n + " device(s)";
        if (Lora4jNative.lora4j_built_with_cuda() == 0) return "liblora4j was built without CUDA kernels";
        switch (-n) {
            case 0: return "no CUDA device found";
            case 35: return "no usable NVIDIA driver: none is installed, or it is older than this CUDA runtime (cudaErrorInsufficientDriver)";
            case 100: return "no CUDA-capable device is detected (cudaErrorNoDevice)";
            case 999: return "unknown CUDA error while probing";
            default: return "the CUDA probe failed with cudaError " + (-n) + " (no driver, or no device)";
        }
    }
}
