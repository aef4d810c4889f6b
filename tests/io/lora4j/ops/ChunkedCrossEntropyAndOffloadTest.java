package io.lora4j.ops;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.MemoryTracker;
import io.lora4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The vocabulary-chunked cross-entropy ops against the whole-row ops, and the offload round trip,
 * through the {@link Backend} interface: on the CPU here, on CUDA too where a device is present.
 */
class ChunkedCrossEntropyAndOffloadTest {
    /** Online vs one-pass log-sum-exp in fp32 (logits of size ~8, V = 1000): a few ulps of lse ≈ 8. */
    private static final double LOSS_ATOL = 1e-5, GRAD_ATOL = 1e-7, GRAD_RTOL = 1e-4;

    private static List<Backend> backends() {
        List<Backend> out = new ArrayList<>(List.of(Backends.cpu()));
        if (Backends.cudaDeviceCount() > 0) out.add(Backends.get(Device.CUDA));
        return out;
    }

    /** A device copy (on the CPU backend: the tensor itself). */
    private static Tensor on(Backend be, Tensor host) {
        return be.upload(host, MemoryCategory.WORKSPACE);
    }

    private static float[] read(Backend be, Tensor t) {
        Tensor h = be.download(t);
        try {
            return h.toFloats();
        } finally {
            if (h != t) h.close();
        }
    }

    @Test
    void vocabSlicesGiveTheWholeRowLossAndGradient() {
        final int n = 9, vocab = 1000, vc = 300; // slices 300, 300, 300, 100
        final float scale = 1f / 7f;
        Random r = new Random(3);
        float[] z = new float[n * vocab];
        for (int i = 0; i < z.length; i++) z[i] = (float) (r.nextGaussian() * 4);
        int[] lab = new int[n];
        for (int i = 0; i < n; i++) lab[i] = r.nextInt(vocab);
        lab[2] = -100;
        lab[3] = vocab - 1;
        lab[4] = 0;
        for (Backend be : backends()) {
            try (Tensor zh = Tensor.ofFloats(z, n, vocab); Tensor lh = Tensor.allocate(DType.I32, MemoryCategory.WORKSPACE, n)) {
                lh.buffer().asIntBuffer().put(lab);
                Tensor zd = on(be, zh), ld = on(be, lh);
                Tensor loss = be.allocate(DType.F32, MemoryCategory.WORKSPACE, n), sum = be.allocate(DType.F32, MemoryCategory.WORKSPACE, 1);
                Tensor dz = be.allocate(DType.F32, MemoryCategory.WORKSPACE, n, vocab);
                Tensor rm = be.allocate(DType.F32, MemoryCategory.WORKSPACE, n), rs = be.allocate(DType.F32, MemoryCategory.WORKSPACE, n);
                Tensor ty = be.allocate(DType.F32, MemoryCategory.WORKSPACE, n), lse = be.allocate(DType.F32, MemoryCategory.WORKSPACE, n);
                Tensor closs = be.allocate(DType.F32, MemoryCategory.WORKSPACE, n), csum = be.allocate(DType.F32, MemoryCategory.WORKSPACE, 1);
                try {
                    be.crossEntropyFwd(zd, ld, loss, sum);
                    be.crossEntropyBwd(zd, ld, scale, dz);
                    float[] zs = new float[n * vc];
                    float[] dzc = new float[n * vocab];
                    for (int pass = 0; pass < 2; pass++) {
                        for (int v0 = 0; v0 < vocab; v0 += vc) {
                            int w = Math.min(vc, vocab - v0);
                            for (int t = 0; t < n; t++) System.arraycopy(z, t * vocab + v0, zs, t * w, w);
                            try (Tensor sh = Tensor.ofFloats(Arrays.copyOf(zs, n * w), n, w)) {
                                Tensor sd = on(be, sh); // the slice as the model's sgemm writes it: [n, w], row stride w
                                if (pass == 0) be.crossEntropyChunkStats(sd, ld, v0, v0 == 0, rm, rs, ty);
                                else {
                                    be.crossEntropyChunkGrad(sd, ld, v0, lse, scale);
                                    float[] g = read(be, sd);
                                    for (int t = 0; t < n; t++) System.arraycopy(g, t * w, dzc, t * vocab + v0, w);
                                }
                                if (sd != sh) sd.close();
                            }
                        }
                        if (pass == 0) be.crossEntropyChunkFinalize(ld, rm, rs, ty, lse, closs, csum);
                    }
                    float[] l1 = read(be, loss), l2 = read(be, closs), g1 = read(be, dz);
                    for (int t = 0; t < n; t++) assertEquals(l1[t], l2[t], LOSS_ATOL, be.device() + " loss row " + t);
                    assertEquals(0f, l2[2], 0f, "ignored row");
                    assertEquals(read(be, sum)[0], read(be, csum)[0], n * LOSS_ATOL, be.device() + " loss sum");
                    for (int i = 0; i < g1.length; i++)
                        assertEquals(g1[i], dzc[i], GRAD_ATOL + GRAD_RTOL * Math.abs(g1[i]), be.device() + " dlogits " + i);
                } finally {
                    for (Tensor t : new Tensor[] {loss, sum, dz, rm, rs, ty, lse, closs, csum}) t.close();
                    if (zd != zh) zd.close();
                    if (ld != lh) ld.close();
                }
            }
        }
    }

    @Test
    void offloadRoundTripIsExactAndCountedAsOffloaded() {
        float[] v = new float[3 * 1000];
        Random r = new Random(4);
        for (int i = 0; i < v.length; i++) v[i] = (float) r.nextGaussian();
        for (Backend be : backends()) {
            List<Backend.Offloaded> hs = new ArrayList<>();
            MemoryTracker.GLOBAL.resetPeaks();
            long before = MemoryTracker.GLOBAL.live(Device.CPU, MemoryCategory.OFFLOADED);
            for (int k = 0; k < 3; k++) {
                Tensor h = Tensor.ofFloats(v, 3, 1000);
                Tensor x = be.allocate(DType.F32, MemoryCategory.CHECKPOINTS, 3, 1000);
                Tensor d = on(be, h);
                be.axpy(k + 1f, d, x); // x = (k+1)·v on the device
                if (d != h) d.close();
                h.close();
                hs.add(be.offloadAsync(x));
            }
            assertEquals(3L * 3 * 1000 * 4, MemoryTracker.GLOBAL.live(Device.CPU, MemoryCategory.OFFLOADED) - before,
                    be.device() + ": three host copies counted as OFFLOADED");
            for (int k = 2; k >= 0; k--) { // backward order, prefetching the next one as the model does
                Backend.Offloaded o = hs.get(k);
                Tensor in = be.await(o);
                if (k > 0) be.prefetch(hs.get(k - 1));
                float[] got = read(be, in);
                for (int i = 0; i < v.length; i++) assertEquals((k + 1f) * v[i], got[i], 0f, be.device() + " layer " + k + " element " + i);
                o.close();
                if (in != o.host()) in.close();
                o.host().close();
            }
            assertEquals(before, MemoryTracker.GLOBAL.live(Device.CPU, MemoryCategory.OFFLOADED), be.device() + ": host copies released");
        }
    }
}
