package io.lora4j.io;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A file that is malformed or does not match what it claims to hold. The message is one line:
 * {@code <file>: <problem>}, ready for the CLI's {@code lora4j <cmd>: <file>: <problem>}.
 */
public class FormatException extends IOException {
    private static final long serialVersionUID = 1L;

    private final transient Path file;
    private final String problem;

    public FormatException(Path file, String problem) {
        this(file, problem, null);
    }

    public FormatException(Path file, String problem, Throwable cause) {
        super(file + ": " + oneLine(problem), cause);
        this.file = file;
        this.problem = oneLine(problem);
    }

    /** The offending file. */
    public Path file() {
        return file;
    }

    /** What is wrong with it, without the file name. */
    public String problem() {
        return problem;
    }

    static String oneLine(String s) {
        if (s == null) return "unknown problem";
        return s.replaceAll("\\s*[\\r\\n]+\\s*", " ").trim();
    }
}
