package io.lora4j.emu;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Consumer;

/**
 * Pairs of tensors, one on the CPU backend and one on CUDA with the same contents, for running an
 * op on both and comparing. CUDA is the emulated build in the {@code emulated-cuda} surefire
 * execution (-Dlora4j.native, where its absence is a failure) and a real GPU in
 * scripts/device-check-java.sh; elsewhere the tests are skipped, saying why.
 */
final class Twins implements AutoCloseable {
    final Backend cpu = Backends.cpu();
    final Backend cuda = cuda();
    private final List<Tensor> owned = new ArrayList<>();
    private final Random rng;

    Twins(long seed) {
        rng = new Random(seed);
    }

    /** The CUDA backend; fails when a stand-in library was asked for but has no device, else skips. */
    static Backend cuda() {
        boolean required = System.getProperty(NativeLibrary.PROPERTY) != null || System.getenv(NativeLibrary.ENV) != null
                || "1".equals(System.getenv("LORA4J_REQUIRE_CUDA"));
        int n = Backends.cudaDeviceCount();
        if (required) assertTrue(n > 0, "a CUDA library was asked for, but the probe answers " + n);
        else assumeTrue(n > 0, "no CUDA device (the emulated-cuda surefire execution runs these on the emulator)");
        return Backends.get(Device.CUDA);
    }

    /** One tensor per backend. */
    final class Twin {
        final Tensor host, dev;

        Twin(Tensor host) {
            this.host = host;
            this.dev = cuda.upload(host, MemoryCategory.WORKSPACE);
            owned.add(host);
            owned.add(dev);
        }

        Tensor on(Backend b) {
            return b.device() == Device.CPU ? host : dev;
        }

        float[] cpuFloats() {
            return host.toFloats();
        }

        float[] cudaFloats() {
            try (Tensor h = cuda.download(dev)) {
                return h.toFloats();
            }
        }

        byte[] cpuBytes() {
            return host.toBytes();
        }

        byte[] cudaBytes() {
            try (Tensor h = cuda.download(dev)) {
                return h.toBytes();
            }
        }
    }

    Twin floats(float[] v, long... shape) {
        return new Twin(Tensor.ofFloats(v, shape));
    }

    /** N(0, std²) values. */
    Twin randn(double std, long... shape) {
        return floats(randoms(std, (int) Tensor.numel(shape)), shape);
    }

    float[] randoms(double std, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) (rng.nextGaussian() * std);
        return v;
    }

    Twin ints(int[] v, long... shape) {
        Tensor t = Tensor.allocate(DType.I32, MemoryCategory.WORKSPACE, shape);
        t.buffer().order(ByteOrder.nativeOrder()).asIntBuffer().put(v);
        return new Twin(t);
    }

    Twin zeros(DType dtype, long... shape) {
        return new Twin(Tensor.allocate(dtype, MemoryCategory.WORKSPACE, shape));
    }

    Twin zeros(long... shape) {
        return zeros(DType.F32, shape);
    }

    Random rng() {
        return rng;
    }

    /** Runs {@code op} on the CPU backend, then on CUDA (and waits for it). */
    void both(Consumer<Backend> op) {
        op.accept(cpu);
        op.accept(cuda);
        cuda.synchronize();
    }

    @Override
    public void close() {
        cuda.synchronize();
        for (Tensor t : owned) t.close();
        owned.clear();
    }
}
