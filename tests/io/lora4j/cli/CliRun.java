package io.lora4j.cli;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;

/** Runs the {@code lora4j} command line in this JVM and captures what it printed. */
final class CliRun {
    private CliRun() {}

    /** Exit code, stdout and stderr of one invocation. */
    record Result(int code, String out, String err) {}

    /** {@link Main#run} with {@code args}, an empty environment and captured output streams. */
    static Result run(String... args) {
        ByteArrayOutputStream o = new ByteArrayOutputStream(), e = new ByteArrayOutputStream();
        int code;
        try (PrintStream po = new PrintStream(o, true, StandardCharsets.UTF_8); PrintStream pe = new PrintStream(e, true, StandardCharsets.UTF_8)) {
            code = Main.run(args, po, pe, Map.of());
        }
        return new Result(code, o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8));
    }
}
