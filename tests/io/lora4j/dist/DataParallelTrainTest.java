package io.lora4j.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.model.Assets;
import io.lora4j.tensor.Tensor;
import io.lora4j.cli.Main;
import io.lora4j.io.SafeTensors;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Data-parallel training on stories15M: 2 ranks × accumulation 8 against 1 process ×
 * accumulation 16, the same global batch of 16 rows of different lengths whose first tokens are
 * masked (-100, as a response-only mask leaves them), so that the two ranks hold different target
 * counts in every step. LoRA dropout is on: the ranks draw the masks of their micro-batches' global indices.
 */
class DataParallelTrainTest {
    private static final long JOB_TIMEOUT_S = 300;
    private static final int STEPS = 3;
    private static final double LR = 1e-3;
    /**
     * Per-step loss: both runs sum the same per-row CE values, in a different order (fp64 across the
     * ranks, fp32 inside a forward): a few fp32 ulps of the mean.
     */
    private static final double LOSS_RTOL = 1e-5;
    /**
     * Parameters: the reduced gradient differs from the single process's by fp32 summation-order
     * rounding (the ranks' partial sums are added in fp64 and rounded once; the single process adds
     * 16 micro-batches in fp32). AdamW's m/√v turns a gradient element of either sign into ±lr at
     * step 1, so an element whose gradient is a rounding error away from 0 may move by up to 2·lr
     * per step; the bulk agrees to rounding. Bounds: every element within 2·lr·steps, and the
     * difference's norm within 1e-4 of the change the run made.
     */
    private static final double PARAM_ABS_BOUND = 2 * LR * STEPS, PARAM_REL_NORM = 1e-4;

    /** 48 rows of 8..40 tokens (ids from stories15M's vocabulary), the first 2..7 labels masked. */
    private static Path rows(Path dir) throws Exception {
        Random rnd = new Random(18);
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 48; i++) {
            int len = 8 + rnd.nextInt(33), masked = 2 + rnd.nextInt(6);
            StringBuilder ids = new StringBuilder("1"), labels = new StringBuilder("-100");
            for (int t = 1; t < len; t++) {
                int id = 3 + rnd.nextInt(4000);
                ids.append(", ").append(id);
                labels.append(", ").append(t < masked ? -100 : id);
            }
            lines.add("{\"input_ids\": [" + ids + "], \"labels\": [" + labels + "]}");
        }
        Path f = dir.resolve("rows.jsonl");
        Files.write(f, lines);
        return f;
    }

    private static Path config(Path dir) throws Exception {
        Path yaml = dir.resolve("run.yaml");
        Files.writeString(yaml, "model: " + Assets.require("stories15M.bin") + "\ndataset: " + rows(dir) + "\ndevice: cpu\nr: 8\nlora_alpha: 16\n"
                + "max_steps: " + STEPS + "\nper_device_train_batch_size: 1\nlearning_rate: " + LR + "\nwarmup_steps: 0\nmax_seq_length: 48\n"
                + "seed: 7\nlogging_steps: 1\nlora_dropout: 0.1\n");
        return yaml;
    }

    private static Map<String, float[]> adapter(Path out) throws Exception {
        Map<String, float[]> m = new HashMap<>();
        SafeTensors st = SafeTensors.open(out.resolve("adapter_model.safetensors"));
        for (String n : st.entries().keySet()) {
            try (Tensor t = st.tensor(n)) {
                m.put(n, t.toFloats());
            }
        }
        return m;
    }

    private static List<Double> losses(Path out) throws Exception {
        List<Double> l = new ArrayList<>();
        for (String line : Files.readAllLines(out.resolve("metrics.jsonl"))) {
            JsonObject o = JsonParser.parseString(line).getAsJsonObject();
            if (o.has("loss") && o.has("step")) l.add(o.get("loss").getAsDouble());
        }
        return l;
    }

    @Test
    void twoRanksTimesEightMatchOneProcessTimesSixteen(@TempDir Path dir) throws Exception {
        MpiRun.mpirun();
        Path yaml = config(dir);
        Path single = dir.resolve("single"), two = dir.resolve("two");
        MpiRun.Cli one = MpiRun.main(Map.of(), "train", "--config", yaml.toString(), "--gradient_accumulation_steps", "16", "--out", single.toString(), "--threads", "1");
        assertEquals(0, one.code(), one.err());
        MpiRun.Result r = MpiRun.run(2, List.of("LORA4J_NUM_THREADS=1"), JOB_TIMEOUT_S, Main.class.getName(), "train", "--config", yaml.toString(),
                "--gradient_accumulation_steps", "8", "--out", two.toString(), "--hash-every", "1");
        System.out.println(r.output());
        assertEquals(0, r.exit(), r.output());
        assertTrue(r.output().contains("data-parallel: 2 ranks (Open MPI (mpirun)"), r.output());
        assertTrue(r.output().contains("step " + STEPS + "/" + STEPS), r.output());

        List<Double> l1 = losses(single), l2 = losses(two);
        assertEquals(STEPS, l1.size());
        assertEquals(l1.size(), l2.size());
        for (int i = 0; i < l1.size(); i++)
            assertEquals(l1.get(i), l2.get(i), LOSS_RTOL * Math.abs(l1.get(i)), "loss of step " + (i + 1) + ": " + l1 + " vs " + l2);

        Map<String, float[]> a1 = adapter(single), a2 = adapter(two);
        assertEquals(a1.keySet(), a2.keySet());
        double diff2 = 0, change2 = 0, maxAbs = 0;
        for (String k : a1.keySet()) {
            float[] x = a1.get(k), y = a2.get(k);
            for (int i = 0; i < x.length; i++) {
                double d = (double) x[i] - y[i];
                diff2 += d * d;
                maxAbs = Math.max(maxAbs, Math.abs(d));
                if (k.contains("lora_B")) change2 += (double) x[i] * x[i]; // B starts at 0: its values are the change
            }
        }
        System.out.printf("2x8 vs 1x16: max |dtheta| %.3e, ||dtheta|| / ||dB|| %.3e%n", maxAbs, Math.sqrt(diff2 / change2));
        assertTrue(maxAbs <= PARAM_ABS_BOUND, "max |difference| " + maxAbs);
        assertTrue(Math.sqrt(diff2 / change2) <= PARAM_REL_NORM, "relative difference " + Math.sqrt(diff2 / change2));
    }
}
