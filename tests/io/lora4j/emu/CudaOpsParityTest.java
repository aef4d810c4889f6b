package io.lora4j.emu;

import static io.lora4j.emu.Parity.*;
import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.emu.Twins.Twin;
import io.lora4j.ops.Backend;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Every {@link Backend} op on CUDA against the CPU backend, both through the {@code CheckedBackend}
 * that {@code Backends} hands out, at small shapes that leave partial tiles (19 tokens, 75 output
 * rows, a 160-wide input whose NF4 blocks span rows, sequences of 21 against 16-row attention
 * tiles). Tolerances: {@link Parity}.
 */
class CudaOpsParityTest {
    private Twins tw;

    @BeforeEach
    void open() {
        tw = new Twins(20240611);
    }

    @AfterEach
    void release() {
        tw.close();
    }

    @Test
    void backendsAreCheckedAndTheLineSaysWhatRunsTheKernels() {
        assertEquals(Device.CUDA, tw.cuda.device());
        assertEquals("CheckedBackend", tw.cuda.getClass().getSimpleName());
        String line = tw.cuda.description();
        assertTrue(line.startsWith("cuda ("), line);
        if (io.lora4j.nativeapi.NativeLibrary.cudaEmulated()) assertTrue(line.startsWith("cuda (emulated) ("), line);
        // a bad shape is refused in Java, before the kernel sees it
        Twin x = tw.zeros(4, 8), w = tw.zeros(7), y = tw.zeros(4, 8), r = tw.zeros(4);
        assertThrows(IllegalArgumentException.class, () -> tw.cuda.rmsnormFwd(x.dev, w.dev, 1e-5f, y.dev, r.dev));
    }

    @Test
    void nf4QuantizeDequantizeAndDoubleQuantAreByteExact() {
        int n = 75 * 160 + 13, bs = 64; // partial last block
        Twin w = tw.randn(0.05, n);
        int nb = (n + bs - 1) / bs;
        Twin packed = tw.zeros(DType.U8, (n + 1) / 2), absmax = tw.zeros(nb), deq = tw.zeros(n);
        tw.both(b -> b.nf4Quantize(w.on(b), bs, packed.on(b), absmax.on(b)));
        same("nf4 packed", packed.cpuBytes(), packed.cudaBytes());
        same("nf4 absmax", absmax.cpuBytes(), absmax.cudaBytes());
        tw.both(b -> b.nf4Dequantize(packed.on(b), absmax.on(b), n, bs, deq.on(b)));
        same("nf4 dequantize", deq.cpuBytes(), deq.cudaBytes());

        Twin q = tw.zeros(DType.U8, nb), nested = tw.zeros((nb + 255) / 256), back = tw.zeros(nb);
        float offCpu = tw.cpu.nf4DoubleQuant(absmax.host, q.host, nested.host);
        float offCuda = tw.cuda.nf4DoubleQuant(absmax.dev, q.dev, nested.dev);
        assertEquals(Float.floatToIntBits(offCpu), Float.floatToIntBits(offCuda), "double-quant offset " + offCpu + " vs " + offCuda);
        same("double-quant codes", q.cpuBytes(), q.cudaBytes());
        same("nested absmax", nested.cpuBytes(), nested.cudaBytes());
        tw.both(b -> b.nf4DequantAbsmax(q.on(b), nested.on(b), offCpu, back.on(b)));
        same("dequantized absmax", back.cpuBytes(), back.cudaBytes());
    }

    @Test
    void nf4MatmulForwardAndInputGradientWithinTheBf16Bound() {
        int t = 19, in = 160, out = 75, bs = 64;
        Twin w = tw.randn(0.05, out, in), x = tw.randn(1, t, in), dy = tw.randn(1, t, out);
        int nb = (out * in + bs - 1) / bs;
        Twin packed = tw.zeros(DType.U8, out * in / 2), absmax = tw.zeros(nb), wd = tw.zeros(out * in);
        tw.cpu.nf4Quantize(w.host, bs, packed.host, absmax.host);
        tw.cpu.nf4Dequantize(packed.host, absmax.host, (long) out * in, bs, wd.host);
        Twin p = tw.new Twin(packed.host), a = tw.new Twin(absmax.host); // the CPU's bytes on both sides
        float[] wf = wd.cpuFloats(), xf = x.cpuFloats(), dyf = dy.cpuFloats();
        Twin y = tw.zeros(t, out), dx = tw.zeros(t, in);
        tw.both(b -> b.nf4MatmulFwd(x.on(b), p.on(b), a.on(b), bs, out, y.on(b)));
        tw.both(b -> b.nf4MatmulBwdInput(dy.on(b), p.on(b), a.on(b), bs, in, dx.on(b)));
        double[] fwdBound = new double[t * out], bwdBound = new double[t * in];
        for (int i = 0; i < t; i++)
            for (int o = 0; o < out; o++)
                for (int k = 0; k < in; k++) {
                    fwdBound[i * out + o] += BF16_DOT * Math.abs(xf[i * in + k] * wf[o * in + k]);
                    bwdBound[i * in + k] += BF16_DOT * Math.abs(dyf[i * out + o] * wf[o * in + k]);
                }
        close("nf4 matmul fwd", y.cpuFloats(), y.cudaFloats(), 1e-6, 0, fwdBound);
        close("nf4 matmul bwd input", dx.cpuFloats(), dx.cudaFloats(), 1e-6, 0, bwdBound);
    }

    @Test
    void sgemmInAllFourTranspositions() {
        int m = 19, n = 33, k = 70;
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                boolean transA = ta == 1, transB = tb == 1;
                Twin a = transA ? tw.randn(1, k, m) : tw.randn(1, m, k);
                Twin b = transB ? tw.randn(1, n, k) : tw.randn(1, k, n);
                Twin c = tw.randn(1, m, n); // beta != 0: C is read
                tw.both(be -> be.sgemm(transA, transB, m, n, k, 0.7f, a.on(be), transA ? m : k, b.on(be), transB ? k : n,
                        0.3f, c.on(be), n));
                close("sgemm trans " + ta + tb, c.cpuFloats(), c.cudaFloats(), dotAtol(k), RED_RTOL);
            }
    }

    @Test
    void elementwiseOps() {
        int n = 1000 + 37;
        Twin x = tw.randn(1, n), y = tw.randn(1, n);
        tw.both(b -> b.axpy(-0.37f, x.on(b), y.on(b)));
        close("axpy", y.cpuFloats(), y.cudaFloats(), ELEM_ATOL, ELEM_RTOL);

        Twin g = tw.randn(2, n), u = tw.randn(1, n), h = tw.zeros(n), dh = tw.randn(1, n), dg = tw.zeros(n), du = tw.zeros(n);
        tw.both(b -> b.swigluFwd(g.on(b), u.on(b), h.on(b)));
        tw.both(b -> b.swigluBwd(dh.on(b), g.on(b), u.on(b), dg.on(b), du.on(b)));
        close("swiglu fwd", h.cpuFloats(), h.cudaFloats(), ELEM_ATOL, ELEM_RTOL);
        close("swiglu bwd dgate", dg.cpuFloats(), dg.cudaFloats(), ELEM_ATOL, ELEM_RTOL);
        close("swiglu bwd dup", du.cpuFloats(), du.cudaFloats(), ELEM_ATOL, ELEM_RTOL);

        Twin mask = tw.zeros(n);
        tw.both(b -> b.dropoutMask(77, 0.1f, mask.on(b)));
        same("dropout mask (identical on every backend)", mask.cpuBytes(), mask.cudaBytes());

        double cpu = tw.cpu.sumOfSquares(x.host), cuda = tw.cuda.sumOfSquares(x.dev);
        assertEquals(cpu, cuda, 1e-12 * cpu, "sum of squares (double accumulation)");
    }

    @Test
    void rmsnormForwardAndBackward() {
        int t = 19, dim = 300;
        Twin x = tw.randn(1, t, dim), w = tw.randn(1, dim), y = tw.zeros(t, dim), rstd = tw.zeros(t);
        Twin dy = tw.randn(1, t, dim), dx = tw.zeros(t, dim), dw = tw.randn(0.1, dim); // dw accumulates
        tw.both(b -> b.rmsnormFwd(x.on(b), w.on(b), 1e-5f, y.on(b), rstd.on(b)));
        tw.both(b -> b.rmsnormBwd(dy.on(b), x.on(b), w.on(b), rstd.on(b), dx.on(b), dw.on(b)));
        close("rmsnorm y", y.cpuFloats(), y.cudaFloats(), RED_ATOL, RED_RTOL);
        close("rmsnorm rstd", rstd.cpuFloats(), rstd.cudaFloats(), RED_ATOL, RED_RTOL);
        close("rmsnorm dx", dx.cpuFloats(), dx.cudaFloats(), RED_ATOL, RED_RTOL);
        close("rmsnorm dw (+=)", dw.cpuFloats(), dw.cudaFloats(), dotAtol(t), RED_RTOL);
    }

    @Test
    void ropeForwardBackwardAndInPlace() {
        int t = 19, heads = 3, d = 24;
        int[] pos = new int[t];
        for (int i = 0; i < t; i++) pos[i] = 5 + 3 * i;
        float[] inv = new float[d / 2];
        for (int i = 0; i < d / 2; i++) inv[i] = (float) Math.pow(10000, -2.0 * i / d);
        Twin p = tw.ints(pos, t), f = tw.floats(inv, d / 2), x = tw.randn(1, t, heads, d), y = tw.zeros(t, heads, d);
        Twin dy = tw.randn(1, t, heads, d), dx = tw.zeros(t, heads, d);
        tw.both(b -> b.ropeFwd(x.on(b), y.on(b), p.on(b), f.on(b), heads, d));
        tw.both(b -> b.ropeBwd(dy.on(b), dx.on(b), p.on(b), f.on(b), heads, d));
        close("rope fwd", y.cpuFloats(), y.cudaFloats(), ELEM_ATOL, ELEM_RTOL);
        close("rope bwd", dx.cpuFloats(), dx.cudaFloats(), ELEM_ATOL, ELEM_RTOL);
        tw.both(b -> b.ropeFwd(x.on(b), x.on(b), p.on(b), f.on(b), heads, d));
        close("rope fwd in place", x.cpuFloats(), x.cudaFloats(), ELEM_ATOL, ELEM_RTOL);
    }

    /** Head sizes of the test models (16: synthetic-gqa-untied, 48: stories15M) and of Llama (64, 128). */
    @ParameterizedTest
    @ValueSource(ints = {16, 32, 48, 64, 128})
    void attentionForwardBackwardWithAndWithoutSegments(int d) {
        int batch = 2, seq = 21, hq = 4, hkv = 2;
        int[] seg = new int[batch * seq];
        for (int i = 0; i < seg.length; i++) seg[i] = (i % seq) < 8 ? 0 : 1; // two packed rows per sequence
        for (boolean packed : new boolean[] {false, true}) {
            Twin s = packed ? tw.ints(seg, batch * seq) : null;
            Twin q = tw.randn(1, batch * seq, hq * d), k = tw.randn(1, batch * seq, hkv * d), v = tw.randn(1, batch * seq, hkv * d);
            Twin out = tw.zeros(batch * seq, hq * d), lse = tw.zeros(batch * hq * seq), dout = tw.randn(1, batch * seq, hq * d);
            Twin dq = tw.zeros(batch * seq, hq * d), dk = tw.zeros(batch * seq, hkv * d), dv = tw.zeros(batch * seq, hkv * d);
            tw.both(b -> b.attentionFwd(q.on(b), k.on(b), v.on(b), s == null ? null : s.on(b), batch, seq, hq, hkv, d,
                    out.on(b), lse.on(b)));
            tw.both(b -> b.attentionBwd(q.on(b), k.on(b), v.on(b), out.on(b), dout.on(b), lse.on(b), s == null ? null : s.on(b),
                    batch, seq, hq, hkv, d, dq.on(b), dk.on(b), dv.on(b)));
            String tag = (packed ? "attention (packed) D=" : "attention D=") + d + " ";
            close(tag + "out", out.cpuFloats(), out.cudaFloats(), RED_ATOL, RED_RTOL);
            close(tag + "lse", lse.cpuFloats(), lse.cudaFloats(), RED_ATOL, RED_RTOL);
            close(tag + "dq", dq.cpuFloats(), dq.cudaFloats(), RED_ATOL, RED_RTOL);
            close(tag + "dk", dk.cpuFloats(), dk.cudaFloats(), RED_ATOL, RED_RTOL);
            close(tag + "dv", dv.cpuFloats(), dv.cudaFloats(), RED_ATOL, RED_RTOL);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {16, 48, 128})
    void decodeAttentionOverAPartlyFilledCache(int d) {
        int batch = 2, len = 13, cache = 16, hq = 4, hkv = 2;
        Twin q = tw.randn(1, batch, hq * d), kc = tw.randn(1, batch * cache, hkv * d), vc = tw.randn(1, batch * cache, hkv * d);
        Twin out = tw.zeros(batch, hq * d);
        tw.both(b -> b.attentionDecode(q.on(b), kc.on(b), vc.on(b), batch, len, cache, hq, hkv, d, out.on(b)));
        close("decode attention", out.cpuFloats(), out.cudaFloats(), RED_ATOL, RED_RTOL);
    }

    @Test
    void embeddingLookup() {
        int vocab = 50, dim = 40, t = 19;
        int[] ids = new int[t];
        for (int i = 0; i < t; i++) ids[i] = tw.rng().nextInt(vocab);
        ids[0] = vocab - 1;
        Twin id = tw.ints(ids, t), table = tw.randn(1, vocab, dim), out = tw.zeros(t, dim);
        tw.both(b -> b.embeddingFwd(id.on(b), table.on(b), out.on(b)));
        same("embedding rows", out.cpuBytes(), out.cudaBytes());
    }

    private int[] labels(int t, int vocab) {
        int[] lab = new int[t];
        for (int i = 0; i < t; i++) lab[i] = tw.rng().nextInt(vocab);
        lab[1] = -100;
        lab[2] = vocab - 1;
        lab[3] = 0;
        return lab;
    }

    @Test
    void crossEntropyForwardAndBackward() {
        int t = 19, vocab = 1000;
        Twin z = tw.randn(3, t, vocab), lab = tw.ints(labels(t, vocab), t);
        Twin loss = tw.zeros(t), sum = tw.zeros(1), dz = tw.zeros(t, vocab);
        tw.both(b -> b.crossEntropyFwd(z.on(b), lab.on(b), loss.on(b), sum.on(b)));
        tw.both(b -> b.crossEntropyBwd(z.on(b), lab.on(b), 1f / 17, dz.on(b)));
        close("ce loss", loss.cpuFloats(), loss.cudaFloats(), RED_ATOL, RED_RTOL);
        close("ce loss sum", sum.cpuFloats(), sum.cudaFloats(), RED_ATOL, RED_RTOL);
        close("ce dlogits", dz.cpuFloats(), dz.cudaFloats(), RED_ATOL * 1e-2, RED_RTOL);
    }

    /** The slices the training head uses past {@code CE_CHUNK_VOCAB} = 32768: 40000 = 32768 + 7232. */
    @Test
    void vocabularyChunkedCrossEntropyPast32768() {
        int t = 4, vocab = 40_000, vc = 32_768;
        float[] z = tw.randoms(3, t * vocab);
        Twin lab = tw.ints(labels(t, vocab), t);
        Twin rm = tw.zeros(t), rs = tw.zeros(t), ty = tw.zeros(t), lse = tw.zeros(t), loss = tw.zeros(t), sum = tw.zeros(1);
        Twin[] slices = new Twin[2];
        for (int s = 0, v0 = 0; v0 < vocab; s++, v0 += vc) {
            int w = Math.min(vc, vocab - v0);
            float[] part = new float[t * w];
            for (int i = 0; i < t; i++) System.arraycopy(z, i * vocab + v0, part, i * w, w);
            slices[s] = tw.floats(part, t, w);
            int start = v0;
            Twin sl = slices[s];
            tw.both(b -> b.crossEntropyChunkStats(sl.on(b), lab.on(b), start, start == 0, rm.on(b), rs.on(b), ty.on(b)));
        }
        tw.both(b -> b.crossEntropyChunkFinalize(lab.on(b), rm.on(b), rs.on(b), ty.on(b), lse.on(b), loss.on(b), sum.on(b)));
        close("chunked ce lse", lse.cpuFloats(), lse.cudaFloats(), RED_ATOL, RED_RTOL);
        close("chunked ce loss", loss.cpuFloats(), loss.cudaFloats(), RED_ATOL, RED_RTOL);
        close("chunked ce loss sum", sum.cpuFloats(), sum.cudaFloats(), RED_ATOL, RED_RTOL);
        for (int s = 0; s < 2; s++) {
            Twin sl = slices[s];
            int start = s * vc;
            tw.both(b -> b.crossEntropyChunkGrad(sl.on(b), lab.on(b), start, lse.on(b), 0.25f));
            close("chunked ce grad slice " + s, sl.cpuFloats(), sl.cudaFloats(), RED_ATOL * 1e-2, RED_RTOL);
        }
    }

    @Test
    void fusedLoraForwardAndBackward() {
        int t = 19, in = 70, out = 45, r = 5;
        for (int variant = 0; variant < 3; variant++) { // base + LoRA; LoRA only (w null, y +=); base + LoRA + dropout
            boolean base = variant != 1, dropout = variant == 2;
            Twin x = tw.randn(1, t, in), w = base ? tw.randn(0.1, out, in) : null, a = tw.randn(0.1, r, in), bb = tw.randn(0.1, out, r);
            Twin mask = dropout ? tw.zeros(t, in) : null;
            if (mask != null) tw.both(b -> b.dropoutMask(9, 0.2f, mask.on(b)));
            Twin y = tw.randn(1, t, out), xa = tw.zeros(t, r);
            Twin dy = tw.randn(1, t, out), dx = tw.randn(1, t, in), da = tw.randn(0.1, r, in), db = tw.randn(0.1, out, r);
            Twin ws = tw.zeros(t * r);
            float s = 1.7f;
            boolean acc = variant == 1;
            tw.both(b -> b.loraFwd(x.on(b), w == null ? null : w.on(b), a.on(b), bb.on(b), mask == null ? null : mask.on(b), s,
                    y.on(b), xa.on(b)));
            tw.both(b -> b.loraBwd(dy.on(b), x.on(b), w == null ? null : w.on(b), a.on(b), bb.on(b), mask == null ? null : mask.on(b),
                    xa.on(b), s, dx.on(b), acc, da.on(b), db.on(b), ws.on(b)));
            String tag = "lora " + new String[] {"base+lora", "lora only", "dropout"}[variant] + " ";
            close(tag + "y", y.cpuFloats(), y.cudaFloats(), dotAtol(in), RED_RTOL);
            close(tag + "xa", xa.cpuFloats(), xa.cudaFloats(), dotAtol(in), RED_RTOL);
            close(tag + "dx", dx.cpuFloats(), dx.cudaFloats(), dotAtol(out), RED_RTOL);
            close(tag + "dA (+=)", da.cpuFloats(), da.cudaFloats(), dotAtol(t) * 4, RED_RTOL);
            close(tag + "dB (+=)", db.cpuFloats(), db.cudaFloats(), dotAtol(t) * 4, RED_RTOL);
        }
    }

    @Test
    void adamwStepsWithDecayAndGradScale() {
        int n = 1000 + 37;
        Twin p = tw.randn(1, n), m = tw.zeros(n), v = tw.zeros(n);
        for (int step = 1; step <= 3; step++) {
            Twin g = tw.randn(0.1, n);
            long st = step;
            tw.both(b -> b.adamwStep(p.on(b), g.on(b), m.on(b), v.on(b), 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, st, 0.5f));
        }
        close("adamw p", p.cpuFloats(), p.cudaFloats(), 1e-7, ELEM_RTOL);
        close("adamw m", m.cpuFloats(), m.cudaFloats(), 1e-7, ELEM_RTOL);
        close("adamw v", v.cpuFloats(), v.cudaFloats(), 1e-9, ELEM_RTOL);
    }
}
