package io.lora4j.ops;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.lora4j.nativeapi.Lora4jNative;
import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.MemoryTracker;
import io.lora4j.tensor.Tensor;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class BackendsTest {
    @Test
    void nativeLibraryLoadsFromTheClassPathAndReportsItsBuild() {
        NativeLibrary.load();
        String info = NativeLibrary.buildInfo();
        assertTrue(info.startsWith("lora4j "), info);
        assertTrue(info.contains("avx2"), "CPU kernels are built for AVX2+FMA: " + info);
    }

    @Test
    void openBlasFromThePresetIsTheCpuSgemm() {
        assertTrue(NativeLibrary.blasName().startsWith("openblas:"),
                "OpenBLAS from the JavaCPP preset should be installed, got " + NativeLibrary.blasName());
    }

    @Test
    void automaticChoiceFollowsTheDeviceProbe() {
        Backend b = Backends.select(Optional.empty());
        if (Backends.cudaDeviceCount() > 0) assertEquals(Device.CUDA, b.device());
        else assertEquals(Device.CPU, b.device());
    }

    @Test
    void askingForCudaWithoutADeviceIsAClearError() {
        assumeTrue(Backends.cudaDeviceCount() <= 0, "a CUDA device is present");
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> Backends.get(Device.CUDA));
        assertTrue(e.getMessage().startsWith("CUDA requested but unavailable: "), e.getMessage());
    }

    @Test
    void cpuBuildWithCudaKernelsStillLoadsWithoutADriver() {
        // cudart is linked statically: the probe answers instead of failing to load.
        int n = Backends.cudaDeviceCount();
        if (Lora4jNative.lora4j_built_with_cuda() == 1 && n <= 0) {
            assertTrue(Backends.cudaProbeReason(n).length() > 0);
        }
    }

    @Test
    void nativeErrorsArriveAsJavaExceptions() {
        NativeLibrary.load();
        // A CUDA entry without a device throws through the JNI glue instead of killing the JVM.
        assumeTrue(Backends.cudaDeviceCount() <= 0, "a CUDA device is present");
        RuntimeException e = assertThrows(RuntimeException.class, () -> Lora4jNative.lora4j_cuda_malloc(1024));
        assertTrue(e.getMessage().contains("lora4j"), e.getMessage());
    }

    @Test
    void sgemmMatchesADirectProduct() {
        NativeLibrary.load();
        int m = 37, n = 29, k = 53;
        float[] a = new float[m * k], b = new float[k * n];
        java.util.Random r = new java.util.Random(1);
        for (int i = 0; i < a.length; i++) a[i] = (float) r.nextGaussian();
        for (int i = 0; i < b.length; i++) b[i] = (float) r.nextGaussian();
        try (Tensor ta = Tensor.ofFloats(a, m, k); Tensor tb = Tensor.ofFloats(b, k, n);
             Tensor tc = Tensor.allocate(io.lora4j.tensor.DType.F32, MemoryCategory.WORKSPACE, m, n)) {
            Lora4jNative.lora4j_sgemm(0, 0, m, n, k, 1f, ta.floatPointer(), k, tb.floatPointer(), n, 0f,
                    tc.floatPointer(), n);
            float[] c = tc.toFloats();
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int p = 0; p < k; p++) s += (double) a[i * k + p] * b[p * n + j];
                    assertEquals(s, c[i * n + j], 1e-4 + 1e-5 * Math.abs(s));
                }
        }
    }

    @Test
    void allocationsAreCountedPerCategory() {
        long before = MemoryTracker.GLOBAL.live(Device.CPU, MemoryCategory.OPTIMIZER);
        try (Tensor t = Tensor.allocate(io.lora4j.tensor.DType.F32, MemoryCategory.OPTIMIZER, 1000)) {
            assertEquals(before + 4000, MemoryTracker.GLOBAL.live(Device.CPU, MemoryCategory.OPTIMIZER));
            assertTrue(MemoryTracker.GLOBAL.peak(Device.CPU, MemoryCategory.OPTIMIZER) >= before + 4000);
        }
        assertEquals(before, MemoryTracker.GLOBAL.live(Device.CPU, MemoryCategory.OPTIMIZER));
    }
}
