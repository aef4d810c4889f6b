package io.lora4j.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.model.Assets;
import io.lora4j.tokenizer.Tokenizer;
import io.lora4j.tokenizer.Tokenizers;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Special-token strings in text rows: read as their ids by default, as HF tokenizers read them,
 * and as plain text with split_special_tokens. Expected rows come from transformers.js
 * (scripts/reference/make_special_text_vectors.mjs: Llama 3 and Qwen3 tokenizers).
 */
class SpecialTokensInTextTest {
    @TempDir
    Path dir;

    private static JsonArray vectors() throws IOException {
        try (InputStream in = SpecialTokensInTextTest.class.getResourceAsStream("/data/special_text_vectors.json")) {
            if (in == null) throw new IOException("test resource /data/special_text_vectors.json is missing");
            return JsonParser.parseReader(new InputStreamReader(in, StandardCharsets.UTF_8)).getAsJsonArray();
        }
    }

    private static int[] ints(JsonElement e) {
        JsonArray a = e.getAsJsonArray();
        int[] r = new int[a.size()];
        for (int i = 0; i < r.length; i++) r[i] = a.get(i).getAsInt();
        return r;
    }

    private DataPipeline build(Path data, Tokenizer tok, Path tokFile, Boolean split) throws IOException {
        Map<String, Object> m = new HashMap<>();
        m.put("dataset", data.toString());
        m.put("eval_split", 0);
        m.put("max_seq_length", 4096);
        if (split != null) m.put("split_special_tokens", split);
        return DataPipeline.build(DataConfig.fromMap(m), tok, tokFile);
    }

    @Test
    void textRowsReadSpecialTokenStringsAsHfTokenizersDoUnlessSplit() throws IOException {
        for (JsonElement set : vectors()) {
            JsonObject s = set.getAsJsonObject();
            String name = s.get("tokenizer").getAsString();
            Path tokFile = Assets.require(name + "/tokenizer.json");
            Tokenizer tok = Tokenizers.load(tokFile);
            assertEquals(s.get("bos_id").getAsInt(), tok.bosId(), name + " BOS");
            assertEquals(s.get("eos_id").getAsInt(), tok.eosId(), name + " EOS");
            JsonArray rows = s.getAsJsonArray("rows");
            List<String> lines = new ArrayList<>();
            for (JsonElement r : rows) {
                JsonObject o = new JsonObject();
                o.add("text", r.getAsJsonObject().get("text"));
                lines.add(o.toString());
            }
            Path data = dir.resolve(name + ".jsonl");
            Files.write(data, lines, StandardCharsets.UTF_8);
            DataPipeline special = build(data, tok, tokFile, null), split = build(data, tok, tokFile, true);
            assertEquals(rows.size(), special.trainRows().size(), name);
            assertEquals(rows.size(), split.trainRows().size(), name);
            for (int i = 0; i < rows.size(); i++) {
                JsonObject r = rows.get(i).getAsJsonObject();
                String what = name + " row " + i + " " + r.get("text").getAsString();
                Example e = special.trainRows().get(i).example();
                assertArrayEquals(ints(r.get("ids")), e.inputIds(), what + " (default: special strings are ids)");
                assertArrayEquals(e.inputIds(), e.labels(), what + ": a text row trains every token");
                assertArrayEquals(ints(r.get("split_ids")), split.trainRows().get(i).example().inputIds(), what + " (split_special_tokens)");
            }
        }
    }

    @Test
    void splitSpecialTokensMustBeABoolean() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> DataConfig.fromMap(Map.of("dataset", "d.jsonl", "split_special_tokens", "sometimes")));
        assertEquals(true, e.getMessage().contains("split_special_tokens"), e.getMessage());
    }
}
