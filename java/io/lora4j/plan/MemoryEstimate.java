package io.lora4j.plan;

import io.lora4j.tensor.MemoryCategory;
import java.util.Collections;
import java.util.EnumMap;
import java.util.Map;

/**
 * The predicted memory of one training configuration, in bytes, as lora4j's
 * {@link io.lora4j.tensor.MemoryTracker} would count it on the training device.
 *
 * @param settings  what was planned
 * @param peaks     per category: the highest live bytes over a whole optimizer step (categories peak
 *                  at different moments, so these do not sum to {@code peakTotal}); on CUDA the
 *                  OFFLOADED figure is host memory
 * @param atPeak    per category: the live bytes at the moment of the device's peak total (these sum
 *                  to {@code peakTotal})
 * @param peakTotal the device's peak of all categories together
 * @param hostPeak  on CUDA, the peak of host memory the step uses (offloaded layer inputs and
 *                  staging copies); 0 on the CPU, where everything is in {@code peakTotal}
 */
public record MemoryEstimate(PlanSettings settings, Map<MemoryCategory, Long> peaks, Map<MemoryCategory, Long> atPeak, long peakTotal,
        long hostPeak) {

    public MemoryEstimate {
        peaks = Collections.unmodifiableMap(new EnumMap<>(peaks));
        atPeak = Collections.unmodifiableMap(new EnumMap<>(atPeak));
    }

    /** The category's peak (0 when it never allocates). */
    public long peak(MemoryCategory c) {
        return peaks.getOrDefault(c, 0L);
    }

    /** The training state without the base weights: peak total minus the weights (live throughout). */
    public long peakTotalWithoutWeights() {
        return peakTotal - atPeak.getOrDefault(MemoryCategory.WEIGHTS, 0L);
    }
}
