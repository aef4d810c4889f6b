package io.lora4j.dist;

import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

/**
 * The log of one rank of a data-parallel run. Rank 0 speaks for the run: its lines pass as they
 * are, except warnings and errors, which gain "rank 0/W: ". The other ranks print only their
 * warnings and errors (lines that start with "warning" or "error", or contain "error:"), each
 * prefixed with "rank r/W: "; their progress lines would repeat rank 0's.
 */
public final class RankLog {
    private RankLog() {}

    /** {@code err} itself for a single process, else a line filter over it (see the class comment). */
    public static PrintStream of(PrintStream err, World world) {
        if (!world.distributed()) return err;
        return new PrintStream(new LineFilter(err, world), true, StandardCharsets.UTF_8);
    }

    static boolean isProblem(String line) {
        String l = line.stripLeading();
        return l.startsWith("warning") || l.startsWith("error") || l.contains("error:");
    }

    private static final class LineFilter extends OutputStream {
        private final PrintStream err;
        private final World world;
        private final ByteArrayOutputStream line = new ByteArrayOutputStream();

        LineFilter(PrintStream err, World world) {
            this.err = err;
            this.world = world;
        }

        @Override
        public synchronized void write(int b) {
            if (b == '\n') {
                emit();
            } else {
                line.write(b);
            }
        }

        @Override
        public synchronized void flush() {
            err.flush();
        }

        @Override
        public synchronized void close() {
            if (line.size() > 0) emit();
            err.flush();
        }

        private void emit() {
            String s = line.toString(StandardCharsets.UTF_8);
            line.reset();
            if (isProblem(s)) {
                err.println(world.prefix() + s);
            } else if (world.isLeader()) {
                err.println(s);
            }
        }
    }
}
