package io.lora4j.data;

import static io.lora4j.data.DataTesting.trainedSpans;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.model.Assets;
import io.lora4j.tokenizer.Tokenizer;
import io.lora4j.tokenizer.Tokenizers;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The pipeline with the real Llama 3 and Llama 2 tokenizers (skipped when scripts/fetch-assets.sh has not run). */
class RealTokenizerTest {

    /**
     * The Llama 3 tokenizer_config's own chat_template, rendered by jinjava and tokenized, gives
     * exactly the ids of Meta's chat format as transformers.js tokenizes it
     * (scripts/reference/make_chat_vectors.mjs).
     */
    @Test
    void llama3TemplateGivesTheReferenceIds() throws IOException {
        Path tokFile = Assets.require("llama3/tokenizer.json");
        Tokenizer tok = Tokenizers.load(tokFile);
        ChatTemplate t = DataPipeline.resolveTemplate("auto", tok, tokFile);
        assertTrue(t.builtin().isEmpty(), "the model's own template");
        ResponseMasker masker = ResponseMasker.of(tok, t.markers(), false);
        assertEquals(new ChatTemplate.Markers("<|start_header_id|>user<|end_header_id|>\n\n", "<|start_header_id|>assistant<|end_header_id|>\n\n",
                "<|eot_id|>", true), t.markers());
        JsonArray vectors = JsonParser.parseString(DataTesting.resource("llama3_chat_vectors.json")).getAsJsonArray();
        assertEquals(6, vectors.size());
        Gson gson = new Gson();
        for (JsonElement v : vectors) {
            JsonObject o = v.getAsJsonObject();
            List<Message> messages = new ArrayList<>();
            for (JsonElement m : o.getAsJsonArray("messages"))
                messages.add(new Message(m.getAsJsonObject().get("role").getAsString(), m.getAsJsonObject().get("content").getAsString()));
            assertEquals(o.get("template_text").getAsString(), t.render(messages, false));
            assertArrayEquals(gson.fromJson(o.get("template_ids"), int[].class), tok.encodeWithSpecials(t.render(messages, false), false, false));
            String text = t.renderForTraining(messages);
            assertEquals(o.get("text").getAsString(), text);
            int[] ids = tok.encodeWithSpecials(text, false, false);
            assertArrayEquals(gson.fromJson(o.get("ids"), int[].class), ids);
            List<String> expected = new ArrayList<>();
            for (Message m : messages) if (m.role().equals(Message.ASSISTANT)) expected.add(m.content().strip() + "<|eot_id|>");
            assertEquals(expected, trainedSpans(tok, ids, masker.labels(ids)));
        }
        assertEquals(tok.tokenId("<|reserved_special_token_0|>"), DataPipeline.padId(tok));
        assertNotEquals(tok.eosId(), DataPipeline.padId(tok));
    }

    /** SentencePiece takes a marker's trailing space into the next word ("▁Paris"): the span still starts there. */
    @Test
    void sentencePieceMergesTheMarkersSpace() throws IOException {
        Tokenizer tok = Tokenizers.load(Assets.require("tokenizer.model"));
        ChatTemplate t = ChatTemplate.jinja("qa", "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ 'Question: ' + m['content'] + '\n' }}"
                + "{% else %}{{ 'Answer: ' + m['content'] + eos_token + '\n' }}{% endif %}{% endfor %}", DataPipeline.tokens(tok));
        int[] ids = tok.encodeWithSpecials(t.renderForTraining(List.of(Message.user("Capital of France?"), Message.assistant("Paris"),
                Message.user("Capital of Spain?"), Message.assistant("Madrid"))), false, false);
        int paris = -1;
        for (int i = 0; i < ids.length; i++) if (tok.piece(ids[i]).equals("▁Paris")) paris = i;
        assertTrue(paris > 0, "the space of 'Answer: ' is inside ▁Paris");
        int[] labels = new ResponseMasker(tok, "Question:", "Answer: ", "</s>", false).labels(ids);
        assertEquals(List.of(" Paris</s>", " Madrid</s>"), trainedSpans(tok, ids, labels));
        assertEquals(ids[paris], labels[paris]);
        assertEquals(new ChatTemplate.Markers("Question:", "Answer:", "</s>", false), t.markers(), "detected: trailing spaces dropped");
        assertEquals(List.of(" Paris</s>", " Madrid</s>"), trainedSpans(tok, ids, ResponseMasker.of(tok, t.markers(), false).labels(ids)));
    }

    /** The hand-written instruction set through the alpaca template with stories15M's tokenizer. */
    @Test
    void simpleInstructionsTrainEveryResponse() throws IOException {
        Path tokFile = Assets.require("tokenizer.model");
        Tokenizer tok = Tokenizers.load(tokFile);
        Path data = Path.of("examples/data/simple-instructions.jsonl");
        DataPipeline p = DataPipeline.build(DataConfig.fromMap(Map.of("dataset", data.toString(), "train_on_responses_only", true,
                "max_seq_length", 256, "eval_split", 0.1)), tok, tokFile);
        DataStats s = p.stats();
        assertEquals(DatasetFormat.ALPACA, s.format());
        assertEquals("alpaca", s.template());
        assertEquals(0, s.badRows());
        assertEquals(0, s.skipped());
        assertEquals(0, s.truncated(), "every row fits stories15M's 256 positions");
        assertTrue(s.rows() >= 100 && s.rows() <= 200, "rows: " + s.rows());
        assertEquals(s.rows(), p.train().size() + p.eval().size());
        for (DataPipeline.Row r : p.trainRows()) {
            int[] ids = r.example().inputIds();
            assertEquals(tok.bosId(), ids[0]);
            assertNotEquals(tok.bosId(), ids[1]);
            List<String> spans = trainedSpans(tok, ids, r.example().labels());
            assertEquals(1, spans.size(), r.text());
            assertTrue(spans.get(0).endsWith("</s>") && !spans.get(0).contains("###"), spans.get(0));
        }
    }
}
