package io.lora4j.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.model.Assets;
import io.lora4j.tokenizer.Tokenizer;
import io.lora4j.tokenizer.Tokenizers;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DemoDataTest {
    @TempDir
    Path dir;

    @Test
    void capitalsHoldOutPhrasings() throws IOException {
        Path datasets = Assets.require("datasets/us-states-capitals.json").getParent();
        DemoData.Written w = DemoData.capitals(datasets, dir);
        assertEquals(200, w.trainRows());
        assertEquals(100, w.evalRows());
        List<String> train = Files.readAllLines(w.train()), eval = Files.readAllLines(w.eval());
        assertEquals(200, train.size());
        assertTrue(train.contains("{\"messages\":[{\"role\":\"user\",\"content\":\"What is the capital of Ohio?\"},"
                + "{\"role\":\"assistant\",\"content\":\"The capital of Ohio is Columbus.\"}]}"), train.get(0));
        assertTrue(train.stream().anyMatch(l -> l.contains("\"Ohio's capital city is?\"")), "no HTML escaping");
        assertTrue(eval.stream().allMatch(l -> l.contains("serves as the capital") || l.contains("Tell me the capital")));
        assertTrue(train.stream().noneMatch(l -> l.contains("serves as the capital") || l.contains("Tell me the capital")));

        Tokenizer tok = Tokenizers.load(Assets.require("tokenizer.model"));
        DataPipeline p = DataPipeline.build(DataConfig.fromMap(Map.of("dataset", w.train().toString(), "eval_dataset", w.eval().toString(),
                "train_on_responses_only", true, "max_seq_length", 256)), tok, null);
        assertEquals(200, p.train().size());
        assertEquals(100, p.eval().size());
        assertEquals(0, p.stats().skipped() + p.stats().truncated());
    }

    @Test
    void mobyDickHoldsOutEveryTenthChapter() throws IOException {
        Path datasets = Assets.require("datasets/moby-dick.jsonl").getParent();
        DemoData.Written w = DemoData.mobyDick(datasets, dir);
        assertEquals(122, w.trainRows());
        assertEquals(13, w.evalRows());
        assertTrue(Files.readAllLines(w.train()).get(0).startsWith("{\"text\":\"CHAPTER 1. Loomings.\\n\\nCall me Ishmael."));
        assertTrue(Files.readAllLines(w.eval()).get(0).startsWith("{\"text\":\"CHAPTER 10. "));
    }
}
