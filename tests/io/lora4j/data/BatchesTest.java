package io.lora4j.data;

import static io.lora4j.data.DataTesting.write;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BatchesTest {
    static final int PAD = 0, X = Example.IGNORE_INDEX;

    @TempDir
    Path dir;

    @Test
    void packedSequencesKeepRowsApart() {
        Example a = new Example(new int[] {1, 10, 11}, new int[] {X, 10, 11});
        Example b = new Example(new int[] {1, 20, 21, 22}, new int[] {X, X, 21, 22});
        Example c = new Example(new int[] {1, 30}, new int[] {1, 30});
        List<Batches.Packed> packs = Batches.pack(List.of(a, b, c), 8);
        assertEquals(2, packs.size(), "a+b fill 7 of 8; c starts a new sequence");
        assertEquals(List.of(a, b), packs.get(0).parts());
        Batch batch = Batches.packedBatch(packs, PAD);
        assertArrayEquals(new int[] {1, 10, 11, 1, 20, 21, 22}, batch.inputIds()[0]);
        assertArrayEquals(new int[] {0, 1, 2, 0, 1, 2, 3}, batch.positions()[0], "positions restart per row");
        assertArrayEquals(new int[] {1, 1, 1, 2, 2, 2, 2}, batch.segments()[0]);
        assertArrayEquals(new int[] {10, 11, X, X, 21, 22, X}, batch.targets()[0], "no target across the boundary");
        assertArrayEquals(new int[] {1, 30, PAD, PAD, PAD, PAD, PAD}, batch.inputIds()[1]);
        assertArrayEquals(new int[] {30, X, X, X, X, X, X}, batch.targets()[1]);
        assertArrayEquals(new int[] {1, 1, 0, 0, 0, 0, 0}, batch.segments()[1], "padding is segment 0");
        assertEquals(a.predictedTokens() + b.predictedTokens() + c.predictedTokens(), batch.targetTokens());
        assertEquals(batch.targetTokens(), packs.get(0).predictedTokens() + packs.get(1).predictedTokens());
    }

    @Test
    void paddedBatchesAndHfStepAccounting() {
        List<Example> rows = new ArrayList<>();
        for (int i = 0; i < 5; i++) rows.add(Example.allTokens(new int[] {1, 2 + i, 3 + i}));
        List<Batch> b = Batches.padded(rows, 2, PAD);
        assertEquals(3, b.size());
        assertEquals(1, b.get(2).rows());
        assertNull(b.get(0).segments());
        assertEquals(1, Batches.stepsPerEpoch(16, 2, 8));
        assertEquals(2, Batches.stepsPerEpoch(17, 2, 8));
        assertEquals(2, Batches.stepsPerEpoch(10, 2, 3), "ceil(10 / 6)");
        assertEquals(4, Batches.stepsPerEpoch(7, 2, 1));
        assertEquals(0, Batches.stepsPerEpoch(0, 2, 8));
        for (int n = 1; n < 60; n++)
            for (int bs = 1; bs < 5; bs++)
                for (int ga = 1; ga < 5; ga++)
                    assertEquals((int) Math.ceil(Math.ceil(n / (double) bs) / ga), Batches.stepsPerEpoch(n, bs, ga), "HF: ceil(len(dataloader) / GA)");
    }

    @Test
    void lengthGroupedOrderPutsTheLongestFirst() {
        int[] lengths = new int[250];
        Random r = new Random(1);
        for (int i = 0; i < lengths.length; i++) lengths[i] = 1 + r.nextInt(100);
        lengths[137] = 500;
        List<int[]> batches = Batches.lengthGrouped(lengths, 2, new Random(3407));
        assertEquals(137, batches.get(0)[0]);
        int seen = 0;
        for (int[] b : batches) {
            seen += b.length;
            assertTrue(b.length <= 2);
        }
        assertEquals(250, seen);
        // Within each megabatch (100 rows) lengths descend.
        int[] order = batches.stream().skip(1).flatMapToInt(Arrays::stream).toArray();
        int longer = 0;
        for (int i = 1; i < order.length; i++) if (lengths[order[i]] > lengths[order[i - 1]]) longer++;
        assertTrue(longer <= 4, "a rise only between megabatches (and around the swapped first batch): " + longer);
    }

    private DataPipeline pipeline(Path data, Object... kv) throws IOException {
        Map<String, Object> m = new HashMap<>();
        m.put("dataset", data.toString());
        for (int i = 0; i < kv.length; i += 2) m.put((String) kv[i], kv[i + 1]);
        return DataPipeline.build(DataConfig.fromMap(m), ToyTokenizer.chat(), null);
    }

    @Test
    void epochsShuffleSeededAndStepsGroupMicroBatches() throws IOException {
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 11; i++) lines.add("{\"text\": \"" + "x".repeat(1 + i) + "\"}");
        Path f = write(dir, "t.jsonl", lines.toArray(new String[0]));
        DataPipeline p = pipeline(f);
        List<Batch> e0 = p.batches(0, 2), e0again = p.batches(0, 2), e1 = p.batches(1, 2);
        assertEquals(6, e0.size());
        assertEquals(firstIds(e0), firstIds(e0again), "same seed and epoch, same order");
        assertNotEquals(firstIds(e0), firstIds(e1), "another epoch, another order");
        assertEquals(11, e0.stream().mapToInt(Batch::rows).sum());
        assertEquals(2, p.stepsPerEpoch(2, 4), "ceil(11 / 8)");
        List<List<Batch>> steps = p.steps(0, 2, 4);
        assertEquals(List.of(4, 2), steps.stream().map(List::size).toList());
        long targets = steps.stream().flatMap(List::stream).mapToLong(Batch::targetTokens).sum();
        assertEquals(p.stats().trainTargets(), targets, "every target of the epoch is in exactly one step");

        DataPipeline packed = pipeline(f, "packing", true, "max_seq_length", 16);
        assertEquals(packed.trainSequences(), packed.batches(0, 1).size());
        assertTrue(packed.trainSequences() < 11);
        assertEquals(packed.stats().trainTargets(), packed.batches(3, 2).stream().mapToLong(Batch::targetTokens).sum());
        for (Batch b : packed.batches(0, 2)) assertTrue(b.seqLen() <= 16);

        DataPipeline grouped = pipeline(f, "group_by_length", true);
        assertEquals(13, grouped.batches(0, 1).get(0).seqLen(), "the longest row (BOS + 11 + EOS) first");
    }

    private static List<Integer> firstIds(List<Batch> batches) {
        List<Integer> out = new ArrayList<>();
        for (Batch b : batches) out.add(b.inputIds()[0].length * 1000 + Arrays.hashCode(b.inputIds()[0]) % 1000);
        return out;
    }
}
