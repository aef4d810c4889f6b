package io.lora4j.cli;

import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Options;

/**
 * A {@code lora4j} subcommand. {@link Main} parses the options, prints {@code --help}, and turns
 * exceptions into the exit codes of the CLI contract (DESIGN.md §8): a command returns its exit
 * code and never calls {@code System.exit}.
 *
 * <ul>
 *   <li>{@link UsageException}: bad usage, exit {@value #USAGE};
 *   <li>{@link java.io.IOException} (e.g. {@link io.lora4j.io.FormatException}) and
 *       {@link IllegalArgumentException}: bad input, exit {@value #FAILURE}, the message printed
 *       as one line {@code lora4j <cmd>: <message>}.
 * </ul>
 */
public interface Command {
    int OK = 0;
    int FAILURE = 1;
    int USAGE = 2;

    /** The subcommand word, e.g. "quantize". */
    String name();

    /** One line for the command list. */
    String summary();

    /** The synopsis after "lora4j", e.g. "quantize --model M --out DIR [options]". */
    String synopsis();

    /** A paragraph printed under the synopsis in --help (may be empty). */
    default String description() {
        return "";
    }

    /** The options (Main adds --help). */
    Options options();

    /** Runs with parsed options; returns the exit code. */
    int run(CommandLine cl, CliContext ctx) throws Exception;
}
