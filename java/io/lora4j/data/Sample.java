package io.lora4j.data;

import java.util.List;

/**
 * A parsed dataset row before tokenization, with where it came from ({@code source}: file name,
 * {@code line}: 1-based line of a JSONL file, or the line where a JSON array element starts).
 */
public sealed interface Sample permits Sample.Chat, Sample.PromptCompletion, Sample.Text, Sample.Tokens {
    String source();

    int line();

    /** A conversation, rendered through the chat template. */
    record Chat(String source, int line, List<Message> messages) implements Sample {
        public Chat {
            messages = List.copyOf(messages);
        }
    }

    /** Plain prompt and completion strings: [BOS] + prompt + completion + [EOS], loss on the completion. */
    record PromptCompletion(String source, int line, String prompt, String completion) implements Sample {}

    /** Plain text: [BOS] + text + [EOS], loss on every token. */
    record Text(String source, int line, String text) implements Sample {}

    /** Pre-tokenized ids and labels (aligned, -100 = no loss). */
    record Tokens(String source, int line, int[] inputIds, int[] labels) implements Sample {}
}
