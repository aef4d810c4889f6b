package io.lora4j.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.ops.CheckedBackend;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Consumer;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/**
 * The native boundary: every op of the checked CPU backend fed boundary values (0, 1, huge,
 * overflowing products, mismatched shapes, wrong dtypes, closed tensors) must throw
 * IllegalArgumentException or IllegalStateException in Java, never reach native code with a
 * buffer it would overrun; valid calls still compute.
 */
class CheckedBackendTest {
    private static final Backend B = Backends.cpu();
    private static final long HUGE = 1L << 40;

    private static Tensor f32(long... shape) {
        return Tensor.allocate(DType.F32, MemoryCategory.WORKSPACE, shape);
    }

    private static Tensor i32(long... shape) {
        return Tensor.allocate(DType.I32, MemoryCategory.WORKSPACE, shape);
    }

    private static Tensor u8(long... shape) {
        return Tensor.allocate(DType.U8, MemoryCategory.WORKSPACE, shape);
    }

    private static void rejected(Executable e) {
        Throwable t = assertThrows(RuntimeException.class, e);
        assertTrue(t instanceof IllegalArgumentException || t instanceof IllegalStateException, t.toString());
        assertTrue(t.getMessage() != null && !t.getMessage().contains("\n"), t.toString());
    }

    @Test
    void backendsHandOutCheckedBackends() {
        assertInstanceOf(CheckedBackend.class, Backends.cpu());
        assertInstanceOf(CheckedBackend.class, Backends.select(java.util.Optional.of(io.lora4j.tensor.Device.CPU)));
        assertEquals(B, CheckedBackend.wrap(B));
    }

    @Test
    void allocationSizesOverflowInJava() {
        rejected(() -> B.allocate(DType.F32, MemoryCategory.WORKSPACE, Long.MAX_VALUE / 2, 3));
        rejected(() -> B.allocate(DType.F32, MemoryCategory.WORKSPACE, -1));
        rejected(() -> B.allocate(DType.F32, MemoryCategory.WORKSPACE, Long.MAX_VALUE / 2)); // bytes overflow
    }

    @Test
    void everyOpRejectsBadArguments() {
        List<Tensor> owned = new ArrayList<>();
        try {
            Tensor x = f32(4, 8), w8 = f32(8), y = f32(4, 8), rstd = f32(4), small = f32(3), ids = i32(4);
            Tensor closed = f32(4, 8);
            closed.close();
            owned.addAll(List.of(x, w8, y, rstd, small, ids));
            // sgemm: strides, extents, negative and overflowing dims
            Tensor a = f32(4, 8), bm = f32(8, 4), c = f32(4, 4);
            owned.addAll(List.of(a, bm, c));
            B.sgemm(false, false, 4, 4, 8, 1f, a, 8, bm, 4, 0f, c, 4);
            rejected(() -> B.sgemm(false, false, 5, 4, 8, 1f, a, 8, bm, 4, 0f, c, 4));
            rejected(() -> B.sgemm(false, false, 4, 4, 8, 1f, a, 7, bm, 4, 0f, c, 4));
            rejected(() -> B.sgemm(true, false, 4, 4, 8, 1f, a, 8, bm, 4, 0f, c, 4));
            rejected(() -> B.sgemm(false, false, -1, 4, 8, 1f, a, 8, bm, 4, 0f, c, 4));
            rejected(() -> B.sgemm(false, false, HUGE, HUGE, 8, 1f, a, HUGE, bm, 4, 0f, c, HUGE));
            rejected(() -> B.sgemm(false, false, 4, 4, 8, 1f, ids, 8, bm, 4, 0f, c, 4));
            rejected(() -> B.sgemm(false, false, 4, 4, 8, 1f, closed, 8, bm, 4, 0f, c, 4));
            // elementwise
            rejected(() -> B.axpy(1f, x, small));
            rejected(() -> B.axpy(1f, closed, y));
            rejected(() -> B.swigluFwd(x, small, y));
            rejected(() -> B.swigluBwd(x, x, x, x, small));
            rejected(() -> B.sumOfSquares(ids));
            rejected(() -> B.dropoutMask(1, 1.0f, x));
            rejected(() -> B.dropoutMask(1, Float.NaN, x));
            rejected(() -> B.adamwStep(x, x, x, small, 1e-3f, 0.9f, 0.999f, 1e-8f, 0f, 1, 1f));
            rejected(() -> B.adamwStep(x, x, x, x, 1e-3f, 0.9f, 0.999f, 1e-8f, 0f, 0, 1f));
            // rmsnorm
            B.rmsnormFwd(x, w8, 1e-5f, y, rstd);
            rejected(() -> B.rmsnormFwd(x, small, 1e-5f, y, rstd));
            rejected(() -> B.rmsnormFwd(x, w8, 1e-5f, y, small));
            rejected(() -> B.rmsnormFwd(x.reshape(32), w8, 1e-5f, y, rstd));
            rejected(() -> B.rmsnormBwd(x, x, w8, rstd, small, null));
            // rope: odd head dim, positions vs buffers, overflowing heads
            Tensor inv = f32(2);
            owned.add(inv);
            B.ropeFwd(x, y, ids, inv, 2, 4);
            rejected(() -> B.ropeFwd(x, y, ids, inv, 2, 3));
            rejected(() -> B.ropeFwd(x, y, ids, inv, 4, 4));
            rejected(() -> B.ropeFwd(x, y, ids, inv, HUGE, HUGE));
            rejected(() -> B.ropeFwd(x, y, x, inv, 2, 4));
            rejected(() -> B.ropeBwd(x, small, ids, inv, 2, 4));
            // embedding and cross-entropy
            Tensor table = f32(10, 8);
            owned.add(table);
            B.embeddingFwd(ids, table, y);
            rejected(() -> B.embeddingFwd(x, table, y));
            rejected(() -> B.embeddingFwd(ids, table, small));
            Tensor loss = f32(4), sum = f32(1);
            owned.addAll(List.of(loss, sum));
            rejected(() -> B.crossEntropyFwd(x, small, loss, sum));
            rejected(() -> B.crossEntropyFwd(x, ids, small, sum));
            rejected(() -> B.crossEntropyBwd(x, ids, 1f, small));
            // attention
            Tensor lse = f32(2 * 2 * 2);
            owned.add(lse);
            B.attentionFwd(x, x, x, null, 2, 2, 2, 2, 4, y, lse);
            rejected(() -> B.attentionFwd(x, x, x, null, 2, 2, 3, 2, 4, y, lse));
            rejected(() -> B.attentionFwd(x, x, x, null, 4, 2, 2, 2, 4, y, lse));
            rejected(() -> B.attentionFwd(x, x, x, null, 0, 2, 2, 2, 4, y, lse));
            rejected(() -> B.attentionFwd(x, x, x, small, 2, 2, 2, 2, 4, y, lse));
            rejected(() -> B.attentionFwd(x, x, x, null, HUGE, HUGE, 2, 2, 4, y, lse));
            rejected(() -> B.attentionBwd(x, x, x, x, x, lse, null, 2, 2, 2, 2, 4, x, x, small));
            rejected(() -> B.attentionDecode(x, x, x, 1, 5, 4, 2, 2, 4, y));
            rejected(() -> B.attentionDecode(x, x, x, 2, 1, 4, 2, 2, 4, y));
            // LoRA: a [r, in], b [out, r]
            Tensor la = f32(2, 8), lb = f32(8, 2), xa = f32(4, 2), ws = f32(8);
            owned.addAll(List.of(la, lb, xa, ws));
            B.loraFwd(x, null, la, lb, null, 1f, y, xa);
            rejected(() -> B.loraFwd(x, null, lb, la, null, 1f, y, xa));
            rejected(() -> B.loraFwd(x, small, la, lb, null, 1f, y, xa));
            rejected(() -> B.loraFwd(x, null, la, lb, null, 1f, y, small));
            rejected(() -> B.loraBwd(x, x, null, la, lb, null, xa, 1f, x, false, la, lb, small));
            rejected(() -> B.loraBwd(x, x, null, la, lb, small, xa, 1f, x, false, la, lb, ws));
            // NF4
            Tensor w = f32(4, 64), packed = u8(128), absmax = f32(4);
            owned.addAll(List.of(w, packed, absmax));
            B.nf4Quantize(w, 64, packed, absmax);
            rejected(() -> B.nf4Quantize(w, 63, packed, absmax));
            rejected(() -> B.nf4Quantize(w, 64, packed, small));
            rejected(() -> B.nf4Quantize(w, 32, packed, absmax));
            rejected(() -> B.nf4Quantize(ids, 64, packed, absmax));
            rejected(() -> B.nf4Dequantize(packed, absmax, 257, 64, w));
            rejected(() -> B.nf4Dequantize(packed, absmax, HUGE, 64, w));
            rejected(() -> B.nf4Dequantize(packed, absmax, -1, 64, w));
            rejected(() -> B.nf4DoubleQuant(absmax, u8(2), f32(1)));
            rejected(() -> B.nf4DequantAbsmax(u8(4), f32(1), 0f, small));
            Tensor xin = f32(3, 64), yout = f32(3, 4);
            owned.addAll(List.of(xin, yout));
            B.nf4MatmulFwd(xin, packed, absmax, 64, 4, yout);
            rejected(() -> B.nf4MatmulFwd(xin, packed, absmax, 64, 5, yout));
            rejected(() -> B.nf4MatmulFwd(xin, packed, absmax, 64, HUGE, yout));
            rejected(() -> B.nf4MatmulBwdInput(yout, packed, absmax, 64, 65, xin));
            rejected(() -> B.nf4MatmulBwdInput(yout, small, absmax, 64, 64, xin));
            rejected(() -> B.download(closed));
        } finally {
            owned.forEach(Tensor::close);
        }
    }

    @Test
    void nf4EntryPointsValidate() {
        try (Tensor w = f32(4, 64)) {
            rejected(() -> Nf4.quantize(B, w, 48, true));
            try (Tensor e = f32(0)) {
                rejected(() -> Nf4.quantize(B, e, 64, true));
            }
            Nf4Weight q = Nf4.quantize(B, w, 64, true);
            try (Tensor x = f32(2, 63)) {
                rejected(() -> Nf4.matmul(B, x, q));
            }
            rejected(() -> Nf4.fromParts(B, new long[] {4, 64}, 64, DType.F32, u8(3), f32(4), null, null, 0f));
            rejected(() -> Nf4.fromParts(B, new long[] {Long.MAX_VALUE, 2}, 64, DType.F32, u8(3), f32(4), null, null, 0f));
        }
    }

    /** Random dims around the valid ones, on a checked backend: either a clean exception or a computed result. */
    @Property(tries = 400, seed = "3407")
    void randomShapesNeverReachNativeUnchecked(@ForAll long s) {
        Random r = new Random(s);
        long[] pick = {0, 1, 2, 3, 4, 8, -1, HUGE, Long.MAX_VALUE};
        long t = pick[r.nextInt(5)] + 1, d = 2 * (1 + r.nextInt(4));
        List<Tensor> owned = new ArrayList<>();
        Consumer<Tensor> own = owned::add;
        try {
            Tensor x = f32(t, d), y = f32(1 + r.nextInt(8), d), w = f32(r.nextBoolean() ? d : 1 + r.nextInt(8));
            Tensor rstd = f32(1 + r.nextInt(8)), pos = i32(1 + r.nextInt(8)), inv = f32(1 + r.nextInt(4));
            List.of(x, y, w, rstd, pos, inv).forEach(own);
            long heads = pick[r.nextInt(pick.length)], hd = pick[r.nextInt(pick.length)];
            long bb = pick[r.nextInt(pick.length)], ss = pick[r.nextInt(pick.length)];
            Executable[] ops = {
                    () -> B.rmsnormFwd(x, w, 1e-5f, y, rstd),
                    () -> B.ropeFwd(x, y, pos, inv, heads, hd),
                    () -> B.attentionFwd(x, x, x, null, bb, ss, heads, heads, hd, y, rstd),
                    () -> B.sgemm(r.nextBoolean(), r.nextBoolean(), bb, ss, hd, 1f, x, heads, y, d, 0f, w, ss),
                    () -> B.crossEntropyFwd(x, pos, rstd, null),
                    () -> B.nf4Dequantize(y, w, bb, 64, x),
            };
            Executable op = ops[r.nextInt(ops.length)];
            Fuzz.check("native-boundary/checked-backend", "seed " + s, () -> {
                try {
                    op.execute();
                } catch (IllegalStateException e) {
                    throw new IllegalArgumentException(e.getMessage());
                } catch (Throwable e) {
                    if (e instanceof RuntimeException re) throw re;
                    throw new AssertionError(e);
                }
                return null;
            });
        } finally {
            owned.forEach(Tensor::close);
        }
    }
}
