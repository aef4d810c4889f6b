package io.lora4j.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ChatTemplateTest {
    static final ChatTemplate.Tokens LLAMA2_TOKENS = new ChatTemplate.Tokens("<s>", "</s>", null, "<unk>");
    static final List<Message> CHAT = List.of(Message.system("Be brief."), Message.user("What is 2+2?"), Message.assistant("4."),
            Message.user("And 3+3?"), Message.assistant("6."));

    @TempDir
    Path dir;

    @Test
    void builtinsRenderTheirDocumentedFormats() {
        assertEquals("<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\n4.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\n6.<|eot_id|>", render(ChatTemplate.Builtin.LLAMA_3, CHAT, false));
        assertEquals("<s><start_of_turn>user\nBe brief.\n\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4.<end_of_turn>\n"
                + "<start_of_turn>user\nAnd 3+3?<end_of_turn>\n<start_of_turn>model\n6.<end_of_turn>\n", render(ChatTemplate.Builtin.GEMMA, CHAT, false));
        assertEquals("<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4.<|im_end|>\n"
                + "<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n6.<|im_end|>\n", render(ChatTemplate.Builtin.CHATML, CHAT, false));
        assertEquals("<s>Be brief.\n\n### Instruction:\nWhat is 2+2?\n\n### Response:\n4.</s>\n\n### Instruction:\nAnd 3+3?\n\n### Response:\n6.</s>\n\n",
                render(ChatTemplate.Builtin.ALPACA, CHAT, false));
        assertEquals("<s>Below are some instructions that describe some tasks. Write responses that appropriately complete each request.\n\n"
                + "### Instruction:\nHi\n\n### Response:\n", render(ChatTemplate.Builtin.ALPACA, List.of(Message.user("Hi")), true));
        assertEquals("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is 2+2? [/INST] 4. </s><s>[INST] And 3+3? [/INST] 6. </s>",
                render(ChatTemplate.Builtin.LLAMA_2, CHAT, false));
        assertEquals("<s>[INST] Be brief.\n\nWhat is 2+2? [/INST]4.</s>[INST] And 3+3? [/INST]6.</s>", render(ChatTemplate.Builtin.MISTRAL, CHAT, false));
        assertEquals("<s><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                render(ChatTemplate.Builtin.LLAMA_3, List.of(Message.user("Hi")), true));
    }

    private static String render(ChatTemplate.Builtin b, List<Message> m, boolean gen) {
        return ChatTemplate.builtin(b, LLAMA2_TOKENS).render(m, gen);
    }

    @Test
    void detectedMarkersEqualTheDocumentedOnes() {
        for (ChatTemplate.Tokens tokens : List.of(LLAMA2_TOKENS, new ChatTemplate.Tokens("<|begin_of_text|>", "<|end_of_text|>", null, null))) {
            for (ChatTemplate.Builtin b : ChatTemplate.Builtin.values()) {
                ChatTemplate asJinja = ChatTemplate.jinja("copy of " + b.key(), b.source(), tokens);
                assertEquals(b.markers(tokens.eos()), asJinja.markers(), b.key() + " with " + tokens);
            }
        }
        assertEquals(ChatTemplate.Builtin.LLAMA_3, ChatTemplate.Builtin.parse("Llama-3.1").orElseThrow());
        assertEquals(ChatTemplate.Builtin.LLAMA_2, ChatTemplate.Builtin.parse("llama_2").orElseThrow());
        assertTrue(ChatTemplate.Builtin.parse("vicuna").isEmpty());
    }

    @Test
    void modelTemplateFromTokenizerConfigWithAlwaysOnGenerationPrompt() throws IOException {
        // The Llama 3 base tokenizer_config's template: it appends the assistant header unconditionally.
        String template = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}";
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": {\"content\": \"<|end_of_text|>\"}, \"chat_template\": \""
                + template.replace("\\", "\\\\").replace("\"", "\\\"") + "\"}");
        ChatTemplate t = ChatTemplate.fromModel(dir.resolve("tokenizer.json"), LLAMA2_TOKENS).orElseThrow();
        assertEquals("<|begin_of_text|>", t.tokens().bos());
        assertEquals("<|end_of_text|>", t.tokens().eos());
        ChatTemplate.Markers m = t.markers();
        assertEquals(new ChatTemplate.Markers("<|start_header_id|>user<|end_header_id|>\n\n", "<|start_header_id|>assistant<|end_header_id|>\n\n",
                "<|eot_id|>", true), m);
        List<Message> conv = List.of(Message.user("  Hi  "), Message.assistant("Hello"));
        String raw = t.render(conv, false);
        assertEquals("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
                + "Hello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", raw);
        assertEquals(raw.substring(0, raw.length() - m.response().length()), t.renderForTraining(conv));
        assertTrue(ChatTemplate.fromModel(dir.resolve("sub").resolve("tokenizer.model"), LLAMA2_TOKENS).isEmpty(), "no config, no template");
        Files.writeString(dir.resolve("chat_template.jinja"), "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}\n");
        assertEquals("user: Hi\nassistant: Hello\n", ChatTemplate.fromModel(dir, LLAMA2_TOKENS).orElseThrow().render(List.of(Message.user("Hi"),
                Message.assistant("Hello")), false), "chat_template.jinja wins; Jinja2 drops the source's final newline only");
    }

    @Test
    void raiseExceptionAndErrorsAreClear() {
        ChatTemplate.TemplateException e = assertThrows(ChatTemplate.TemplateException.class,
                () -> ChatTemplate.builtin(ChatTemplate.Builtin.ALPACA, LLAMA2_TOKENS).render(List.of(Message.user("a"), Message.system("late")), false));
        assertEquals("chat template alpaca raised: alpaca: only the first message may be a system message", e.getMessage());
        ChatTemplate bad = ChatTemplate.jinja("t", "{% for m in messages %}{{ m['content'] }}", LLAMA2_TOKENS);
        e = assertThrows(ChatTemplate.TemplateException.class, () -> bad.render(List.of(Message.user("a")), false));
        assertTrue(e.getMessage().startsWith("chat template t: "), e.getMessage());
        ChatTemplate noAssistant = ChatTemplate.jinja("t", "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}", LLAMA2_TOKENS);
        e = assertThrows(ChatTemplate.TemplateException.class, noAssistant::markers);
        assertTrue(e.getMessage().contains("cannot detect the markers of chat template t") && e.getMessage().contains("instruction_part"), e.getMessage());
    }

    @Test
    void sandboxLimitsEndRunawayTemplates() {
        List<Message> hi = List.of(Message.user("hi"));
        assertTimeoutPreemptively(Duration.ofSeconds(30), () -> {
            ChatTemplate loops = ChatTemplate.jinja("loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% for k in range(100000) %}{% endfor %}{% endfor %}{% endfor %}", LLAMA2_TOKENS);
            ChatTemplate.TemplateException e = assertThrows(ChatTemplate.TemplateException.class, () -> loops.render(hi, false));
            assertTrue(e.getMessage().contains("exceeds " + ChatTemplate.MAX_LOOP_ITERATIONS + " range() loop iterations"), e.getMessage());

            ChatTemplate huge = ChatTemplate.jinja("huge", "{% for i in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}", LLAMA2_TOKENS);
            e = assertThrows(ChatTemplate.TemplateException.class, () -> huge.render(hi, false));
            assertTrue(e.getMessage().contains("exceeds the limit of " + (ChatTemplate.BASE_OUTPUT_CHARS + 2 * ChatTemplate.OUTPUT_PER_CONTENT_CHAR)
                    + " characters"), e.getMessage());

            ChatTemplate include = ChatTemplate.jinja("include", "{% include '/etc/passwd' %}", LLAMA2_TOKENS);
            e = assertThrows(ChatTemplate.TemplateException.class, () -> include.render(hi, false));
            assertFalse(e.getMessage().contains("root:"), e.getMessage());
            ChatTemplate cls = ChatTemplate.jinja("class", "{{ messages.getClass().forName('java.lang.Runtime') }}", LLAMA2_TOKENS);
            String out;
            try {
                out = cls.render(hi, false);
            } catch (ChatTemplate.TemplateException ex) {
                out = "";
            }
            assertFalse(out.contains("Runtime"), out);
        });
        // A legitimately long conversation is within the output allowance.
        String longContent = "word ".repeat(200_000);
        assertEquals(longContent.length() + 1, ChatTemplate.jinja("echo", "{{ messages[0]['content'] }}!", LLAMA2_TOKENS)
                .render(List.of(Message.user(longContent)), false).length());
    }
}
