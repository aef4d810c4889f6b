package io.lora4j.cli;

import io.lora4j.io.FormatException;
import io.lora4j.ops.Mpi;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.DefaultParser;
import org.apache.commons.cli.MissingArgumentException;
import org.apache.commons.cli.MissingOptionException;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;
import org.apache.commons.cli.ParseException;
import org.apache.commons.cli.UnrecognizedOptionException;

/**
 * The {@code lora4j} command line: {@code lora4j <command> [options]}. Exit codes: 0 success, 1 bad
 * input (one line {@code lora4j <cmd>: <file>: <problem>} on stderr; the stack trace only with
 * LORA4J_DEBUG=1), 2 bad usage. This is the only place that calls {@code System.exit}.
 */
public final class Main {
    public static final String VERSION = "0.1.0-SNAPSHOT";

    private Main() {}

    public static void main(String[] args) {
        // One log line per record ("INFO: backend: cpu ..."), unless the user configured logging.
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null
                && System.getProperty("java.util.logging.config.file") == null)
            System.setProperty("java.util.logging.SimpleFormatter.format", "lora4j: %4$s: %5$s%6$s%n");
        int code = run(args, System.out, System.err, System.getenv());
        System.out.flush();
        // a rank of a data-parallel job that failed (its one-line error printed above) ends the whole
        // job: the others may wait in a collective, and srun does not end them on a non-zero exit
        if (code != Command.OK) Mpi.abortJobIfJoined(code);
        System.exit(code);
    }

    /** Runs {@code args} with the process environment; returns the exit code. */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        return run(args, out, err, System.getenv());
    }

    /** Runs {@code args} against the default registry; returns the exit code. */
    public static int run(String[] args, PrintStream out, PrintStream err, Map<String, String> env) {
        return run(CommandRegistry.defaults(), args, out, err, env);
    }

    /** Runs {@code args} against {@code registry}; returns the exit code. */
    public static int run(CommandRegistry registry, String[] args, PrintStream out, PrintStream err, Map<String, String> env) {
        CliContext ctx = new CliContext(out, err, env);
        if (args.length == 0) {
            printGeneralHelp(registry, err);
            return Command.USAGE;
        }
        String first = args[0];
        if (first.equals("--help") || first.equals("-h") || first.equals("help")) {
            if (args.length > 1 && registry.get(args[1]) != null) {
                printHelp(registry.get(args[1]), out);
            } else {
                printGeneralHelp(registry, out);
            }
            return Command.OK;
        }
        if (first.equals("--version")) {
            out.println("lora4j " + VERSION);
            return Command.OK;
        }
        Command cmd = registry.get(first);
        if (cmd == null) {
            String guess = Cli.closest(first, registry.all().stream().map(Command::name).collect(Collectors.toList()));
            err.println("lora4j: unknown command '" + first + "'" + (guess != null ? " (did you mean '" + guess + "'?)" : "") + " (commands: "
                    + registry.all().stream().map(Command::name).collect(Collectors.joining(", ")) + "; see lora4j --help)");
            return Command.USAGE;
        }
        String[] rest = Arrays.copyOfRange(args, 1, args.length);
        for (String a : rest) {
            if (a.equals("--")) break;
            if (a.equals("--help") || a.equals("-h")) {
                printHelp(cmd, out);
                return Command.OK;
            }
        }
        String prefix = "lora4j " + cmd.name() + ": ";
        CommandLine cl;
        Options options = withHelp(cmd.options());
        try {
            cl = DefaultParser.builder().setAllowPartialMatching(false).get().parse(options, rest);
        } catch (ParseException e) {
            err.println(prefix + describe(e, options) + " (see lora4j " + cmd.name() + " --help)");
            return Command.USAGE;
        }
        try {
            return cmd.run(cl, ctx);
        } catch (Exception | OutOfMemoryError | LinkageError | StackOverflowError e) {
            return fail(cmd.name(), e, ctx, "");
        }
    }

    /**
     * Prints the one line for a command that threw {@code e} and returns its exit code: a usage
     * problem, a problem with the input, or an internal error. {@code linePrefix} goes first, in
     * the same write (a data-parallel rank's "rank r/n: ": a launcher that interleaves the ranks'
     * output never splits the line).
     */
    static int fail(String command, Throwable e, CliContext ctx, String linePrefix) {
        PrintStream err = ctx.err();
        String prefix = linePrefix + "lora4j " + command + ": ";
        if (e instanceof UsageException) {
            err.println(prefix + oneLine(e.getMessage()) + " (see lora4j " + command + " --help)");
            return Command.USAGE;
        }
        if (e instanceof IOException || e instanceof UncheckedIOException || e instanceof IllegalArgumentException) {
            Throwable t = e instanceof UncheckedIOException ? e.getCause() : e;
            err.println(prefix + inputProblem(t));
        } else {
            err.println(prefix + "internal error: " + e.getClass().getSimpleName() + ": " + oneLine(e.getMessage())
                    + (ctx.debug() ? "" : " (LORA4J_DEBUG=1 shows the stack trace)"));
        }
        if (ctx.debug()) e.printStackTrace(err);
        return Command.FAILURE;
    }

    private static Options withHelp(Options o) {
        Options all = new Options();
        for (Option opt : o.getOptions()) all.addOption(opt);
        if (!all.hasLongOption("help")) all.addOption(Option.builder("h").longOpt("help").desc("show this help and exit").get());
        return all;
    }

    private static String describe(ParseException e, Options options) {
        if (e instanceof UnrecognizedOptionException u) return unknownOption(u.getOption(), options);
        if (e instanceof MissingOptionException m) {
            List<String> names = new ArrayList<>();
            for (Object o : m.getMissingOptions()) names.add("--" + (o instanceof Option op ? op.getLongOpt() : o));
            return "missing required option" + (names.size() > 1 ? "s " : " ") + String.join(", ", names);
        }
        if (e instanceof MissingArgumentException a) return "option --" + a.getOption().getLongOpt() + " needs a value";
        return oneLine(e.getMessage());
    }

    /** "unknown option --learning-rat (did you mean --learning_rate?)": the closest long option of the command. */
    static String unknownOption(String given, Options options) {
        String flag = given.contains("=") ? given.substring(0, given.indexOf('=')) : given;
        List<String> names = new ArrayList<>();
        for (Option o : options.getOptions()) if (o.getLongOpt() != null) names.add(o.getLongOpt());
        String guess = Cli.closest(flag.replaceFirst("^-+", ""), names);
        return "unknown option " + flag + (guess != null ? " (did you mean --" + guess + "?)" : "");
    }

    /** The one-line form of a bad-input exception: "file: problem" where the file is known. */
    static String inputProblem(Throwable t) {
        if (t instanceof FormatException f) return oneLine(f.getMessage());
        if (t instanceof NoSuchFileException n) return n.getFile() + ": no such file or directory";
        if (t instanceof AccessDeniedException a) return a.getFile() + ": permission denied";
        if (t instanceof FileSystemException f && f.getFile() != null)
            return f.getFile() + ": " + oneLine(f.getReason() != null ? f.getReason() : f.getClass().getSimpleName());
        return oneLine(t.getMessage() != null ? t.getMessage() : t.getClass().getSimpleName());
    }

    static String oneLine(String s) {
        if (s == null) return "(no message)";
        return s.replaceAll("\\s*[\\r\\n]+\\s*", " ").trim();
    }

    static void printGeneralHelp(CommandRegistry registry, PrintStream out) {
        out.println("usage: lora4j <command> [options]      (lora4j <command> --help for its options)");
        out.println();
        out.println("LoRA/QLoRA fine-tuning of Llama models on the JVM. Commands:");
        int w = 0;
        for (Command c : registry.all()) w = Math.max(w, c.name().length());
        for (Command c : registry.all()) out.printf("  %-" + w + "s   %s%n", c.name(), c.summary());
        out.println();
        out.println("M (a model) is a llama2.c .bin or an HF directory (config.json + *.safetensors, plain or bnb-4bit).");
        out.println("Exit codes: 0 success, 1 bad input, 2 bad usage. LORA4J_DEBUG=1 prints stack traces.");
    }

    static void printHelp(Command c, PrintStream out) {
        out.println("usage: lora4j " + c.synopsis());
        out.println();
        out.println(c.summary());
        if (!c.description().isEmpty()) {
            out.println();
            out.println(c.description());
        }
        out.println();
        out.println("options:");
        List<String[]> rows = new ArrayList<>();
        for (Option o : withHelp(c.options()).getOptions()) {
            String flag = (o.getOpt() != null && !o.getOpt().equals(o.getLongOpt()) ? "-" + o.getOpt() + ", " : "    ") + "--" + o.getLongOpt()
                    + (o.hasArg() ? " " + (o.getArgName() != null ? o.getArgName() : "VALUE") : "");
            rows.add(new String[] {flag, (o.isRequired() ? "(required) " : "") + (o.getDescription() == null ? "" : o.getDescription())});
        }
        int w = 0;
        for (String[] r : rows) w = Math.max(w, r[0].length());
        for (String[] r : rows) out.printf("  %-" + w + "s   %s%n", r[0], r[1]);
    }
}
