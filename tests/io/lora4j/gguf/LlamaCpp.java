package io.lora4j.gguf;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * llama.cpp as the tests' reference consumer: node-llama-cpp@3.21.1 (pinned in
 * scripts/llamacpp/package-lock.json, installed by .ci/run with {@code npm ci}) runs
 * scripts/llamacpp/check.mjs; scripts/llamacpp/ggml_oracle.c calls ggml's own quantizers in the
 * shared libraries that package ships. Tests skip, saying why, only when the package is not installed.
 */
final class LlamaCpp {
    static final Path DIR = Path.of("scripts", "llamacpp").toAbsolutePath();
    static final Path LIBDIR = DIR.resolve("node_modules/@node-llama-cpp/linux-x64/bins/linux-x64");
    static final long TIMEOUT_S = 600;

    private LlamaCpp() {}

    /** Why llama.cpp cannot run here, or null when it can. */
    static String unavailable() {
        if (!Files.isDirectory(DIR.resolve("node_modules/node-llama-cpp")))
            return "node-llama-cpp is not installed: run `npm ci` in scripts/llamacpp (.ci/run does)";
        if (!Files.isRegularFile(LIBDIR.resolve("libggml-base.so"))) return "node-llama-cpp has no linux-x64 CPU binary here";
        return null;
    }

    /** Runs check.mjs on {@code jobs}; returns its JSON output. */
    static JsonObject check(JsonObject jobs, Path work) throws IOException, InterruptedException {
        Path f = work.resolve("jobs.json");
        Files.writeString(f, jobs.toString());
        String out = run(List.of("node", DIR.resolve("check.mjs").toString(), f.toString()), DIR);
        return JsonParser.parseString(out.substring(out.indexOf('{'))).getAsJsonObject();
    }

    /** The ggml oracle, compiled once into target/ with the system C compiler. */
    static Path oracle() throws IOException, InterruptedException {
        Path dir = Path.of("target", "ggml-oracle").toAbsolutePath();
        Path bin = dir.resolve("ggml_oracle");
        Path src = DIR.resolve("ggml_oracle.c");
        if (!Files.isExecutable(bin) || Files.getLastModifiedTime(bin).compareTo(Files.getLastModifiedTime(src)) < 0) {
            Files.createDirectories(dir);
            run(List.of("cc", "-O2", "-o", bin.toString(), src.toString(), "-ldl"), dir);
        }
        return bin;
    }

    /** Runs the oracle with {@code args} after its library directory. */
    static void oracle(String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(oracle().toString(), LIBDIR.toString()));
        cmd.addAll(List.of(args));
        run(cmd, DIR);
    }

    private static String run(List<String> cmd, Path cwd) throws IOException, InterruptedException {
        Path log = Files.createTempFile("lora4j-llamacpp", ".log");
        Path out = Files.createTempFile("lora4j-llamacpp", ".out");
        try {
            Process p = new ProcessBuilder(cmd).directory(cwd.toFile()).redirectError(log.toFile()).redirectOutput(out.toFile()).start();
            if (!p.waitFor(TIMEOUT_S, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IOException(cmd.get(0) + " did not finish in " + TIMEOUT_S + " s");
            }
            if (p.exitValue() != 0)
                throw new IOException(String.join(" ", cmd) + " exited " + p.exitValue() + ": " + Files.readString(log, StandardCharsets.UTF_8));
            return Files.readString(out, StandardCharsets.UTF_8);
        } finally {
            Files.deleteIfExists(log);
            Files.deleteIfExists(out);
        }
    }
}
