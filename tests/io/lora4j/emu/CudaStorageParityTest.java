package io.lora4j.emu;

import static io.lora4j.emu.Parity.*;
import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.emu.Twins.Twin;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Halfs;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The compact weight storage (native/include/lora4j/storage.h) through the checked backends, CUDA
 * against the CPU twin: BF16 weights as sgemm's B, the embedding table, the decode embedding row and
 * the fused LoRA's base weight; NF4 weights that keep only bitsandbytes' double-quantized absmax on
 * CUDA. BF16 weights hold the same values on both sides, so the fp32 tolerances of the dense ops apply.
 */
class CudaStorageParityTest {
    private final Twins tw = new Twins(77);

    @AfterEach
    void release() {
        tw.close();
    }

    /** A BF16 twin of N(0, std²) values (rounded to nearest even), and its exact fp32 widening. */
    private Twin bf16(double std, float[] widened, long... shape) {
        float[] v = tw.randoms(std, (int) Tensor.numel(shape));
        Tensor t = Tensor.allocate(DType.BF16, MemoryCategory.WORKSPACE, shape);
        short[] h = new short[v.length];
        for (int i = 0; i < v.length; i++) {
            h[i] = Halfs.floatToBf16(v[i]);
            widened[i] = Halfs.bf16ToFloat(h[i]);
        }
        t.shortPointer().put(h);
        return tw.new Twin(t);
    }

    @Test
    void sgemmWithABf16WeightInAllFourTranspositions() {
        int m = 19, n = 33, k = 70;
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                boolean transA = ta == 1, transB = tb == 1;
                Twin a = transA ? tw.randn(1, k, m) : tw.randn(1, m, k);
                float[] bw = new float[n * k];
                Twin b = transB ? bf16(1, bw, n, k) : bf16(1, bw, k, n);
                Twin bf = transB ? tw.floats(bw, n, k) : tw.floats(bw, k, n);
                Twin c = tw.randn(1, m, n), ref = tw.zeros(m, n);
                tw.cpu.axpy(1f, c.host, ref.host);
                tw.both(be -> be.sgemm(transA, transB, m, n, k, 0.7f, a.on(be), transA ? m : k, b.on(be), transB ? k : n, 0.3f,
                        c.on(be), n));
                close("bf16 sgemm trans " + ta + tb, c.cpuFloats(), c.cudaFloats(), dotAtol(k), RED_RTOL);
                // the CPU's bf16 path equals fp32 sgemm on the widened weight
                tw.cpu.sgemm(transA, transB, m, n, k, 0.7f, a.host, transA ? m : k, bf.host, transB ? k : n, 0.3f, ref.host, n);
                close("bf16 sgemm trans " + ta + tb + " vs widened fp32", ref.cpuFloats(), c.cpuFloats(), dotAtol(k), RED_RTOL);
            }
    }

    @Test
    void bf16EmbeddingTablesAreWidenedExactly() {
        int vocab = 300, dim = 40, t = 57;
        float[] wf = new float[vocab * dim];
        Twin table = bf16(1, wf, vocab, dim);
        int[] ids = new int[t];
        for (int i = 0; i < t; i++) ids[i] = tw.rng().nextInt(vocab);
        Twin idt = tw.ints(ids, t), out = tw.zeros(t, dim), row = tw.zeros(dim);
        tw.both(b -> b.embeddingFwd(idt.on(b), table.on(b), out.on(b)));
        same("bf16 embedding", out.cpuBytes(), out.cudaBytes());
        float[] o = out.cpuFloats();
        for (int i = 0; i < t; i++)
            for (int j = 0; j < dim; j++) assertEquals(wf[ids[i] * dim + j], o[i * dim + j], 0f, "row " + i);
        tw.both(b -> b.decodeEmbedding(table.on(b), 123, row.on(b)));
        same("bf16 decode embedding", row.cpuBytes(), row.cudaBytes());
        assertEquals(wf[123 * dim + 7], row.cpuFloats()[7], 0f);
    }

    @Test
    void fusedLoraOnABf16Base() {
        int t = 19, in = 70, out = 45, r = 5;
        for (boolean acc : new boolean[] {false, true}) {
            float[] wf = new float[out * in];
            Twin x = tw.randn(1, t, in), w = bf16(0.1, wf, out, in), a = tw.randn(0.1, r, in), bb = tw.randn(0.1, out, r);
            Twin y = tw.randn(1, t, out), xa = tw.zeros(t, r), dy = tw.randn(1, t, out), dx = tw.randn(1, t, in);
            Twin da = tw.randn(0.1, r, in), db = tw.randn(0.1, out, r), ws = tw.zeros(t * r);
            Twin wfl = tw.floats(wf, out, in), y32 = tw.zeros(t, out), xa32 = tw.zeros(t, r), dx32 = tw.zeros(t, in);
            tw.cpu.axpy(1f, dx.host, dx32.host);
            float s = 1.7f;
            tw.both(b -> b.loraFwd(x.on(b), w.on(b), a.on(b), bb.on(b), null, s, y.on(b), xa.on(b)));
            tw.both(b -> b.loraBwd(dy.on(b), x.on(b), w.on(b), a.on(b), bb.on(b), null, xa.on(b), s, dx.on(b), acc, da.on(b), db.on(b),
                    ws.on(b)));
            String tag = "lora on bf16 base (accumulate " + acc + ") ";
            close(tag + "y", y.cpuFloats(), y.cudaFloats(), dotAtol(in), RED_RTOL);
            close(tag + "xa", xa.cpuFloats(), xa.cudaFloats(), dotAtol(in), RED_RTOL);
            close(tag + "dx", dx.cpuFloats(), dx.cudaFloats(), dotAtol(out), RED_RTOL);
            close(tag + "dA (+=)", da.cpuFloats(), da.cudaFloats(), dotAtol(t) * 4, RED_RTOL);
            close(tag + "dB (+=)", db.cpuFloats(), db.cudaFloats(), dotAtol(t) * 4, RED_RTOL);
            // the composed bf16 path equals the fused fp32 op on the widened weight
            tw.cpu.loraFwd(x.host, wfl.host, a.host, bb.host, null, s, y32.host, xa32.host);
            close(tag + "y vs fused fp32", y32.cpuFloats(), y.cpuFloats(), dotAtol(in), RED_RTOL);
            Twin da32 = tw.zeros(r, in), db32 = tw.zeros(out, r);
            tw.cpu.loraBwd(dy.host, x.host, wfl.host, a.host, bb.host, null, xa32.host, s, dx32.host, acc, da32.host, db32.host, ws.host);
            close(tag + "dx vs fused fp32", dx32.cpuFloats(), dx.cpuFloats(), dotAtol(out), RED_RTOL);
        }
    }

    @Test
    void nf4OnCudaKeepsOnlyTheDoubleQuantizedAbsmax() {
        int out = 75, in = 160, t = 19, bs = 64;
        Twin w = tw.randn(0.05, out, in), x = tw.randn(1, t, in), dy = tw.randn(1, t, out);
        try (Nf4Weight qc = Nf4.quantize(tw.cpu, w.host, bs, true); Nf4Weight qg = Nf4.quantize(tw.cuda, w.dev, bs, true)) {
            assertNotNull(qc.absmax(), "the CPU keeps the fp32 absmax its kernels read");
            assertNull(qg.absmax(), "CUDA keeps bitsandbytes' 8-bit absmax only");
            long blocks = Nf4.blocks((long) out * in, bs);
            assertEquals((long) out * in / 2 + blocks + Nf4.blocks(blocks, 256) * 4 + 4, qg.storageBytes());
            try (Tensor yc = Nf4.matmul(tw.cpu, x.host, qc); Tensor yg = Nf4.matmul(tw.cuda, x.dev, qg);
                 Tensor dc = Nf4.matmulBackwardInput(tw.cpu, dy.host, qc); Tensor dg = Nf4.matmulBackwardInput(tw.cuda, dy.dev, qg);
                 Tensor wc = Nf4.dequantize(tw.cpu, qc); Tensor wg = Nf4.dequantize(tw.cuda, qg);
                 Tensor ygh = tw.cuda.download(yg); Tensor dgh = tw.cuda.download(dg); Tensor wgh = tw.cuda.download(wg)) {
                same("dequantized from the 8-bit absmax", wc.toBytes(), wgh.toBytes());
                float[] wf = wc.toFloats(), xf = x.cpuFloats(), dyf = dy.cpuFloats();
                double[] fwd = new double[t * out], bwd = new double[t * in];
                for (int i = 0; i < t; i++)
                    for (int o = 0; o < out; o++)
                        for (int k = 0; k < in; k++) {
                            fwd[i * out + o] += BF16_DOT * Math.abs(xf[i * in + k] * wf[o * in + k]);
                            bwd[i * in + k] += BF16_DOT * Math.abs(dyf[i * out + o] * wf[o * in + k]);
                        }
                close("nf4 dq matmul fwd", yc.toFloats(), ygh.toFloats(), 1e-6, 0, fwd);
                close("nf4 dq matmul bwd input", dc.toFloats(), dgh.toFloats(), 1e-6, 0, bwd);
            }
        }
    }
}
