package io.lora4j.cli;

/** Bad usage of a command (a wrong option value, a missing argument): exit code 2. */
public class UsageException extends Exception {
    private static final long serialVersionUID = 1L;

    public UsageException(String message) {
        super(message);
    }
}
