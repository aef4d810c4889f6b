package io.lora4j.cli;

import static io.lora4j.cli.CliRun.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.cli.CliRun.Result;
import io.lora4j.model.Assets;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DataCommandTest {
    @TempDir
    Path dir;


    private Path config(String... lines) throws IOException {
        Path c = dir.resolve("run.yaml");
        Files.writeString(c, String.join("\n", lines) + "\n");
        return c;
    }

    @Test
    void dumpAndShowWithTheLlama2Tokenizer() throws IOException {
        Path tok = Assets.require("tokenizer.model");
        Path data = dir.resolve("qa.jsonl");
        Files.writeString(data, "{\"messages\": [{\"role\": \"user\", \"content\": \"What is the capital of Ohio?\"}, {\"role\": \"assistant\", \"content\": \"Columbus.\"}]}\n"
                + "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}, {\"role\": \"user\", \"content\": \"Bye\"}, {\"role\": \"assistant\", \"content\": \"Bye!\"}]}\n");
        Path c = config("tokenizer: " + tok, "dataset: " + data, "chat_template: llama-2", "train_on_responses_only: true", "max_seq_length: 128",
                "learning_rate: 2.0e-4", "per_device_train_batch_size: 1", "gradient_accumulation_steps: 1");
        Path dump = dir.resolve("out/rows.jsonl");
        Result r = run("data", "--config", c.toString(), "--dump", dump.toString(), "--show", "2");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("2 train") && r.out().contains("chat template: llama-2"), r.out());
        assertTrue(r.out().contains("steps per epoch at batch 1 x gradient accumulation 1: 2"), r.out());
        assertTrue(r.out().contains("[INST] What is the capital of Ohio? [/INST][[ Columbus. </s>]]"), r.out());
        assertTrue(r.out().contains("[/INST][[ Hello! </s>]]") && r.out().contains("[/INST][[ Bye! </s>]]"), r.out());
        List<String> lines = Files.readAllLines(dump);
        assertEquals(2, lines.size());
        JsonObject row = JsonParser.parseString(lines.get(0)).getAsJsonObject();
        assertEquals("<s>[INST] What is the capital of Ohio? [/INST] Columbus. </s>", row.get("text").getAsString());
        JsonArray ids = row.getAsJsonArray("input_ids"), labels = row.getAsJsonArray("labels");
        assertEquals(ids.size(), labels.size());
        assertEquals(1, ids.get(0).getAsInt());
        assertEquals(-100, labels.get(0).getAsInt());
        assertEquals(2, labels.get(labels.size() - 1).getAsInt(), "EOS is trained");

        assertEquals(0, run("data", "--config", c.toString(), "--dump", dump.toString(), "--limit", "1").code());
        assertEquals(1, Files.readAllLines(dump).size());
    }

    @Test
    void badConfigsAreOneLineErrors() throws IOException {
        Result r = run("data");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("missing required option --config"), r.err());
        r = run("data", "--config", dir.resolve("none.yaml").toString());
        assertEquals(1, r.code());
        assertTrue(r.err().startsWith("lora4j data: ") && r.err().contains("none.yaml: no such file"), r.err());
        Path c = config("dataset: x.jsonl", "eval_split: 2", "packing: maybe", "tokenizer: t.model");
        r = run("data", "--config", c.toString());
        assertEquals(1, r.code());
        String err = r.err().strip();
        assertFalse(err.contains("\n"), err);
        assertTrue(err.contains("run.yaml: bad data config") && err.contains("eval_split 2") && err.contains("packing 'maybe'"), err);
        r = run("data", "--config", config("dataset: [unclosed").toString());
        assertEquals(1, r.code());
        assertTrue(r.err().contains("not valid YAML"), r.err());
        r = run("data", "--config", config("dataset: x.jsonl").toString());
        assertEquals(1, r.code());
        assertTrue(r.err().contains("needs \"model\" or \"tokenizer\""), r.err());
        assertEquals(2, run("data", "--config", c.toString(), "--show", "-1").code());
    }

    @Test
    void demoSetsAreWrittenFromTheFetchedAssets() throws IOException {
        io.lora4j.model.Assets.require("datasets/us-states-capitals.json");
        io.lora4j.model.Assets.require("datasets/moby-dick.jsonl");
        Path out = dir.resolve("sets");
        Result r = run("data", "--demo-sets", out.toString());
        assertEquals(0, r.code(), r.err());
        for (String f : new String[] {"capitals-train.jsonl", "capitals-eval.jsonl", "moby-dick-train.jsonl", "moby-dick-eval.jsonl"})
            assertTrue(Files.size(out.resolve(f)) > 0, f);
        assertTrue(r.out().contains("capitals-train.jsonl (200 rows)"), r.out());
        assertEquals(2, run("data").code(), "neither --config nor --demo-sets");
    }
}
