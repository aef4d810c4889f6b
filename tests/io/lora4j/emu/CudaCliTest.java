package io.lora4j.emu;

import static org.junit.jupiter.api.Assertions.*;

import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.train.TinyRun;
import java.io.File;
import java.io.IOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code lora4j train --device cuda} as a user runs it: a fresh JVM whose only hint is the
 * environment variable {@code LORA4J_NATIVE} (what the {@code lora4j} launcher passes on), which
 * must select the same stand-in library this JVM runs on, name it in the backend line and train.
 */
class CudaCliTest {
    @TempDir
    Path tmp;

    /** This JVM's class path, including what a launcher's class loader added (JUnit's console launcher). */
    private static String classPath() {
        List<String> parts = new ArrayList<>();
        if (CudaCliTest.class.getClassLoader() instanceof URLClassLoader u) {
            for (URL url : u.getURLs()) {
                try {
                    parts.add(Path.of(url.toURI()).toString());
                } catch (URISyntaxException e) {
                    throw new IllegalStateException(e);
                }
            }
        }
        parts.add(System.getProperty("java.class.path"));
        return String.join(File.pathSeparator, parts);
    }

    @Test
    void trainOnDeviceCudaThroughTheEnvironmentVariable() throws IOException, InterruptedException {
        Twins.cuda();
        Path lib = NativeLibrary.standIn();
        Path yaml = TinyRun.write(tmp.resolve("tiny"), "r: 4\nlora_alpha: 8\nmax_steps: 2\nper_device_train_batch_size: 2\n"
                + "gradient_accumulation_steps: 1\nmax_seq_length: 32\n");
        Path out = tmp.resolve("out");
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Djava.awt.headless=true", "-cp", classPath(), "io.lora4j.cli.Main", "train",
                "--config", yaml.toString(), "--out", out.toString(), "--device", "cuda"));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        pb.environment().remove(NativeLibrary.ENV);
        if (lib != null) pb.environment().put(NativeLibrary.ENV, lib.toString()); // else: a real GPU, nothing to select
        Process p = pb.start();
        String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(5, TimeUnit.MINUTES), "lora4j train did not finish");
        assertEquals(0, p.exitValue(), log);
        assertTrue(log.contains("cuda ("), "the run names its CUDA backend:\n" + log);
        if (NativeLibrary.cudaEmulated()) assertTrue(log.contains("cuda (emulated)"), log);
        assertTrue(Files.isRegularFile(out.resolve("adapter_model.safetensors")), log);
        assertTrue(Files.readString(out.resolve("metrics.jsonl")).contains("\"step\":2"), "two steps logged");
    }
}
