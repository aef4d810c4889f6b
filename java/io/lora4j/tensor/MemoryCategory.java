package io.lora4j.tensor;

import com.google.gson.JsonObject;
import java.util.Locale;
import java.util.Map;

/** What an allocation holds; {@link MemoryTracker} counts live and peak bytes per category. */
public enum MemoryCategory {
    WEIGHTS, LORA, GRADS, OPTIMIZER, ACTIVATIONS, CHECKPOINTS, OFFLOADED, WORKSPACE, LOGITS;

    /** The key of this category in JSON output (metrics.jsonl, plan --json): the lower-case name. */
    public String jsonKey() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** Bytes per category as a JSON object keyed by {@link #jsonKey()}, in the map's order. */
    public static JsonObject toJson(Map<MemoryCategory, ? extends Number> bytes) {
        JsonObject o = new JsonObject();
        for (Map.Entry<MemoryCategory, ? extends Number> e : bytes.entrySet()) o.addProperty(e.getKey().jsonKey(), e.getValue());
        return o;
    }
}
