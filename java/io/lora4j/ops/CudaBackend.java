package io.lora4j.ops;

import static io.lora4j.nativeapi.Lora4jNative.*;

import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import org.bytedeco.javacpp.LongPointer;
import org.bytedeco.javacpp.Pointer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The CUDA backend: liblora4j's hand-written kernels on one device (0, or a data-parallel rank's local
 * rank: {@link CudaDevices}), all queued on one stream. The ops are {@link NativeBackend}'s over the CUDA
 * entries; this class holds what is particular to the device: memory from cudaMalloc (counted by the tensor
 * memory tracker), copies, the stream, and the offload's side stream.
 */
public final class CudaBackend extends NativeBackend {
    /** lora4j_cuda_memcpy's kind (native/include/lora4j/runtime.h). */
    private static final int HOST_TO_DEVICE = 1, DEVICE_TO_HOST = 2;
    private final Pointer stream;
    private final String deviceInfo;
    /** The device's ordinal among the visible ones (see {@link CudaDevices}). */
    private final int ordinal;
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

    /**
     * Opens the device {@link CudaDevices} chose (0 unless a data-parallel rank asked for its local
     * rank's); throws {@link IllegalStateException} when no usable device exists or that one is not visible.
     */
    public CudaBackend() {
        this(openDevice());
    }

    private CudaBackend(Opened device) {
        super(new KernelEntries.Cuda(device.stream()));
        this.stream = device.stream();
        this.ordinal = device.ordinal();
        emulated = NativeLibrary.cudaEmulated();
        // the emulator names its device "lora4j cuda (emulated) <profile>, ...": say it once
        deviceInfo = lora4j_cuda_device_info(ordinal).getString().replaceFirst("^lora4j cuda \\(emulated\\) ", "");
    }

    /** The device ordinal chosen and the stream every op of this backend is queued on. */
    private record Opened(int ordinal, Pointer stream) {}

    /** Selects the device {@link CudaDevices} chose and returns it with a new stream on it. */
    private static Opened openDevice() {
        NativeLibrary.load();
        int n = lora4j_cuda_device_count();
        if (n <= 0) throw new IllegalStateException("CUDA requested but unavailable: " + Backends.cudaProbeReason(n));
        int ordinal = CudaDevices.open(n);
        lora4j_cuda_set_device(ordinal);
        return new Opened(ordinal, lora4j_cuda_stream_create());
    }

    @Override public Device device() { return Device.CUDA; }

    /** The stream every op of this backend is queued on (the data-parallel all-reduce joins it: {@link Nccl}). */
    Pointer stream() { return stream; }

    /** The device's ordinal among the visible ones. */
    int ordinal() { return ordinal; }

    @Override public String description() {
        return (ordinal == 0 ? "cuda" : "cuda:" + ordinal) + (emulated ? " (emulated) (" : " (") + deviceInfo + ")";
    }

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

    /** A zeroed device buffer for the kernel, then a copy to the host after the stream drained. */
    @Override
    void resultToHost(long bytes, Consumer<Pointer> kernel, Pointer host) {
        Tensor result = allocate(DType.F32, MemoryCategory.WORKSPACE, (bytes + Float.BYTES - 1) / Float.BYTES);
        try (result) {
            kernel.accept(result.pointer());
            lora4j_cuda_stream_synchronize(stream);
            lora4j_cuda_memcpy(host, result.pointer(), bytes, DEVICE_TO_HOST, null);
        }
    }

    /** CUDA's NF4 product already rounds x and the dequantized weight to bf16 (nf4.cu): the same kernel. */
    @Override
    public void nf4MatmulFwdBf16(Tensor x, Tensor packed, Tensor absmax, int blocksize, long out, Tensor y) {
        nf4MatmulFwd(x, packed, absmax, blocksize, out, y);
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
