package io.lora4j.cli;

import static io.lora4j.cli.CliRun.run;
import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.JsonParser;
import io.lora4j.cli.CliRun.Result;
import io.lora4j.model.Assets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * merge, scale and weight averaging on a stories15M adapter trained for a few steps, checked
 * through eval: the merged model's loss equals base + adapter's; --average equals --scale 0.5 on the
 * adapter; a scaled adapter equals --scale on the original.
 */
class MergeCommandTest {
    /** Losses of the same model computed through different but exact routes (fp32): 1e-4 nats. */
    static final double LOSS_ATOL = 1e-4;


    static double loss(String... args) {
        Result r = run(args);
        assertEquals(0, r.code(), r.err());
        return JsonParser.parseString(r.out()).getAsJsonObject().get("loss").getAsDouble();
    }

    @Test
    void mergeScaleAndAverageAgreeWithTheAdapter(@TempDir Path dir) throws Exception {
        Path model = Assets.require("stories15M.bin");
        Path tok = Assets.require("tokenizer.model");
        Path data = dir.resolve("d.jsonl");
        Files.writeString(data, "{\"text\": \"Tom had a red ball. He kicked it high in the park and laughed.\"}\n"
                + "{\"text\": \"Lily saw a big dog. The dog wagged its tail and Lily smiled.\"}\n");
        Path yaml = dir.resolve("run.yaml");
        Files.writeString(yaml, "model: " + model + "\ntokenizer: " + tok + "\ndataset: " + data + "\nmax_steps: 3\nlearning_rate: 1e-2\n"
                + "per_device_train_batch_size: 2\ngradient_accumulation_steps: 1\nmax_seq_length: 64\n");
        Path adapter = dir.resolve("adapter");
        Result t = run("train", "--config", yaml.toString(), "--out", adapter.toString());
        assertEquals(0, t.code(), t.err());

        double base = loss("eval", "--model", model.toString(), "--data", data.toString(), "--json");
        double tuned = loss("eval", "--model", model.toString(), "--adapter", adapter.toString(), "--data", data.toString(), "--json");
        assertTrue(tuned < base - 0.05, "training changed the loss: " + base + " -> " + tuned);

        Path merged = dir.resolve("merged");
        Result m = run("merge", "--model", model.toString(), "--adapter", adapter.toString(), "--out", merged.toString());
        assertEquals(0, m.code(), m.err());
        assertTrue(Files.isRegularFile(merged.resolve("config.json")) && Files.isRegularFile(merged.resolve("tokenizer.model")));
        assertEquals(tuned, loss("eval", "--model", merged.toString(), "--data", data.toString(), "--json"), LOSS_ATOL,
                "merged model vs base + adapter");

        Path avg = dir.resolve("average");
        assertEquals(0, run("merge", "--model", model.toString(), "--adapter", adapter.toString(), "--out", avg.toString(), "--average").code());
        double half = loss("eval", "--model", model.toString(), "--adapter", adapter.toString(), "--scale", "0.5", "--data", data.toString(), "--json");
        assertEquals(half, loss("eval", "--model", avg.toString(), "--data", data.toString(), "--json"), LOSS_ATOL,
                "(base + fine-tuned)/2 equals scale 0.5");

        Path scaled = dir.resolve("scaled");
        Result s = run("scale", "--adapter", adapter.toString(), "--factor", "0.5", "--out", scaled.toString());
        assertEquals(0, s.code(), s.err());
        assertEquals(half, loss("eval", "--model", model.toString(), "--adapter", scaled.toString(), "--data", data.toString(), "--json"),
                LOSS_ATOL, "lora_alpha x 0.5 equals --scale 0.5");

        Path bf16 = dir.resolve("bf16");
        Result b = run("merge", "--model", model.toString(), "--adapter", adapter.toString(), "--out", bf16.toString(), "--dtype", "bf16");
        assertEquals(0, b.code(), b.err());
        assertEquals(tuned, loss("eval", "--model", bf16.toString(), "--data", data.toString(), "--json"), 0.05, "bf16 merge");

        assertEquals(2, run("merge", "--model", model.toString(), "--adapter", adapter.toString(), "--out", dir.resolve("x").toString(),
                "--scale", "2", "--average").code());
        Result exists = run("merge", "--model", model.toString(), "--adapter", adapter.toString(), "--out", merged.toString());
        assertEquals(1, exists.code(), "an existing --out is refused without --overwrite");
    }
}
