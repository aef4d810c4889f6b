package io.lora4j.data;

import static io.lora4j.data.DataTesting.trainedSpans;
import static io.lora4j.data.DataTesting.write;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.io.FormatException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DataPipelineTest {
    static final ToyTokenizer TOK = ToyTokenizer.chat();

    @TempDir
    Path dir;

    private DataPipeline build(Path data, Object... kv) throws IOException {
        Map<String, Object> m = new HashMap<>();
        m.put("dataset", data.toString());
        for (int i = 0; i < kv.length; i += 2) m.put((String) kv[i], kv[i + 1]);
        return DataPipeline.build(DataConfig.fromMap(m), TOK, dir.resolve("no-tokenizer-here"));
    }

    private static String chat(String q, String a) {
        return "{\"messages\": [{\"role\": \"user\", \"content\": \"" + q + "\"}, {\"role\": \"assistant\", \"content\": \"" + a + "\"}]}";
    }

    @Test
    void chatRowsUseTheTemplateOnceWithOneBos() throws IOException {
        Path f = write(dir, "c.jsonl", chat("Q1", "A1"), chat("Q2", "A2"));
        DataPipeline p = build(f, "train_on_responses_only", true);
        assertEquals("alpaca", p.stats().template(), "a model without a chat_template gets alpaca");
        DataPipeline.Row r = p.trainRows().get(0);
        assertTrue(r.text().startsWith("<s>Below are some instructions"), r.text());
        int[] ids = r.example().inputIds();
        assertEquals(TOK.bosId(), ids[0]);
        assertNotEquals(TOK.bosId(), ids[1], "no double BOS");
        assertEquals(List.of("A1</s>"), trainedSpans(TOK, ids, r.example().labels()));
        assertEquals(new ChatTemplate.Markers("### Instruction:\n", "### Response:\n", "</s>", false), p.stats().markers());

        DataPipeline all = build(f, "chat_template", "llama-3", "train_on_responses_only", false);
        int[] labels = all.train().get(0).labels();
        assertArrayEquals(all.train().get(0).inputIds(), labels, "with train_on_responses_only false every token is trained");
        assertEquals("llama-3", all.stats().template());
        DataPipeline auto = build(f);
        assertEquals(List.of("A1</s>"), trainedSpans(TOK, auto.trainRows().get(0).example().inputIds(), auto.trainRows().get(0).example().labels()),
                "train_on_responses_only auto (the default) is on for conversations");
        assertTrue(auto.stats().summary().contains("train_on_responses_only auto: on (conversation rows)"), auto.stats().summary());
    }

    @Test
    void rowsWithNothingTrainedAreSkippedAndAllSkippedIsAClearError() throws IOException {
        Path f = write(dir, "c.jsonl", chat("Q1", "A1"), "{\"messages\": [{\"role\": \"user\", \"content\": \"no answer\"}]}");
        DataPipeline p = build(f, "train_on_responses_only", true);
        assertEquals(1, p.train().size());
        assertEquals(1, p.stats().skipped());
        FormatException e = assertThrows(FormatException.class, () -> build(f, "train_on_responses_only", true, "instruction_part", "USER:",
                "response_part", "ASSISTANT:"));
        assertTrue(e.getMessage().contains("no training row has an assistant token left") && e.getMessage().contains("\"ASSISTANT:\"")
                && e.getMessage().contains("\"USER:\"") && e.getMessage().contains("first rendered row: \"<s>Below are some"), e.getMessage());
        assertTrue(!e.getMessage().contains("\n"));
    }

    @Test
    void truncationAndTextSplittingAreCounted() throws IOException {
        Path f = write(dir, "c.jsonl", chat("Q", "A long answer that will be cut"), chat("Q", "A"),
                chat("A much longer question that pushes the answer out", "A"));
        DataPipeline full = build(f, "train_on_responses_only", true);
        int len1 = full.train().get(1).length();
        DataPipeline cut = build(f, "train_on_responses_only", true, "max_seq_length", len1 + 3);
        assertEquals(2, cut.stats().truncated());
        assertEquals(1, cut.stats().skipped(), "a row cut before its answer has nothing to train");
        assertEquals(List.of(len1 + 3, len1), cut.train().stream().map(Example::length).toList());
        assertTrue(cut.stats().summary().contains("2 truncated"), cut.stats().summary());

        Path t = write(dir, "t.jsonl", "{\"text\": \"" + "abcdefghij".repeat(3) + "\"}");
        DataPipeline split = build(t, "max_seq_length", 8);
        assertEquals(1, split.stats().split());
        assertEquals(32, split.train().stream().mapToInt(Example::length).sum(), "BOS + 30 bytes + EOS in pieces");
        assertEquals(List.of(8, 8, 8, 8), split.train().stream().map(Example::length).toList());
        assertEquals(TOK.bosId(), split.train().get(0).inputIds()[0]);
        assertEquals(TOK.eosId(), split.train().get(3).inputIds()[7]);
    }

    @Test
    void promptCompletionTextAndTokenizedRows() throws IOException {
        DataPipeline pc = build(write(dir, "pc.jsonl", "{\"prompt\": \"What\", \"completion\": \" is the capital\"}"));
        Example e = pc.train().get(0);
        assertEquals(List.of(" is the capital"), trainedSpans(TOK, e.inputIds(), e.labels()).subList(0, 1).stream()
                .map(s -> s.replace("</s>", "")).toList());
        assertEquals(TOK.eosId(), e.labels()[e.length() - 1], "EOS is trained");
        assertEquals(Example.IGNORE_INDEX, e.labels()[1]);

        DataPipeline text = build(write(dir, "t.jsonl", "{\"text\": \"The capital\"}"));
        assertArrayEquals(TOK.encode("The capital", true, true), text.train().get(0).inputIds());
        assertArrayEquals(text.train().get(0).inputIds(), text.train().get(0).labels());

        int v = TOK.vocabSize();
        DataPipeline tk = build(write(dir, "k.jsonl", "{\"input_ids\": [1, 5, 6, 7], \"labels\": [-100, -100, 6, 7]}",
                "{\"input_ids\": [1, " + v + "]}"), "max_bad_row_fraction", 0.5);
        assertEquals(1, tk.train().size());
        assertEquals(1, tk.stats().badRows());
        assertTrue(tk.stats().badExamples().get(0).contains("line 2: token 1 is outside the vocabulary"), tk.stats().badExamples().toString());
        assertArrayEquals(new int[] {-100, -100, 6, 7}, tk.train().get(0).labels());
    }

    @Test
    void evalSplitAndEvalDataset() throws IOException {
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 20; i++) lines.add("{\"text\": \"row " + i + "\"}");
        Path f = write(dir, "t.jsonl", lines.toArray(new String[0]));
        // eval_split auto (the default): 5 % of the rows, at least 1, from 20 rows on
        DataPipeline auto = build(f);
        assertEquals(1, auto.eval().size());
        assertEquals(19, auto.train().size());
        assertTrue(auto.stats().summary().contains("eval_split auto: 1 of 20 rows held out"), auto.stats().summary());
        assertEquals(0, DataConfig.of("x").evalRows(19));
        assertEquals(256, DataConfig.of("x").evalRows(100_000));
        assertEquals(0, build(f, "eval_split", 0).eval().size());
        DataPipeline a = build(f, "eval_split", 0.2, "seed", 7), b = build(f, "eval_split", 0.2, "seed", 7), c = build(f, "eval_split", 0.2, "seed", 8);
        assertEquals(16, a.train().size());
        assertEquals(4, a.eval().size());
        assertEquals(a.eval(), b.eval(), "seeded");
        assertNotEquals(a.eval(), c.eval());
        Set<Example> seen = new HashSet<>(a.train());
        seen.addAll(a.eval());
        assertEquals(20, seen.size(), "train and eval partition the rows");
        DataPipeline d = build(f, "eval_dataset", write(dir, "e.jsonl", "{\"text\": \"held out\"}").toString());
        assertEquals(20, d.train().size());
        assertEquals(1, d.eval().size());
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> DataConfig.fromMap(Map.of("eval_split", 1.5,
                "max_seq_length", 1, "packing", true, "group_by_length", true, "response_part", "x", "dataset_format", "csv",
                "train_on_responses_only", false)));
        for (String s : new String[] {"dataset is missing", "eval_split 1.5", "max_seq_length 1", "packing and group_by_length", "train_on_responses_only",
                "dataset_format 'csv'"})
            assertTrue(bad.getMessage().contains(s), s + " in " + bad.getMessage());
    }
}
