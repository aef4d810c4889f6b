package io.lora4j.data;

import java.util.Objects;

/**
 * One turn of a conversation, as chat templates see it ({@code message['role']},
 * {@code message['content']}).
 *
 * @param role "system", "user" or "assistant"
 */
public record Message(String role, String content) {
    public static final String SYSTEM = "system", USER = "user", ASSISTANT = "assistant";

    public Message {
        Objects.requireNonNull(role, "role");
        Objects.requireNonNull(content, "content");
        if (!role.equals(SYSTEM) && !role.equals(USER) && !role.equals(ASSISTANT))
            throw new IllegalArgumentException("role '" + role + "' is not system, user or assistant");
    }

    public static Message system(String content) {
        return new Message(SYSTEM, content);
    }

    public static Message user(String content) {
        return new Message(USER, content);
    }

    public static Message assistant(String content) {
        return new Message(ASSISTANT, content);
    }
}
