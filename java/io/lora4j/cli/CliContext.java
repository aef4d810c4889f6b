package io.lora4j.cli;

import java.io.PrintStream;
import java.util.Map;

/**
 * What a command may use of its surroundings: where to print and the environment.
 *
 * @param out the result (text, or JSON with --json)
 * @param err diagnostics and progress
 * @param env environment variables (LORA4J_DEBUG, LORA4J_CACHE, ...)
 */
public record CliContext(PrintStream out, PrintStream err, Map<String, String> env) {
    public CliContext {
        env = Map.copyOf(env);
    }

    /** LORA4J_DEBUG=1: print stack traces. */
    public boolean debug() {
        String d = env.get("LORA4J_DEBUG");
        return d != null && !d.isEmpty() && !d.equals("0") && !d.equalsIgnoreCase("false");
    }
}
