package io.lora4j.model;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Files;
import java.nio.file.Path;

/** The real assets of scripts/fetch-assets.sh, for tests ($LORA4J_CACHE or ~/.cache/lora4j). */
public final class Assets {
    private Assets() {}

    public static Path cache() {
        String env = System.getenv("LORA4J_CACHE");
        return env != null && !env.isEmpty() ? Path.of(env) : Path.of(System.getProperty("user.home"), ".cache", "lora4j");
    }

    /** The asset's path; skips the calling test (with the reason) when it was not fetched. */
    public static Path require(String name) {
        Path p = cache().resolve(name);
        assumeTrue(Files.exists(p), "asset missing: " + p + " (run scripts/fetch-assets.sh)");
        return p;
    }
}
