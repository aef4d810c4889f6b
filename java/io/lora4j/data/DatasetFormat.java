package io.lora4j.data;

import java.util.Locale;

/**
 * The row layouts a dataset file may hold (config key {@code dataset_format}); {@link #AUTO}
 * detects the layout from the keys of the first JSON object of the first file.
 */
public enum DatasetFormat {
    /** Detect from the first row: messages, conversations, instruction+output, prompt+completion, text, input_ids. */
    AUTO("auto"),
    /** {@code {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}]}} (TRL conversational). */
    CONVERSATIONAL("conversational"),
    /** {@code {"conversations": [{"from": "human"|"gpt"|"system", "value": "..."}]}}, normalised to messages. */
    SHAREGPT("sharegpt"),
    /** {@code {"instruction", "input"?, "output"}}: one user turn (instruction, then input after a blank line) and one assistant turn. */
    ALPACA("alpaca"),
    /**
     * {@code {"prompt", "completion"}}: strings are plain text, [BOS] + prompt + completion + [EOS], loss on the
     * completion only (TRL's completion_only_loss default); message lists are a conversation.
     */
    PROMPT_COMPLETION("prompt_completion"),
    /** {@code {"text"}}: continued pretraining, [BOS] + text + [EOS], loss on every token (DESIGN.md §4 "Text rows"). */
    TEXT("text"),
    /** {@code {"input_ids", "labels"?, "attention_mask"?}}: used as given (labels default to the ids). */
    TOKENIZED("tokenized");

    private final String key;

    DatasetFormat(String key) {
        this.key = key;
    }

    /** The config spelling, e.g. "prompt_completion". */
    public String key() {
        return key;
    }

    /** Parses a config value; accepts the spellings of {@link #key()} plus "raw", "chat", "messages", "pretokenized". */
    public static DatasetFormat parse(String s) {
        String k = s.trim().toLowerCase(Locale.ROOT).replace('-', '_');
        for (DatasetFormat f : values()) if (f.key.equals(k)) return f;
        switch (k) {
            case "raw": return TEXT;
            case "chat": case "messages": return CONVERSATIONAL;
            case "pretokenized": case "pre_tokenized": case "input_ids": return TOKENIZED;
            case "prompt_completions": return PROMPT_COMPLETION;
            default: throw new IllegalArgumentException("dataset_format '" + s + "' is not one of auto, conversational, sharegpt, alpaca, prompt_completion, text, tokenized");
        }
    }
}
