package io.lora4j.plan;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/** The optimizer windows the planner tests train on: micro-batches of random token rows, every token a target. */
public final class RandomWindows {
    private RandomWindows() {}

    /** {@code microBatches} batches of {@code batch} rows of {@code seq} ids in [1, vocab). */
    public static List<Batch> of(int microBatches, int batch, int seq, int vocab, Random r) {
        List<Batch> window = new ArrayList<>();
        for (int g = 0; g < microBatches; g++) {
            List<Example> rows = new ArrayList<>();
            for (int b = 0; b < batch; b++) {
                int[] ids = new int[seq];
                for (int i = 0; i < ids.length; i++) ids[i] = 1 + r.nextInt(vocab - 1);
                rows.add(Example.allTokens(ids));
            }
            window.add(Batch.of(rows, 0));
        }
        return window;
    }
}
