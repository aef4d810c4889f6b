package io.lora4j.tensor;

import java.lang.management.ManagementFactory;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Pointer;

/**
 * The caching allocator behind every owned host {@link Tensor}, after PyTorch's CUDA caching
 * allocator: a closed tensor's block goes onto a free list of its size class instead of back to
 * the system, and the next tensor of that class takes it. A training step allocates and frees the
 * same ~200 shapes every step; without the cache each one cost a fresh malloc (glibc mmap for the
 * large ones: page faults and the kernel's zero-fill every step), JavaCPP's bookkeeping and a
 * memset (bench/results/2026-12-03-alloc.md).
 *
 * <p>Size classes: up to 4 KiB, multiples of 64 bytes; above, 8 classes per power of two (a
 * block is less than 12.5 % larger than the request; the untouched tail of a large block is never
 * faulted in), in steps of at most 2 MiB (a 1 GiB weight is not rounded up by 128 MiB: JavaCPP's
 * maxBytes counts a block's full size). Blocks are JavaCPP {@link BytePointer}s, so JavaCPP's {@code maxBytes} and
 * {@code maxPhysicalBytes} limits still see them; before a fresh block would cross either limit,
 * or when the system refuses one, the cache is emptied first.
 *
 * <p>What it counts: {@link MemoryTracker} keeps counting tensors' bytes ("allocated", which the
 * planner predicts) exactly as before; this allocator adds its <em>reserved</em> bytes (every block
 * it holds, in use or cached, as torch's {@code memory_reserved}) and its <em>cached</em> bytes
 * (free blocks) to the tracker under {@link Device#CPU}.
 *
 * <p>The cache holds at most {@link #cacheLimit()} free bytes (system property
 * {@value #LIMIT_PROPERTY}, bytes; default a quarter of physical memory; 0 = no caching); a block
 * that would exceed it is freed. {@link #emptyCache()} frees every cached block.
 *
 * <p>Debugging: with {@link #setPoison} on (or {@code -D}{@value #POISON_PROPERTY}{@code =true}),
 * {@link Tensor#empty} fills its bytes with 0xFF (NaN as F32, BF16 and F16; −1 as I32), and a
 * released block is filled the same way, so that a read of an element no op wrote, or of a closed
 * tensor, shows up as NaN. Thread-safe.
 */
public final class HostAllocator {
    /** System property: the most free bytes the cache keeps (default a quarter of physical memory). */
    public static final String LIMIT_PROPERTY = "lora4j.host_cache_bytes";
    /** System property: "true" fills uninitialised and released host memory with 0xFF. */
    public static final String POISON_PROPERTY = "lora4j.poison_uninitialized";

    /** The allocator every host tensor uses. */
    public static final HostAllocator GLOBAL = new HostAllocator(defaultLimit());

    private static final long SMALL = 4096, ALIGN = 64;
    private static final int CLASSES_PER_OCTAVE_LOG2 = 3;
    private static final long MAX_STEP = 2L << 20;

    private final Map<Long, ArrayDeque<BytePointer>> free = new HashMap<>();
    private final MemoryTracker tracker;
    private long limit, cached, reserved, hits, misses;
    private volatile boolean poison = Boolean.getBoolean(POISON_PROPERTY);

    HostAllocator(long limit) {
        this(limit, MemoryTracker.GLOBAL);
    }

    HostAllocator(long limit, MemoryTracker tracker) {
        this.limit = limit;
        this.tracker = tracker;
    }

    private static long defaultLimit() {
        String s = System.getProperty(LIMIT_PROPERTY);
        if (s != null) {
            try {
                long v = Long.parseLong(s.trim());
                if (v >= 0) return v;
            } catch (NumberFormatException ignored) {
                // fall through to the message below
            }
            throw new IllegalArgumentException("system property " + LIMIT_PROPERTY + " must be a byte count >= 0, got '" + s + "'");
        }
        java.lang.management.OperatingSystemMXBean os = ManagementFactory.getOperatingSystemMXBean();
        long total = os instanceof com.sun.management.OperatingSystemMXBean m ? m.getTotalMemorySize() : 0;
        return total > 0 ? total / 4 : 1L << 30;
    }

    /** The block size that serves a request of {@code bytes} (>= 1): its size class. */
    public static long blockSize(long bytes) {
        if (bytes <= SMALL) return Math.max(ALIGN, (bytes + ALIGN - 1) & -ALIGN);
        long step = Math.min(Long.highestOneBit(bytes - 1) >>> CLASSES_PER_OCTAVE_LOG2, MAX_STEP);
        return Math.addExact(bytes, step - 1) & -step;
    }

    /**
     * A block of {@link #blockSize}(bytes) bytes, contents unspecified (a cached block holds what
     * its last tensor left; poisoned when released in poison mode).
     *
     * @throws OutOfMemoryError when the system has no memory for it even after emptying the cache
     */
    synchronized BytePointer acquire(long bytes, MemoryCategory category) {
        long size = blockSize(Math.max(1, bytes));
        ArrayDeque<BytePointer> list = free.get(size);
        BytePointer p = list == null ? null : list.pollLast(); // the most recently freed: likeliest still in cache
        if (p != null) {
            hits++;
            cached -= size;
            tracker.reservedChanged(Device.CPU, 0, -size);
            return p;
        }
        misses++;
        if (cached > 0 && nearJavaCppLimits(size)) emptyCache();
        try {
            p = fresh(size);
        } catch (OutOfMemoryError e) {
            if (cached == 0) throw oom(bytes, category, e);
            emptyCache();
            try {
                p = fresh(size);
            } catch (OutOfMemoryError e2) {
                throw oom(bytes, category, e2);
            }
        }
        reserved += size;
        tracker.reservedChanged(Device.CPU, size, 0);
        return p;
    }

    /** Hands a block from {@link #acquire} back: cached, or freed when the cache is full. */
    synchronized void release(Pointer block, long bytes) {
        long size = blockSize(Math.max(1, bytes));
        BytePointer p = (BytePointer) block;
        if (poison) Pointer.memset(p, 0xFF, size);
        if (cached + size > limit) {
            p.close();
            reserved -= size;
            tracker.reservedChanged(Device.CPU, -size, 0);
            return;
        }
        p.position(0);
        free.computeIfAbsent(size, k -> new ArrayDeque<>()).addLast(p);
        cached += size;
        tracker.reservedChanged(Device.CPU, 0, size);
    }

    /** Frees every cached block (as torch.cuda.empty_cache); blocks in use are untouched. */
    public synchronized void emptyCache() {
        for (ArrayDeque<BytePointer> list : free.values())
            for (BytePointer p : list) p.close();
        free.clear();
        reserved -= cached;
        tracker.reservedChanged(Device.CPU, -cached, -cached);
        cached = 0;
    }

    /** The most free bytes the cache keeps. */
    public synchronized long cacheLimit() {
        return limit;
    }

    /** Sets {@link #cacheLimit()} (0 = no caching), freeing cached blocks beyond it. */
    public synchronized void setCacheLimit(long bytes) {
        if (bytes < 0) throw new IllegalArgumentException("cache limit must be >= 0, got " + bytes);
        limit = bytes;
        if (cached > limit) emptyCache();
    }

    /** Fills uninitialised and released host memory with 0xFF from now on (a debugging aid; see the class comment). */
    public void setPoison(boolean on) {
        poison = on;
    }

    /** True when {@link #setPoison} (or the system property) turned poisoning on. */
    public boolean poison() {
        return poison;
    }

    /** Bytes of every block held: in use (rounded up to their size class) and cached. */
    public synchronized long reservedBytes() {
        return reserved;
    }

    /** Bytes of the free blocks in the cache. */
    public synchronized long cachedBytes() {
        return cached;
    }

    /** Requests served from the cache since start. */
    public synchronized long hits() {
        return hits;
    }

    /** Requests that needed a fresh block from the system since start. */
    public synchronized long misses() {
        return misses;
    }

    /** True when a fresh block of {@code size} would take JavaCPP past its maxBytes or maxPhysicalBytes. */
    private static boolean nearJavaCppLimits(long size) {
        long maxBytes = Pointer.maxBytes(), maxPhysical = Pointer.maxPhysicalBytes();
        return (maxBytes > 0 && Pointer.totalBytes() + size > maxBytes)
                || (maxPhysical > 0 && Pointer.physicalBytes() + size > maxPhysical);
    }

    private static BytePointer fresh(long size) {
        BytePointer p = new BytePointer(size);
        if (p.isNull()) throw new OutOfMemoryError("malloc of " + size + " bytes returned null");
        return p;
    }

    private static OutOfMemoryError oom(long bytes, MemoryCategory category, OutOfMemoryError cause) {
        OutOfMemoryError e = new OutOfMemoryError("host allocation of " + bytes + " bytes for " + category + " failed: "
                + cause.getMessage());
        e.initCause(cause);
        return e;
    }
}
