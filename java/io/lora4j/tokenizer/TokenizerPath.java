package io.lora4j.tokenizer;

import io.lora4j.io.FormatException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Where a model's tokenizer is, for the commands and runs that are given a model and maybe a tokenizer. */
public final class TokenizerPath {
    private TokenizerPath() {}

    /**
     * The tokenizer path: {@code explicit} when given, else the model directory itself (see
     * {@link Tokenizers#load}), else {@code tokenizer.model}, {@code tokenizer.bin} or
     * {@code tokenizer.json} beside a model file, in that order.
     *
     * @param model    a model directory or file
     * @param explicit the tokenizer the user named, or null
     * @throws FormatException when none is given and none lies beside the model file
     */
    public static Path of(Path model, Path explicit) throws FormatException {
        if (explicit != null) return explicit;
        if (Files.isDirectory(model)) return model;
        Path dir = model.toAbsolutePath().getParent();
        for (String n : new String[] {"tokenizer.model", "tokenizer.bin", "tokenizer.json"}) {
            Path p = dir == null ? null : dir.resolve(n);
            if (p != null && Files.isRegularFile(p)) return p;
        }
        throw new FormatException(model, "no tokenizer.model, tokenizer.bin or tokenizer.json beside the model: give one (tokenizer: / --tokenizer PATH)");
    }
}
