package io.lora4j.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.OptionalInt;

/**
 * Text to token ids and back, for Llama-family vocabularies. Load one with
 * {@link Tokenizers#load(java.nio.file.Path)}. Implementations are immutable and thread-safe.
 *
 * <h2>Special tokens and BOS</h2>
 * {@link #encode} reads its text literally: a special-token string such as {@code "</s>"} or
 * {@code "<|eot_id|>"} inside it is tokenized as ordinary characters, so user data cannot forge
 * control tokens. {@link #encodeWithSpecials} recognises every special/added token string as its
 * single id; use it for rendered chat templates.
 * <p>
 * The no-double-BOS rule: with {@code addBos}, the ids start with exactly one BOS. {@code encode}
 * reads a BOS string at the very start of the text as that BOS (it is not encoded as text, and
 * no second BOS is added); {@code encodeWithSpecials} adds BOS only when the ids do not already
 * start with it. Likewise {@code addEos} appends EOS only when the ids do not already end with
 * it. Without {@code addBos} nothing is added or consumed. A tokenizer without a BOS or EOS
 * token ({@link #bosId()} &lt; 0) adds nothing for the flag.
 */
public interface Tokenizer {

    /**
     * Encodes plain text (special-token strings are ordinary text; see the class comment for
     * the BOS rule).
     *
     * @param addBos start with the BOS id
     * @param addEos end with the EOS id
     * @return token ids, each in [0, {@link #vocabSize()})
     */
    int[] encode(String text, boolean addBos, boolean addEos);

    /**
     * Encodes text in which special and added token strings (e.g. {@code "<|start_header_id|>"},
     * {@code "<s>"}) stand for their single ids; the text between them is encoded as by
     * {@link #encode}. BOS/EOS are added by the flags without doubling (class comment).
     */
    int[] encodeWithSpecials(String text, boolean addBos, boolean addEos);

    /**
     * The BOS/EOS rules of every tokenizer, in one place. {@link #encode}: BOS first (a BOS piece
     * at the start of the text is taken as that BOS, not encoded again), EOS last unless the ids
     * already end with it. {@link #encodeWithSpecials}: BOS and EOS only where the ids do not
     * already start / end with them (a rendered chat template brings its own).
     *
     * @param text        the text to encode
     * @param bosId       the BOS id, or < 0 when there is none (likewise eosId)
     * @param bosPiece    the BOS id's piece (null when there is none)
     * @param withSpecials the {@link #encodeWithSpecials} rule instead of {@link #encode}'s
     * @param body        encodes the text after the flags are applied (without BOS/EOS)
     */
    static int[] withBosEos(String text, boolean addBos, boolean addEos, int bosId, int eosId, String bosPiece,
            boolean withSpecials, java.util.function.Function<String, int[]> body) {
        boolean stripBos = !withSpecials && addBos && bosId >= 0 && bosPiece != null && text.startsWith(bosPiece);
        int[] ids = body.apply(stripBos ? text.substring(bosPiece.length()) : text);
        boolean bos = addBos && bosId >= 0 && (!withSpecials || ids.length == 0 || ids[0] != bosId);
        int last = ids.length > 0 ? ids[ids.length - 1] : !withSpecials && bos ? bosId : -1;
        boolean eos = addEos && eosId >= 0 && last != eosId;
        if (!bos && !eos) return ids;
        int[] r = new int[ids.length + (bos ? 1 : 0) + (eos ? 1 : 0)];
        if (bos) r[0] = bosId;
        System.arraycopy(ids, 0, r, bos ? 1 : 0, ids.length);
        if (eos) r[r.length - 1] = eosId;
        return r;
    }

    /** {@link #encodeWithSpecials(String, boolean, boolean)} adding neither BOS nor EOS. */
    default int[] encodeWithSpecials(String text) {
        return encodeWithSpecials(text, false, false);
    }

    /**
     * Decodes ids to text, dropping special/control tokens (BOS, EOS, chat markers): the
     * inverse of {@link #encode} for text that round-trips.
     *
     * @throws IllegalArgumentException for an id outside [0, {@link #vocabSize()})
     */
    default String decode(int[] ids) {
        return decode(ids, false);
    }

    /**
     * Decodes ids to text; with {@code renderSpecials} special tokens appear as their strings
     * (e.g. {@code "<|begin_of_text|>"}), as in a rendered chat template.
     *
     * @throws IllegalArgumentException for an id outside [0, {@link #vocabSize()})
     */
    String decode(int[] ids, boolean renderSpecials);

    /**
     * The bytes token {@code id} contributes to the output when it follows {@code prevId}, as in
     * llama2.c's {@code decode}: a SentencePiece piece right after BOS (or at the start,
     * {@code prevId < 0}) loses its leading space; a byte-fallback piece is its single raw byte;
     * special tokens give no bytes. Multi-byte characters may be split over several tokens, so
     * stream through {@link StreamDecoder} to print text.
     *
     * @throws IllegalArgumentException for an id outside [0, {@link #vocabSize()})
     */
    byte[] decodePieceBytes(int prevId, int id);

    /**
     * {@link #decodePieceBytes} as a String. Lossy where a token holds only part of a UTF-8
     * character (it becomes U+FFFD); use {@link StreamDecoder} for generation output.
     */
    default String decodePiece(int prevId, int id) {
        return new String(decodePieceBytes(prevId, id), StandardCharsets.UTF_8);
    }

    /** Number of ids: every id the tokenizer produces or decodes is in [0, vocabSize). */
    int vocabSize();

    /** The beginning-of-sequence id, or -1 when the vocabulary has none. */
    int bosId();

    /** The end-of-sequence id, or -1 when the vocabulary has none. */
    int eosId();

    /** The padding id, when the tokenizer defines one (Llama 2 and Llama 3 do not). */
    OptionalInt padId();

    /** The id of the piece/token string exactly as stored in the vocabulary, or -1 if absent. */
    int tokenId(String piece);

    /**
     * The vocabulary string of {@code id} as stored (SentencePiece pieces with {@code "▁"},
     * byte-level BPE tokens in the GPT-2 byte alphabet, special tokens as written).
     *
     * @throws IllegalArgumentException for an id outside [0, {@link #vocabSize()})
     */
    String piece(int id);

    /** Whether {@code id} is a special/control token (dropped by {@link #decode(int[])}). */
    boolean isSpecial(int id);

    /** Every string {@link #encodeWithSpecials} reads as a single id, with that id. */
    Map<String, Integer> specialTokens();
}
