package io.lora4j.tokenizer;

import io.lora4j.io.Quoted;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;

/**
 * Loads a {@link Tokenizer} from a file or a model directory:
 * <ul>
 * <li>{@code tokenizer.model}: a SentencePiece BPE protobuf (Llama 2) -> {@link SentencePieceBpe};</li>
 * <li>{@code tokenizer.bin}: llama2.c's export of the same -> {@link SentencePieceBpe};</li>
 * <li>{@code tokenizer.json}: HF BPE, byte-level (Llama 3, Qwen) or SentencePiece-style with byte
 *     fallback (Gemma 3) -> {@link ByteLevelBpe};</li>
 * <li>a directory: its {@code tokenizer.json} when that is byte-level BPE, else its
 *     {@code tokenizer.model} (HF Llama 2 directories carry both), else {@code tokenizer.bin}.</li>
 * </ul>
 * Other file names are recognised by content ('{' = JSON, a protobuf field-1 tag = model,
 * otherwise llama2.c). A {@code tokenizer_config.json} beside the file supplies bos/eos/pad
 * tokens and added tokens (for SentencePiece, tokens with ids past the model's pieces extend the
 * vocabulary).
 */
public final class Tokenizers {
    /** Upper bound on ids accepted from a file: larger means corruption, not a real vocabulary. */
    static final int MAX_VOCAB = 1 << 24;
    /** Files above this are refused before reading (the largest real tokenizer.json is ~20 MB). */
    static final long MAX_FILE_BYTES = 1L << 30;

    private Tokenizers() {}

    /**
     * @param path a tokenizer file or a model directory
     * @throws TokenizerException for a missing, truncated, corrupt or unsupported file (one line
     *                            naming the file and the problem)
     * @throws IOException        when reading fails
     */
    public static Tokenizer load(Path path) throws IOException {
        if (Files.isDirectory(path)) {
            Path json = path.resolve("tokenizer.json"), model = path.resolve("tokenizer.model"),
                    bin = path.resolve("tokenizer.bin");
            if (Files.isRegularFile(json)) {
                JsonObject root = Json.parseObject(json, read(json));
                if (HfTokenizerJsonReader.isByteLevel(root) || !Files.isRegularFile(model))
                    return HfTokenizerJsonReader.read(json, root, config(json));
            }
            if (Files.isRegularFile(model)) return loadSentencePiece(model);
            if (Files.isRegularFile(bin)) return loadLlama2c(bin);
            throw new TokenizerException(path, "no tokenizer.json, tokenizer.model or tokenizer.bin in this directory");
        }
        String name = path.getFileName() == null ? "" : path.getFileName().toString().toLowerCase(Locale.ROOT);
        if (name.endsWith(".json")) return loadHfJson(path);
        if (name.endsWith(".model")) return loadSentencePiece(path);
        if (name.endsWith(".bin")) return loadLlama2c(path);
        byte[] data = read(path);
        int first = 0;
        while (first < data.length && Character.isWhitespace(data[first])) first++;
        if (first < data.length && data[first] == '{')
            return HfTokenizerJsonReader.read(path, Json.parseObject(path, data), config(path));
        // A ModelProto starts with field 1 (pieces), wire type 2: tag byte 0x0A.
        if (data.length > 0 && data[0] == 0x0a) return sentencePiece(path, SentencePieceModelReader.read(path, data));
        return sentencePiece(path, Llama2cTokenizerReader.read(path, data));
    }

    /** Loads a SentencePiece {@code tokenizer.model} (BPE only). */
    public static SentencePieceBpe loadSentencePiece(Path file) throws IOException {
        return sentencePiece(file, SentencePieceModelReader.read(file, read(file)));
    }

    /** Loads a llama2.c {@code tokenizer.bin}. */
    public static SentencePieceBpe loadLlama2c(Path file) throws IOException {
        return sentencePiece(file, Llama2cTokenizerReader.read(file, read(file)));
    }

    /** Loads an HF BPE {@code tokenizer.json} (with its sibling tokenizer_config.json). */
    public static ByteLevelBpe loadHfJson(Path file) throws IOException {
        return HfTokenizerJsonReader.read(file, Json.parseObject(file, read(file)), config(file));
    }

    private static SentencePieceBpe sentencePiece(Path file, SentencePieceBpe.Vocab v) throws IOException {
        return new SentencePieceBpe(file, withConfig(file, v, config(file)));
    }

    /** Applies tokenizer_config.json to a SentencePiece vocabulary: added tokens, then bos/eos/pad. */
    static SentencePieceBpe.Vocab withConfig(Path file, SentencePieceBpe.Vocab v, TokenizerConfig c)
            throws TokenizerException {
        if (c.file() == null) return v;
        String[] pieces = v.pieces();
        float[] scores = v.scores();
        byte[] types = v.types();
        int n = pieces.length;
        int maxId = n - 1;
        for (TokenizerConfig.AddedToken t : c.addedTokens()) maxId = Math.max(maxId, t.id());
        if (maxId >= n) {
            pieces = Arrays.copyOf(pieces, maxId + 1);
            scores = Arrays.copyOf(scores, maxId + 1);
            types = Arrays.copyOf(types, maxId + 1);
        }
        for (TokenizerConfig.AddedToken t : c.addedTokens()) {
            if (t.id() < n) {
                if (!pieces[t.id()].equals(t.content()))
                    throw new TokenizerException(c.file(), "added token " + t.id() + " " + Quoted.of(t.content())
                            + " differs from piece " + Quoted.of(pieces[t.id()]) + " of " + file.getFileName());
                continue;
            }
            pieces[t.id()] = t.content();
            types[t.id()] = t.special() ? SentencePieceBpe.CONTROL : SentencePieceBpe.USER_DEFINED;
        }
        for (int i = n; i < pieces.length; i++)
            if (pieces[i] == null)
                throw new TokenizerException(c.file(), "added tokens leave id " + i + " without a token (ids must follow "
                        + (n - 1) + " without gaps)");
        int bos = lookup(c, "bos_token", c.bosToken(), pieces, v.bosId());
        int eos = lookup(c, "eos_token", c.eosToken(), pieces, v.eosId());
        int pad = lookup(c, "pad_token", c.padToken(), pieces, v.padId());
        return new SentencePieceBpe.Vocab(pieces, scores, types, v.unkId(), bos, eos, pad, v.addDummyPrefix(),
                v.removeExtraWhitespaces());
    }

    private static int lookup(TokenizerConfig c, String key, String token, String[] pieces, int dflt)
            throws TokenizerException {
        if (token == null) return dflt;
        for (int i = 0; i < pieces.length; i++) if (pieces[i].equals(token)) return i;
        throw new TokenizerException(c.file(), key + " " + Quoted.of(token) + " is not in the vocabulary");
    }

    private static TokenizerConfig config(Path tokenizerFile) throws IOException {
        Path dir = tokenizerFile.toAbsolutePath().getParent();
        if (dir == null) return TokenizerConfig.NONE;
        Path cfg = dir.resolve("tokenizer_config.json");
        return Files.isRegularFile(cfg) ? TokenizerConfig.read(cfg, read(cfg)) : TokenizerConfig.NONE;
    }

    static byte[] read(Path file) throws IOException {
        if (!Files.exists(file)) throw new TokenizerException(file, "no such file");
        if (!Files.isRegularFile(file)) throw new TokenizerException(file, "not a regular file");
        long size = Files.size(file);
        if (size > MAX_FILE_BYTES)
            throw new TokenizerException(file, size + " bytes is too large for a tokenizer (limit " + MAX_FILE_BYTES + ")");
        return Files.readAllBytes(file);
    }
}
