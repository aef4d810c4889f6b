package io.lora4j.tensor;

import java.util.EnumMap;
import java.util.Map;

/**
 * Live and peak bytes per {@link MemoryCategory} and {@link Device}, plus the peak of the total.
 * Every {@link Tensor} allocation and release goes through {@link #GLOBAL}. Thread-safe.
 */
public final class MemoryTracker {
    /** The tracker every tensor reports to. */
    public static final MemoryTracker GLOBAL = new MemoryTracker();

    private final long[][] live = new long[Device.values().length][MemoryCategory.values().length];
    private final long[][] peak = new long[Device.values().length][MemoryCategory.values().length];
    private final long[] liveTotal = new long[Device.values().length];
    private final long[] peakTotal = new long[Device.values().length];

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

    /** Peak bytes per category on {@code d}. */
    public synchronized Map<MemoryCategory, Long> peaks(Device d) {
        Map<MemoryCategory, Long> m = new EnumMap<>(MemoryCategory.class);
        for (MemoryCategory c : MemoryCategory.values()) m.put(c, peak[d.ordinal()][c.ordinal()]);
        return m;
    }

    /** Restarts peak tracking from the current live figures (e.g. at the start of a run). */
    public synchronized void resetPeaks() {
        for (int d = 0; d < peak.length; d++) {
            System.arraycopy(live[d], 0, peak[d], 0, live[d].length);
            peakTotal[d] = liveTotal[d];
        }
    }
}
