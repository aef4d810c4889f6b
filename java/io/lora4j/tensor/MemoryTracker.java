package io.lora4j.tensor;

import java.util.EnumMap;
import java.util.Map;

/**
 * Live and peak bytes per {@link MemoryCategory} and {@link Device}, plus the peak of the total.
 * Every {@link Tensor} allocation and release goes through {@link #GLOBAL}: these "allocated"
 * figures are the tensors' own bytes, whatever allocator serves them. Apart from them, like
 * torch's {@code memory_reserved} beside {@code memory_allocated}, the tracker keeps what the
 * caching allocators hold from the system ({@link #reserved}: blocks in use rounded up to their
 * size class, plus free cached blocks; {@link #cached}: the free ones alone) and the reserved
 * peak. Thread-safe.
 */
public final class MemoryTracker {
    /** The tracker every tensor reports to. */
    public static final MemoryTracker GLOBAL = new MemoryTracker();

    private final long[][] live = new long[Device.values().length][MemoryCategory.values().length];
    private final long[][] peak = new long[Device.values().length][MemoryCategory.values().length];
    private final long[] liveTotal = new long[Device.values().length];
    private final long[] peakTotal = new long[Device.values().length];
    private final long[] reserved = new long[Device.values().length];
    private final long[] cached = new long[Device.values().length];
    private final long[] peakReserved = new long[Device.values().length];

    synchronized void allocated(Device d, MemoryCategory c, long bytes) {
        int di = d.ordinal(), ci = c.ordinal();
        live[di][ci] += bytes;
        peak[di][ci] = Math.max(peak[di][ci], live[di][ci]);
        liveTotal[di] += bytes;
        peakTotal[di] = Math.max(peakTotal[di], liveTotal[di]);
    }

    synchronized void released(Device d, MemoryCategory c, long bytes) {
        live[d.ordinal()][c.ordinal()] -= bytes;
        liveTotal[d.ordinal()] -= bytes;
    }

    /** A caching allocator's reserved and cached bytes on {@code d} changed by these amounts. */
    synchronized void reservedChanged(Device d, long reservedDelta, long cachedDelta) {
        int di = d.ordinal();
        reserved[di] += reservedDelta;
        cached[di] += cachedDelta;
        peakReserved[di] = Math.max(peakReserved[di], reserved[di]);
    }

    public synchronized long live(Device d, MemoryCategory c) {
        return live[d.ordinal()][c.ordinal()];
    }

    public synchronized long peak(Device d, MemoryCategory c) {
        return peak[d.ordinal()][c.ordinal()];
    }

    public synchronized long liveTotal(Device d) {
        return liveTotal[d.ordinal()];
    }

    public synchronized long peakTotal(Device d) {
        return peakTotal[d.ordinal()];
    }

    /** Bytes the caching allocator of {@code d} holds from the system: in use and cached. */
    public synchronized long reserved(Device d) {
        return reserved[d.ordinal()];
    }

    /** Bytes of free blocks in the cache of {@code d} (part of {@link #reserved}). */
    public synchronized long cached(Device d) {
        return cached[d.ordinal()];
    }

    /** The peak of {@link #reserved} since start or the last {@link #resetPeaks}. */
    public synchronized long peakReserved(Device d) {
        return peakReserved[d.ordinal()];
    }

    /** Peak bytes per category on {@code d}. */
    public synchronized Map<MemoryCategory, Long> peaks(Device d) {
        Map<MemoryCategory, Long> m = new EnumMap<>(MemoryCategory.class);
        for (MemoryCategory c : MemoryCategory.values()) m.put(c, peak[d.ordinal()][c.ordinal()]);
        return m;
    }

    /** Restarts peak tracking from the current live and reserved figures (e.g. at the start of a run). */
    public synchronized void resetPeaks() {
        for (int d = 0; d < peak.length; d++) {
            System.arraycopy(live[d], 0, peak[d], 0, live[d].length);
            peakTotal[d] = liveTotal[d];
            peakReserved[d] = reserved[d];
        }
    }
}
