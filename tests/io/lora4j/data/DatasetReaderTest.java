package io.lora4j.data;

import static io.lora4j.data.DataTesting.write;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.io.FormatException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DatasetReaderTest {
    @TempDir
    Path dir;

    @Test
    void everyFormatIsDetectedAndParsed() throws IOException {
        DatasetReader.Result r = DatasetReader.read(write(dir, "conv.jsonl",
                "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U\"}, {\"role\": \"assistant\", \"content\": \"A\"}]}"),
                DatasetFormat.AUTO, 0);
        assertEquals(DatasetFormat.CONVERSATIONAL, r.format());
        assertEquals(List.of(Message.system("S"), Message.user("U"), Message.assistant("A")), ((Sample.Chat) r.samples().get(0)).messages());

        r = DatasetReader.read(write(dir, "share.jsonl",
                "{\"conversations\": [{\"from\": \"system\", \"value\": \"S\"}, {\"from\": \"human\", \"value\": \"U\"}, {\"from\": \"gpt\", \"value\": \"A\"}]}"),
                DatasetFormat.AUTO, 0);
        assertEquals(DatasetFormat.SHAREGPT, r.format());
        assertEquals(List.of(Message.system("S"), Message.user("U"), Message.assistant("A")), ((Sample.Chat) r.samples().get(0)).messages());

        r = DatasetReader.read(write(dir, "alpaca.jsonl",
                "{\"instruction\": \"Do X.\", \"input\": \"with Y\", \"output\": \"Done.\"}",
                "{\"instruction\": \"Do Z.\", \"input\": \"\", \"output\": \"Ok.\"}",
                "{\"instruction\": \"No input key.\", \"output\": \"Fine.\"}"), DatasetFormat.AUTO, 0);
        assertEquals(DatasetFormat.ALPACA, r.format());
        assertEquals(List.of(Message.user("Do X.\n\nwith Y"), Message.assistant("Done.")), ((Sample.Chat) r.samples().get(0)).messages());
        assertEquals(List.of(Message.user("Do Z."), Message.assistant("Ok.")), ((Sample.Chat) r.samples().get(1)).messages());
        assertEquals(3, r.samples().size());

        r = DatasetReader.read(write(dir, "pc.jsonl", "{\"prompt\": \"The sky is\", \"completion\": \" blue.\"}",
                "{\"prompt\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"completion\": [{\"role\": \"assistant\", \"content\": \"Hello\"}]}"),
                DatasetFormat.AUTO, 0);
        assertEquals(DatasetFormat.PROMPT_COMPLETION, r.format());
        assertEquals(new Sample.PromptCompletion("pc.jsonl", 1, "The sky is", " blue."), r.samples().get(0));
        assertEquals(List.of(Message.user("Hi"), Message.assistant("Hello")), ((Sample.Chat) r.samples().get(1)).messages());

        r = DatasetReader.read(write(dir, "text.jsonl", "{\"text\": \"Call me Ishmael.\", \"chapter\": 1}"), DatasetFormat.AUTO, 0);
        assertEquals(DatasetFormat.TEXT, r.format());
        assertEquals(new Sample.Text("text.jsonl", 1, "Call me Ishmael."), r.samples().get(0));

        r = DatasetReader.read(write(dir, "tok.jsonl", "{\"input_ids\": [1, 5, 6, 7, 0, 0], \"labels\": [-100, -100, 6, 7, -100, -100], \"attention_mask\": [1, 1, 1, 1, 0, 0]}",
                "{\"input_ids\": [1, 9]}"), DatasetFormat.AUTO, 0);
        assertEquals(DatasetFormat.TOKENIZED, r.format());
        Sample.Tokens t = (Sample.Tokens) r.samples().get(0);
        assertArrayEquals(new int[] {1, 5, 6, 7}, t.inputIds());
        assertArrayEquals(new int[] {-100, -100, 6, 7}, t.labels());
        assertArrayEquals(new int[] {1, 9}, ((Sample.Tokens) r.samples().get(1)).labels(), "labels default to the ids");
    }

    @Test
    void jsonArraysAndDirectories() throws IOException {
        Path d = dir.resolve("set");
        write(d, "b.json", "[", "  {\"text\": \"second file\"},", "  {\"text\": 5}", "]");
        write(d, "a.jsonl", "{\"text\": \"first file\"}");
        write(d, "notes.txt", "ignored");
        DatasetReader.Result r = DatasetReader.read(d, DatasetFormat.AUTO, 0.5);
        assertEquals(List.of("first file", "second file"), r.samples().stream().map(s -> ((Sample.Text) s).text()).toList());
        assertEquals(3, r.rows());
        assertEquals(1, r.badRows());
        assertEquals("b.json line 3: \"text\" is not a string", r.badExamples().get(0));
        assertThrows(FormatException.class, () -> DatasetReader.read(write(dir, "broken.json", "[{\"text\": \"a\"},"), DatasetFormat.AUTO, 1));
    }

    @Test
    void badRowsAreCountedWithLineNumbers() throws IOException {
        Path f = write(dir, "chat.jsonl",
                "{\"messages\": [{\"role\": \"user\", \"content\": \"Q\"}, {\"role\": \"assistant\", \"content\": \"A\"}]}",
                "{\"messages\": []}",
                "",
                "{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}",
                "{\"messages\": [{\"role\": \"user\", \"content\": 7}]}",
                "{\"messages\": \"nope\"}",
                "not json",
                "{\"text\": \"wrong format\"}",
                "[1, 2]");
        DatasetReader.Result r = DatasetReader.read(f, DatasetFormat.AUTO, 1);
        assertEquals(1, r.samples().size());
        assertEquals(8, r.rows(), "the blank line is not a row");
        assertEquals(7, r.badRows());
        assertEquals(List.of("chat.jsonl line 2: \"messages\" is an empty conversation",
                "chat.jsonl line 4: messages[0].role 'bot' is not system, user or assistant",
                "chat.jsonl line 5: messages[0] has no string \"content\"",
                "chat.jsonl line 6: \"messages\" is not an array of messages",
                "chat.jsonl line 7: not valid JSON",
                "chat.jsonl line 8: missing \"messages\"",
                "chat.jsonl line 9: expected a JSON object"), r.badExamples());

        FormatException e = assertThrows(FormatException.class, () -> DatasetReader.read(f, DatasetFormat.AUTO, 0.5));
        assertEquals(f, e.file());
        assertFalse(e.getMessage().contains("\n"));
        assertTrue(e.getMessage().contains("7 of 8 rows are bad") && e.getMessage().contains("max_bad_row_fraction 0.5")
                && e.getMessage().contains("first: chat.jsonl line 2: \"messages\" is an empty conversation"), e.getMessage());
    }

    @Test
    void defaultToleranceIsOnePercent() throws IOException {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 199; i++) sb.append("{\"text\": \"row ").append(i).append("\"}\n");
        sb.append("{\"text\": null}\n");
        Path f = dir.resolve("big.jsonl");
        Files.writeString(f, sb);
        assertEquals(199, DatasetReader.read(f, DatasetFormat.AUTO, DataConfig.DEFAULT_MAX_BAD_ROW_FRACTION).samples().size(), "1 of 200 is 0.5%");
        Files.writeString(f, sb + "{}\n{\"text\": [1]}\n");
        assertThrows(FormatException.class, () -> DatasetReader.read(f, DatasetFormat.AUTO, DataConfig.DEFAULT_MAX_BAD_ROW_FRACTION));
    }

    @Test
    void explicitFormatAndUndetectableRows() throws IOException {
        Path f = write(dir, "odd.jsonl", "{\"question\": \"Q\", \"answer\": \"A\"}");
        FormatException e = assertThrows(FormatException.class, () -> DatasetReader.read(f, DatasetFormat.AUTO, 1));
        assertTrue(e.getMessage().contains("cannot detect the dataset format") && e.getMessage().contains("line 1"), e.getMessage());
        Path g = write(dir, "both.jsonl", "{\"text\": \"t\", \"prompt\": \"p\", \"completion\": \"c\"}");
        assertEquals(DatasetFormat.TEXT, DatasetReader.read(g, DatasetFormat.TEXT, 0).format());
        assertEquals(DatasetFormat.PROMPT_COMPLETION, DatasetReader.read(g, DatasetFormat.AUTO, 0).format());
        assertThrows(FormatException.class, () -> DatasetReader.read(dir.resolve("missing.jsonl"), DatasetFormat.AUTO, 0));
        assertEquals(DatasetFormat.SHAREGPT, DatasetFormat.parse("ShareGPT"));
        assertEquals(DatasetFormat.TEXT, DatasetFormat.parse("raw"));
        assertThrows(IllegalArgumentException.class, () -> DatasetFormat.parse("csv"));
    }
}
