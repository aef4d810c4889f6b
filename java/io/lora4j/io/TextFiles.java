package io.lora4j.io;

import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * Reads the small text files of a model or adapter directory (config.json, index and tokenizer
 * configs, chat templates) with strict UTF-8 decoding and a size limit, so that a hostile file is
 * a one-line {@link FormatException} instead of a {@code MalformedInputException} ("Input length
 * = 1") or an {@link OutOfMemoryError}.
 */
public final class TextFiles {
    /** The largest config-like text file read (HF tokenizer.json files run to ~20 MB). */
    public static final long MAX_TEXT_BYTES = 256L << 20;

    private TextFiles() {}

    /**
     * The file's text.
     *
     * @throws FormatException when it is missing, larger than {@link #MAX_TEXT_BYTES}, or not UTF-8
     */
    public static String readUtf8(Path file) throws IOException {
        try {
            if (!Files.isRegularFile(file)) throw new FormatException(file, Files.exists(file) ? "not a regular file" : "no such file");
            long size = Files.size(file);
            if (size > MAX_TEXT_BYTES)
                throw new FormatException(file, "is " + size + " bytes, more than the " + MAX_TEXT_BYTES + " read for a text file");
            return Files.readString(file, StandardCharsets.UTF_8);
        } catch (CharacterCodingException e) {
            throw new FormatException(file, "not UTF-8 text");
        } catch (NoSuchFileException e) {
            throw new FormatException(file, "no such file");
        }
    }
}
