package io.lora4j.ops;

import static io.lora4j.nativeapi.Lora4jNative.*;
import static io.lora4j.nativeapi.Lora4jOpsNative.*;

import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.LongPointer;
import org.bytedeco.javacpp.Pointer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The CUDA backend: liblora4j's hand-written kernels on device 0, all queued on one stream.
 * Device memory comes from cudaMalloc and is counted by the tensor memory tracker.
 */
public final class CudaBackend implements Backend {
    /** lora4j_cuda_memcpy's kind (native/include/lora4j/runtime.h). */
    private static final int HOST_TO_DEVICE = 1, DEVICE_TO_HOST = 2;
    private final Pointer stream;
    private final String deviceInfo;
    /** The library runs the kernels on the SIMT emulator (native/emu), not on a GPU. */
    private final boolean emulated;
    /** Side stream of the asynchronous offload copies (created on first use). */
    private Pointer copyStream;
    /** Offloads whose device source may still be read by their device-to-host copy. */
    private final List<CudaOffload> draining = new ArrayList<>();
    /** Idle pinned host buffers by size, reused by later offloads (cudaHostAlloc costs ~ms). */
    private final Map<Long, ArrayDeque<Pointer>> pinnedPool = new HashMap<>();
    private long pinnedBytes;
    /**
     * Idle events, reused instead of destroyed. CUDA lets one destroy an event whose record is still
     * queued (its resources go once the record ran), but the emulator (native/emu) frees it at once
     * and the queued record then writes into freed memory; a pool is correct on both and spares
     * the creations.
     */
    private final ArrayDeque<Pointer> idleEvents = new ArrayDeque<>();

    /** Opens device 0; throws {@link IllegalStateException} when no usable device exists. */
    public CudaBackend() {
        NativeLibrary.load();
        int n = lora4j_cuda_device_count();
        if (n <= 0) throw new IllegalStateException("CUDA requested but unavailable: " + Backends.cudaProbeReason(n));
        lora4j_cuda_set_device(0);
        emulated = NativeLibrary.cudaEmulated();
        // the emulator names its device "lora4j cuda (emulated) <profile>, ...": say it once
        deviceInfo = lora4j_cuda_device_info(0).getString().replaceFirst("^lora4j cuda \\(emulated\\) ", "");
        stream = lora4j_cuda_stream_create();
    }

    @Override public Device device() { return Device.CUDA; }

    @Override public String description() { return (emulated ? "cuda (emulated) (" : "cuda (") + deviceInfo + ")"; }

    /** True when the kernels run on the SIMT emulator ({@code -Dlora4j.native=emu}), not on a GPU. */
    public boolean emulated() {
        return emulated;
    }

    @Override
    public Tensor allocate(DType dtype, MemoryCategory category, long... shape) {
        long bytes = dtype.byteSize(Tensor.numel(shape));
        Pointer p = lora4j_cuda_malloc(Math.max(1, bytes));
        // on the compute stream: it is non-blocking, so a memset on the legacy default stream
        // would be unordered with the kernels that write this tensor next
        lora4j_cuda_memset(p, 0, bytes, stream);
        return Tensor.ofDevice(dtype, Device.CUDA, category, p, q -> lora4j_cuda_free(q), shape);
    }

    @Override
    public Tensor upload(Tensor host, MemoryCategory category) {
        host.requireHost();
        Tensor t = allocate(host.dtype(), category, host.shape());
        lora4j_cuda_memcpy(t.pointer(), host.pointer(), host.bytes(), HOST_TO_DEVICE, stream); // after allocate's memset
        lora4j_cuda_stream_synchronize(stream); // the caller may free `host` on return
        return t;
    }

    @Override
    public Tensor download(Tensor t) {
        Tensor h = Tensor.allocate(t.dtype(), MemoryCategory.WORKSPACE, t.shape());
        lora4j_cuda_stream_synchronize(stream);
        lora4j_cuda_memcpy(h.pointer(), t.pointer(), t.bytes(), DEVICE_TO_HOST, null);
        return h;
    }

    @Override
    public void downloadInto(Tensor t, Tensor host) {
        lora4j_cuda_stream_synchronize(stream);
        lora4j_cuda_memcpy(host.pointer(), t.pointer(), t.bytes(), DEVICE_TO_HOST, null);
    }

    @Override
    public void synchronize() {
        lora4j_cuda_stream_synchronize(stream);
    }

    @Override
    public void nf4Quantize(Tensor w, int blocksize, Tensor packed, Tensor absmax) {
        lora4j_cuda_nf4_quantize(w.pointer(), NativeDTypes.code(w.dtype()), w.numel(), blocksize,
                packed.pointer(), absmax.pointer(), stream);
    }

    @Override
    public void nf4Dequantize(Tensor packed, Tensor absmax, long n, int blocksize, Tensor out) {
        lora4j_cuda_nf4_dequantize(packed.pointer(), absmax.pointer(), n, blocksize, out.pointer(), stream);
    }

    @Override
    public float nf4DoubleQuant(Tensor absmax, Tensor qabsmax, Tensor nestedAbsmax) {
        Tensor offset = allocate(DType.F32, MemoryCategory.WORKSPACE, 1);
        try (offset; FloatPointer host = new FloatPointer(1)) {
            lora4j_cuda_nf4_double_quant(absmax.pointer(), absmax.numel(), qabsmax.pointer(),
                    nestedAbsmax.pointer(), offset.pointer(), stream);
            lora4j_cuda_stream_synchronize(stream);
            lora4j_cuda_memcpy(host, offset.pointer(), 4, DEVICE_TO_HOST, null);
            return host.get();
        }
    }

    @Override
    public void nf4DequantAbsmax(Tensor qabsmax, Tensor nestedAbsmax, float offset, Tensor absmax) {
        lora4j_cuda_nf4_dequant_absmax(qabsmax.pointer(), nestedAbsmax.pointer(), offset, qabsmax.numel(),
                absmax.pointer(), stream);
    }

    @Override
    public void nf4MatmulFwd(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y) {
        lora4j_cuda_nf4_matmul_fwd(x.pointer(), x.dim(0), x.dim(1), out, packed.pointer(), absmax.pointer(),
                blocksize, y.pointer(), stream);
    }

    /** CUDA's NF4 product already rounds x and the dequantized weight to bf16 (nf4.cu): the same kernel. */
    @Override
    public void nf4MatmulFwdBf16(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y) {
        nf4MatmulFwd(x, packed, absmax, blocksize, out, y);
    }

    @Override
    public void nf4MatmulBwdInput(Tensor dy, Tensor packed, Tensor absmax, int blocksize, long in, Tensor dx) {
        lora4j_cuda_nf4_matmul_bwd_input(dy.pointer(), dy.dim(0), in, dy.dim(1), packed.pointer(),
                absmax.pointer(), blocksize, dx.pointer(), stream);
    }
    @Override
    public void nf4DqMatmulFwd(Tensor x, Tensor packed, Tensor qabsmax, Tensor nested, float offset, int blocksize, long out,
            Tensor y) {
        lora4j_cuda_nf4_dq_matmul_fwd(x.pointer(), x.dim(0), x.dim(1), out, packed.pointer(), qabsmax.pointer(), nested.pointer(),
                offset, blocksize, y.pointer(), stream);
    }

    @Override
    public void nf4DqMatmulBwdInput(Tensor dy, Tensor packed, Tensor qabsmax, Tensor nested, float offset, int blocksize, long in,
            Tensor dx) {
        lora4j_cuda_nf4_dq_matmul_bwd_input(dy.pointer(), dy.dim(0), in, dy.dim(1), packed.pointer(), qabsmax.pointer(),
                nested.pointer(), offset, blocksize, dx.pointer(), stream);
    }

    // ---- dense and transformer ops ----
    private static Pointer p(Tensor t) {
        return t == null ? null : t.pointer();
    }

    @Override
    public void sgemm(boolean transA, boolean transB, long m, long n, long k, float alpha, Tensor a, long lda,
            Tensor b, long ldb, float beta, Tensor c, long ldc) {
        lora4j_cuda_gemm_w(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a.pointer(), lda, b.pointer(),
                NativeDTypes.code(b.dtype()), ldb, beta, c.pointer(), ldc, stream);
    }

    @Override
    public void axpy(float alpha, Tensor x, Tensor y) {
        lora4j_cuda_axpy(x.numel(), alpha, x.pointer(), y.pointer(), stream);
    }

    @Override
    public void rmsnormFwd(Tensor x, Tensor w, float eps, Tensor y, Tensor rstd) {
        lora4j_cuda_rmsnorm_fwd(x.pointer(), w.pointer(), x.dim(0), x.dim(1), eps, y.pointer(), rstd.pointer(), stream);
    }

    @Override
    public void rmsnormBwd(Tensor dy, Tensor x, Tensor w, Tensor rstd, Tensor dx, Tensor dw) {
        lora4j_cuda_rmsnorm_bwd(dy.pointer(), x.pointer(), w.pointer(), rstd.pointer(), x.dim(0), x.dim(1),
                dx.pointer(), p(dw), stream);
    }

    @Override
    public void ropeFwd(Tensor x, Tensor y, Tensor pos, Tensor invFreq, long heads, long headDim) {
        lora4j_cuda_rope_fwd(x.pointer(), y.pointer(), pos.pointer(), invFreq.pointer(), pos.numel(), heads, headDim, stream);
    }

    @Override
    public void ropeBwd(Tensor dy, Tensor dx, Tensor pos, Tensor invFreq, long heads, long headDim) {
        lora4j_cuda_rope_bwd(dy.pointer(), dx.pointer(), pos.pointer(), invFreq.pointer(), pos.numel(), heads, headDim, stream);
    }

    @Override
    public void attentionFwd(Tensor q, Tensor k, Tensor v, Tensor seg, long batch, long seq, long hq, long hkv,
            long headDim, float softcap, Tensor out, Tensor lse) {
        lora4j_cuda_attention_fwd(q.pointer(), k.pointer(), v.pointer(), p(seg), batch, seq, hq, hkv, headDim, softcap,
                out.pointer(), lse.pointer(), stream);
    }

    @Override
    public void attentionBwd(Tensor q, Tensor k, Tensor v, Tensor out, Tensor dout, Tensor lse, Tensor seg,
            long batch, long seq, long hq, long hkv, long headDim, float softcap, Tensor dq, Tensor dk, Tensor dv) {
        lora4j_cuda_attention_bwd(q.pointer(), k.pointer(), v.pointer(), out.pointer(), dout.pointer(), lse.pointer(),
                p(seg), batch, seq, hq, hkv, headDim, softcap, dq.pointer(), dk.pointer(), dv.pointer(), stream);
    }

    @Override
    public void attentionDecode(Tensor q, Tensor kCache, Tensor vCache, long batch, long len, long cacheLen,
            long hq, long hkv, long headDim, float softcap, Tensor out) {
        lora4j_cuda_attention_decode(q.pointer(), kCache.pointer(), vCache.pointer(), batch, len, cacheLen, hq, hkv,
                headDim, softcap, out.pointer(), stream);
    }

    @Override
    public void softcapFwd(Tensor x, float cap, Tensor y) {
        lora4j_cuda_softcap_fwd(x.pointer(), x.numel(), cap, y.pointer(), stream);
    }

    @Override
    public void softcapBwd(Tensor dy, Tensor x, float cap, Tensor dx) {
        lora4j_cuda_softcap_bwd(dy.pointer(), x.pointer(), x.numel(), cap, dx.pointer(), stream);
    }

    @Override
    public void decodeMatvec(Tensor x, Tensor w, boolean accumulate, Tensor y) {
        lora4j_cuda_decode_matvec(x.pointer(), w.dim(1), w.pointer(), CpuBackend.decodeWeightType(w.dtype()), w.dim(0),
                accumulate ? 1 : 0, y.pointer(), stream);
    }

    @Override
    public void decodeGateUp(Tensor x, Tensor wGate, Tensor wUp, Tensor s) {
        lora4j_cuda_decode_gate_up(x.pointer(), wGate.dim(1), wGate.pointer(), wUp.pointer(),
                CpuBackend.decodeWeightType(wGate.dtype()), wGate.dim(0), s.pointer(), stream);
    }

    @Override
    public void decodeAttention(Tensor q, Tensor k, Tensor v, int position, Tensor invFreq, Tensor kCache, Tensor vCache,
            long start, long hq, long hkv, long headDim, Tensor out) {
        lora4j_cuda_decode_attention(q.pointer(), k.pointer(), v.pointer(), position, invFreq.pointer(), kCache.pointer(),
                vCache.pointer(), kCache.dim(0), start, hq, hkv, headDim, out.pointer(), stream);
    }

    @Override
    public void decodeEmbedding(Tensor table, int token, Tensor out) {
        if (table.dtype() == DType.BF16) { // the row, widened: the decode kernel reads fp32 tables
            try (Tensor row = table.slice((long) token * table.dim(1), table.dim(1))) {
                lora4j_cuda_widen_f32(row.pointer(), 1, row.numel(), out.pointer(), stream);
            }
        }
        else lora4j_cuda_decode_embedding(table.pointer(), table.dim(0), table.dim(1), token, out.pointer(), stream);
    }

    @Override
    public void swigluFwd(Tensor gate, Tensor up, Tensor h) {
        lora4j_cuda_swiglu_fwd(gate.pointer(), up.pointer(), gate.numel(), h.pointer(), stream);
    }

    @Override
    public void swigluBwd(Tensor dh, Tensor gate, Tensor up, Tensor dgate, Tensor dup) {
        lora4j_cuda_swiglu_bwd(dh.pointer(), gate.pointer(), up.pointer(), gate.numel(), dgate.pointer(), dup.pointer(), stream);
    }

    @Override
    public void gegluFwd(Tensor gate, Tensor up, Tensor h) {
        lora4j_cuda_geglu_fwd(gate.pointer(), up.pointer(), gate.numel(), h.pointer(), stream);
    }

    @Override
    public void gegluBwd(Tensor dh, Tensor gate, Tensor up, Tensor dgate, Tensor dup) {
        lora4j_cuda_geglu_bwd(dh.pointer(), gate.pointer(), up.pointer(), gate.numel(), dgate.pointer(), dup.pointer(), stream);
    }

    @Override
    public void embeddingFwd(Tensor ids, Tensor table, Tensor out) {
        lora4j_cuda_embedding_w_fwd(ids.pointer(), table.pointer(), NativeDTypes.code(table.dtype()), ids.numel(), table.dim(1),
                table.dim(0), out.pointer(), stream);
    }

    @Override
    public void crossEntropyFwd(Tensor logits, Tensor labels, Tensor loss, Tensor lossSum) {
        lora4j_cuda_ce_fwd(logits.pointer(), labels.pointer(), logits.dim(0), logits.dim(1), loss.pointer(), p(lossSum), stream);
    }

    @Override
    public void crossEntropyBwd(Tensor logits, Tensor labels, float scale, Tensor dlogits) {
        lora4j_cuda_ce_bwd(logits.pointer(), labels.pointer(), logits.dim(0), logits.dim(1), scale, dlogits.pointer(), stream);
    }

    @Override
    public void loraFwd(Tensor x, Tensor w, Tensor a, Tensor b, Tensor dropMask, float scale, Tensor y, Tensor xa) {
        if (w != null && w.dtype() == DType.BF16) { // the base product on the bf16 weight, then the LoRA term added
            sgemm(false, true, x.dim(0), b.dim(0), x.dim(1), 1f, x, x.dim(1), w, x.dim(1), 0f, y, b.dim(0));
            w = null;
        }
        lora4j_cuda_lora_fwd(x.pointer(), p(w), a.pointer(), b.pointer(), p(dropMask), x.dim(0), x.dim(1), b.dim(0),
                a.dim(0), scale, y.pointer(), xa.pointer(), stream);
    }

    @Override
    public void loraBwd(Tensor dy, Tensor x, Tensor w, Tensor a, Tensor b, Tensor dropMask, Tensor xa, float scale,
            Tensor dx, boolean accumulateDx, Tensor da, Tensor db, Tensor workspace) {
        if (w != null && w.dtype() == DType.BF16) { // dX = [dX +] dY·W on the bf16 weight; the fused op adds the LoRA part
            if (dx != null) sgemm(false, false, x.dim(0), x.dim(1), b.dim(0), 1f, dy, b.dim(0), w, x.dim(1), accumulateDx ? 1f : 0f, dx, x.dim(1));
            w = null;
            accumulateDx = true;
        }
        lora4j_cuda_lora_bwd(dy.pointer(), x.pointer(), p(w), a.pointer(), b.pointer(), p(dropMask), xa.pointer(),
                x.dim(0), x.dim(1), b.dim(0), a.dim(0), scale, p(dx), accumulateDx ? 1 : 0, p(da), p(db),
                workspace.pointer(), stream);
    }

    @Override
    public void dropoutMask(long seed, float prob, Tensor mask) {
        lora4j_cuda_dropout_mask(seed, mask.numel(), prob, mask.pointer(), stream);
    }

    @Override
    public void adamwStep(Tensor p, Tensor grad, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps,
            float weightDecay, long step, float gradScale) {
        lora4j_cuda_adamw_step(p.pointer(), grad.pointer(), m.pointer(), v.pointer(), p.numel(), lr, beta1, beta2, eps,
                weightDecay, step, gradScale, stream);
    }

    @Override
    public double sumOfSquares(Tensor x) {
        Tensor acc = allocate(DType.F32, MemoryCategory.WORKSPACE, 2); // one double, zeroed
        try (acc; DoublePointer host = new DoublePointer(1)) {
            lora4j_cuda_sumsq(x.pointer(), x.numel(), acc.pointer(), stream);
            lora4j_cuda_stream_synchronize(stream);
            lora4j_cuda_memcpy(host, acc.pointer(), 8, DEVICE_TO_HOST, null);
            return host.get();
        }
    }

    @Override
    public void crossEntropyChunkStats(Tensor logits, Tensor labels, long v0, boolean first, Tensor rowMax,
            Tensor rowSum, Tensor targetLogit) {
        lora4j_cuda_ce_chunk_stats(logits.pointer(), labels.pointer(), logits.dim(0), logits.dim(1), v0, first ? 1 : 0,
                rowMax.pointer(), rowSum.pointer(), targetLogit.pointer(), stream);
    }

    @Override
    public void crossEntropyChunkFinalize(Tensor labels, Tensor rowMax, Tensor rowSum, Tensor targetLogit, Tensor lse,
            Tensor loss, Tensor lossSum) {
        lora4j_cuda_ce_chunk_finalize(labels.pointer(), rowMax.pointer(), rowSum.pointer(), targetLogit.pointer(),
                labels.numel(), lse.pointer(), loss.pointer(), p(lossSum), stream);
    }

    @Override
    public void crossEntropyChunkGrad(Tensor logits, Tensor labels, long v0, Tensor lse, float scale) {
        lora4j_cuda_ce_chunk_grad(logits.pointer(), labels.pointer(), logits.dim(0), logits.dim(1), v0, lse.pointer(),
                scale, stream);
    }

    // ---- asynchronous offload ----
    //
    // Device->host: an event recorded on the compute stream after the layer's forward; the copy
    // stream waits on it and copies into a pinned buffer, then records `copied`. The device source
    // is freed at the next offload (one layer later), after the compute stream was made to wait on
    // `copied`, so no later kernel can reuse that memory before the copy read it.
    // Host->device (prefetch): the copy stream copies into a fresh device tensor and records
    // `fetched`; await makes the compute stream wait on `fetched`. All copies touching pinned
    // buffers run on the one copy stream, so a pooled buffer is never rewritten before an earlier
    // copy from it finished.

    private final class CudaOffload implements Offloaded {
        final Tensor host;
        Tensor source, fetched;
        Pointer copiedEvent, fetchedEvent;
        boolean claimed;

        CudaOffload(Tensor host, Tensor source) {
            this.host = host;
            this.source = source;
        }

        @Override public Tensor host() { return host; }

        void releaseSource() {
            if (source == null) return;
            lora4j_cuda_stream_wait_event(stream, copiedEvent);
            source.close();
            source = null;
        }

        @Override
        public void close() {
            draining.remove(this);
            releaseSource();
            if (fetched != null && !claimed) {
                lora4j_cuda_stream_wait_event(stream, fetchedEvent);
                fetched.close();
            }
            fetched = null;
            recycle(copiedEvent);
            recycle(fetchedEvent);
            copiedEvent = fetchedEvent = null;
        }
    }

    private Pointer event() {
        Pointer e = idleEvents.poll();
        return e != null ? e : lora4j_cuda_event_create();
    }

    private void recycle(Pointer event) {
        if (event != null) idleEvents.push(event);
    }

    private Pointer copyStream() {
        if (copyStream == null) copyStream = lora4j_cuda_stream_create();
        return copyStream;
    }

    /** A pinned host tensor (OFFLOADED) from the pool; closing it returns the buffer to the pool. */
    private Tensor pinned(DType dtype, long... shape) {
        long bytes = Math.max(1, dtype.byteSize(Tensor.numel(shape)));
        ArrayDeque<Pointer> free = pinnedPool.get(bytes);
        Pointer p = free == null ? null : free.poll();
        if (p == null) {
            p = lora4j_cuda_host_alloc(bytes);
            pinnedBytes += bytes;
        }
        return Tensor.ofDevice(dtype, Device.CPU, MemoryCategory.OFFLOADED, p,
                q -> pinnedPool.computeIfAbsent(bytes, k -> new ArrayDeque<>()).push(q), shape);
    }

    @Override
    public Offloaded offloadAsync(Tensor x) {
        if (x.device() != Device.CUDA) throw new IllegalArgumentException("offloadAsync needs a CUDA tensor, got " + x);
        for (CudaOffload o : draining) o.releaseSource(); // copies queued a layer ago
        draining.clear();
        Pointer side = copyStream();
        CudaOffload o = new CudaOffload(pinned(x.dtype(), x.shape()), x);
        Pointer produced = event();
        try {
            lora4j_cuda_event_record(produced, stream);
            lora4j_cuda_stream_wait_event(side, produced); // the wait captures this record
        } finally {
            recycle(produced);
        }
        lora4j_cuda_memcpy(o.host.pointer(), x.pointer(), x.bytes(), DEVICE_TO_HOST, side);
        o.copiedEvent = event();
        lora4j_cuda_event_record(o.copiedEvent, side);
        draining.add(o);
        return o;
    }

    @Override
    public void prefetch(Offloaded h) {
        CudaOffload o = (CudaOffload) h;
        if (o.fetched != null || o.claimed) return;
        for (CudaOffload d : draining) d.releaseSource();
        draining.clear();
        Pointer p = lora4j_cuda_malloc(Math.max(1, o.host.bytes())); // fully overwritten: no memset
        o.fetched = Tensor.ofDevice(o.host.dtype(), Device.CUDA, MemoryCategory.CHECKPOINTS, p, q -> lora4j_cuda_free(q),
                o.host.shape());
        lora4j_cuda_memcpy(o.fetched.pointer(), o.host.pointer(), o.host.bytes(), HOST_TO_DEVICE, copyStream());
        o.fetchedEvent = event();
        lora4j_cuda_event_record(o.fetchedEvent, copyStream());
    }

    @Override
    public Tensor await(Offloaded h) {
        CudaOffload o = (CudaOffload) h;
        if (o.claimed) throw new IllegalStateException("this offloaded tensor was already awaited");
        prefetch(o);
        lora4j_cuda_stream_wait_event(stream, o.fetchedEvent);
        o.claimed = true;
        return o.fetched;
    }

    /** Pinned host bytes held for offloads (live OFFLOADED tensors plus idle pooled buffers). */
    public long pinnedHostBytes() {
        return pinnedBytes;
    }

    /**
     * Device memory as the driver sees it (cudaMemGetInfo): {free, total} bytes. total − free is
     * what this process (and any other) holds, to set beside {@code MemoryTracker}'s CUDA figures:
     * the difference is the CUDA context, cudaMalloc rounding and fragmentation.
     */
    public long[] deviceMemoryInfo() {
        try (LongPointer out = new LongPointer(2)) {
            lora4j_cuda_mem_info(out);
            return new long[] {out.get(0), out.get(1)};
        }
    }

    /** total − free of {@link #deviceMemoryInfo()}, in bytes. */
    public long usedDeviceBytes() {
        long[] m = deviceMemoryInfo();
        return m[1] - m[0];
    }
}
