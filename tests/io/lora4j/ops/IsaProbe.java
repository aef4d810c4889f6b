package io.lora4j.ops;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Runs a probe's {@code main} in a child JVM with LORA4J_DECODE_ISA forced (the variable is read
 * once per process), for tests that compare the CPU kernels' ISA paths.
 */
public final class IsaProbe {
    private IsaProbe() {}

    /** "scalar", then "avx2" and "avx512" where this CPU has them. */
    public static List<String> paths() {
        List<String> isas = new ArrayList<>(List.of("scalar"));
        String best = CpuBackend.decodeIsa();
        if (best.equals("avx2") || best.equals("avx512")) isas.add("avx2");
        if (best.equals("avx512")) isas.add("avx512");
        return isas;
    }

    /** The child JVM running {@code main} under {@code isa}, stderr merged into stdout. */
    public static ProcessBuilder command(Class<?> main, String isa) {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        ProcessBuilder pb = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), main.getName());
        pb.environment().put("LORA4J_DECODE_ISA", isa);
        pb.redirectErrorStream(true);
        return pb;
    }

    /**
     * The output lines of {@code main} under {@code isa}, after checking that it exited 0 and that
     * its first line names the path taken ({@link CpuBackend#decodeIsa}).
     */
    public static List<String> run(Class<?> main, String isa) throws Exception {
        Process p = command(main, isa).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertEquals(0, p.waitFor(), out);
        List<String> lines = new ArrayList<>(List.of(out.strip().split("\n")));
        int at = lines.indexOf(isa);
        assertEquals(true, at >= 0, "the forced path " + isa + " was taken: " + out);
        return lines.subList(at + 1, lines.size());
    }

    /**
     * The output lines of {@code main} on the first path of {@link #paths()}, after checking that
     * every other path printed exactly the same lines.
     */
    public static List<String> sameOnEveryPath(Class<?> main) throws Exception {
        List<String> base = null;
        for (String isa : paths()) {
            List<String> got = run(main, isa);
            if (base == null) base = got;
            else assertEquals(base, got, "LORA4J_DECODE_ISA=" + isa + " against " + paths().get(0));
        }
        return base;
    }
}
