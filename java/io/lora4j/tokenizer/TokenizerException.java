package io.lora4j.tokenizer;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A tokenizer file that cannot be used: truncated, corrupt, or of a kind this package does not
 * implement. The message is one line naming the file and the problem, fit for a CLI's
 * "bad input" exit.
 */
public final class TokenizerException extends IOException {
    private static final long serialVersionUID = 1L;

    /** @param file the offending file (named first in the message) */
    public TokenizerException(Path file, String problem) {
        super(file + ": " + problem);
    }

    /** @param file the offending file; {@code cause}'s message is not repeated, say it in {@code problem} */
    public TokenizerException(Path file, String problem, Throwable cause) {
        super(file + ": " + problem, cause);
    }
}
