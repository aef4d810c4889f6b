package io.lora4j.tokenizer;

import io.lora4j.io.Quoted;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;

/**
 * SentencePiece's BPE model with byte fallback, as Llama 2 uses it (sentencepiece
 * {@code bpe_model.cc} and {@code normalizer.cc}), loaded from a {@code tokenizer.model}
 * protobuf or a llama2.c {@code tokenizer.bin}.
 * <p>
 * Encoding: normalise (identity; with {@code add_dummy_prefix} a {@code "▁"} (U+2581) is
 * prepended to non-empty text, and every space becomes {@code "▁"}); split into characters
 * (user-defined pieces are matched whole and never merged); then repeatedly merge the adjacent
 * pair whose concatenation is a vocabulary piece with the highest score, leftmost on ties; a
 * final symbol that is not a piece becomes its UTF-8 bytes as {@code <0xNN>} pieces (byte
 * fallback) or {@code <unk>}. A priority queue over a linked list of symbols makes this
 * O(n log n) in the text length.
 * <p>
 * Decoding joins the pieces, turns {@code "▁"} into spaces and byte pieces back into UTF-8, and
 * drops the leading space of the first piece (the dummy prefix), as SentencePiece does.
 */
public final class SentencePieceBpe implements Tokenizer {
    // sentencepiece_model.proto, SentencePiece.Type
    static final byte NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6;
    private static final char SPACE_SYMBOL = '\u2581';
    /** SentencePiece renders {@code <unk>} as " ⁇ " (U+2047) when decoding. */
    private static final String UNK_SURFACE = " \u2047 ";

    private final String[] pieces;
    private final float[] scores;
    private final byte[] types;
    /** What a merge may produce: normal, user-defined and unused pieces (sentencepiece's pieces_). */
    private final HashMap<String, Integer> mergeable;
    /** Every piece, for {@link #tokenId}. */
    private final HashMap<String, Integer> allPieces;
    private final int[] byteIds = new int[256];
    private final boolean byteFallback;
    private final int unkId, bosId, eosId, padId;
    private final boolean addDummyPrefix, removeExtraWhitespaces;
    private final HashMap<String, Integer> userDefined = new HashMap<>();
    private int maxUserDefinedLength;
    private final Map<String, Integer> specials;
    private final SpecialTokenMatcher specialMatcher;

    /**
     * What a reader produces. {@code types} holds SentencePiece.Type values per piece; a special
     * id is -1 when absent.
     */
    record Vocab(String[] pieces, float[] scores, byte[] types, int unkId, int bosId, int eosId, int padId,
                 boolean addDummyPrefix, boolean removeExtraWhitespaces) {}

    /**
     * @throws TokenizerException (naming {@code source}) for duplicate pieces, a bad byte piece
     *                            or a special id outside the vocabulary
     */
    SentencePieceBpe(Path source, Vocab v) throws TokenizerException {
        String[] pieces = v.pieces();
        float[] scores = v.scores();
        byte[] types = v.types();
        int unkId = v.unkId(), bosId = v.bosId(), eosId = v.eosId(), padId = v.padId();
        boolean addDummyPrefix = v.addDummyPrefix(), removeExtraWhitespaces = v.removeExtraWhitespaces();
        int n = pieces.length;
        if (n == 0) throw new TokenizerException(source, "the vocabulary is empty");
        this.pieces = pieces;
        this.scores = scores;
        this.types = types;
        this.addDummyPrefix = addDummyPrefix;
        this.removeExtraWhitespaces = removeExtraWhitespaces;
        mergeable = new HashMap<>(n * 2);
        allPieces = new HashMap<>(n * 2);
        java.util.Arrays.fill(byteIds, -1);
        int bytes = 0;
        for (int i = 0; i < n; i++) {
            String p = pieces[i];
            if (p.isEmpty()) throw new TokenizerException(source, "piece " + i + " is empty");
            if (Float.isNaN(scores[i])) throw new TokenizerException(source, "piece " + i + " has a NaN score");
            Integer prev = allPieces.putIfAbsent(p, i);
            if (prev != null)
                throw new TokenizerException(source, "piece " + i + " " + Quoted.of(p) + " duplicates piece " + prev);
            switch (types[i]) {
                case NORMAL, UNUSED -> mergeable.put(p, i);
                case USER_DEFINED -> {
                    mergeable.put(p, i);
                    userDefined.put(p, i);
                    maxUserDefinedLength = Math.max(maxUserDefinedLength, p.length());
                }
                case BYTE -> {
                    int b = parseBytePiece(p);
                    if (b < 0) throw new TokenizerException(source, "byte piece " + i + " is " + Quoted.of(p) + ", not <0xNN>");
                    if (byteIds[b] >= 0)
                        throw new TokenizerException(source, "byte piece " + i + " duplicates piece " + byteIds[b]);
                    byteIds[b] = i;
                    bytes++;
                }
                case UNKNOWN, CONTROL -> { }
                default -> throw new TokenizerException(source, "piece " + i + " has unknown type " + types[i]);
            }
        }
        if (bytes != 0 && bytes != 256)
            throw new TokenizerException(source, "byte fallback needs 256 byte pieces, found " + bytes);
        byteFallback = bytes == 256;
        checkSpecialId(source, "unk", unkId, n);
        checkSpecialId(source, "bos", bosId, n);
        checkSpecialId(source, "eos", eosId, n);
        checkSpecialId(source, "pad", padId, n);
        if (unkId < 0 && !byteFallback)
            throw new TokenizerException(source, "no <unk> piece and no byte fallback: unknown characters have no id");
        this.unkId = unkId;
        this.bosId = bosId;
        this.eosId = eosId;
        this.padId = padId;
        Map<String, Integer> sp = new LinkedHashMap<>();
        List<SpecialTokenMatcher.Token> matchable = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            if (types[i] == CONTROL || types[i] == UNKNOWN) {
                sp.put(pieces[i], i);
                matchable.add(new SpecialTokenMatcher.Token(pieces[i], i, false, false));
            }
        }
        specials = Collections.unmodifiableMap(sp);
        specialMatcher = new SpecialTokenMatcher(matchable);
    }

    private static void checkSpecialId(Path source, String what, int id, int n) throws TokenizerException {
        if (id >= n || id < -1)
            throw new TokenizerException(source, what + " id " + id + " is outside the vocabulary of " + n);
    }

    /** The byte of a {@code <0xNN>} piece, or -1. */
    static int parseBytePiece(String p) {
        if (p.length() != 6 || !p.startsWith("<0x") || p.charAt(5) != '>') return -1;
        int hi = Character.digit(p.charAt(3), 16), lo = Character.digit(p.charAt(4), 16);
        return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
    }

    // ---------------------------------------------------------------- encode

    @Override
    public int[] encode(String text, boolean addBos, boolean addEos) {
        return Tokenizer.withBosEos(text, addBos, addEos, bosId, eosId, bosId >= 0 ? pieces[bosId] : null, false, t -> {
            IntList out = new IntList(t.length() / 3 + 4);
            encodeSegment(t, out);
            return out.toArray();
        });
    }

    @Override
    public int[] encodeWithSpecials(String text, boolean addBos, boolean addEos) {
        return Tokenizer.withBosEos(text, addBos, addEos, bosId, eosId, null, true, t -> {
            IntList out = new IntList(t.length() / 3 + 4);
            // Each text segment between specials is encoded on its own, dummy prefix included: the
            // behaviour of HF's (legacy) LlamaTokenizer, so "<s>[INST]" gives <s> ▁[ INST ].
            specialMatcher.split(t, new SpecialTokenMatcher.Sink() {
                @Override
                public void text(String s) {
                    encodeSegment(s, out);
                }

                @Override
                public void token(int id) {
                    out.add(id);
                }
            });
            return out.toArray();
        });
    }

    /** SentencePiece's identity normaliser with whitespace escaping. */
    private String normalize(String text) {
        String t = text;
        if (removeExtraWhitespaces) t = collapseSpaces(t);
        if (t.isEmpty()) return t; // sentencepiece adds no dummy prefix to empty input
        StringBuilder sb = new StringBuilder(t.length() + 1);
        if (addDummyPrefix) sb.append(SPACE_SYMBOL);
        for (int i = 0; i < t.length(); i++) {
            char c = t.charAt(i);
            sb.append(c == ' ' ? SPACE_SYMBOL : c);
        }
        return sb.toString();
    }

    /** Drops leading and trailing spaces and collapses runs (normalizer_spec.remove_extra_whitespaces). */
    private static String collapseSpaces(String t) {
        StringBuilder sb = new StringBuilder(t.length());
        boolean pendingSpace = false;
        for (int i = 0; i < t.length(); i++) {
            char c = t.charAt(i);
            if (c == ' ') {
                pendingSpace = sb.length() > 0;
            } else {
                if (pendingSpace) sb.append(' ');
                pendingSpace = false;
                sb.append(c);
            }
        }
        return sb.toString();
    }

    /** Appends the ids of plain text (no specials, no BOS/EOS). */
    void encodeSegment(String text, IntList out) {
        String norm = normalize(text);
        if (norm.isEmpty()) return;
        char[] c = norm.toCharArray();
        int cap = c.length;
        int[] start = new int[cap], end = new int[cap], prev = new int[cap], next = new int[cap];
        boolean[] frozen = userDefined.isEmpty() ? null : new boolean[cap];
        int n = 0;
        for (int i = 0; i < c.length; ) {
            int len = 0;
            if (frozen != null) len = matchUserDefined(norm, i);
            boolean freeze = len > 0;
            if (!freeze) len = Character.isHighSurrogate(c[i]) && i + 1 < c.length && Character.isLowSurrogate(c[i + 1]) ? 2 : 1;
            start[n] = i;
            end[n] = i + len;
            prev[n] = n - 1;
            next[n] = n + 1;
            if (frozen != null) frozen[n] = freeze;
            n++;
            i += len;
        }
        next[n - 1] = -1;

        MergeHeap heap = new MergeHeap(n);
        Map<String, String[]> revMerge = null;
        for (int i = 0; i + 1 < n; i++) revMerge = pushPair(heap, c, start, end, frozen, i, i + 1, revMerge);
        while (!heap.isEmpty()) {
            int l = heap.topLeft(), r = heap.topRight(), stampEnd = heap.topStamp();
            heap.pop();
            // Stale unless both symbols are alive, still adjacent and the right one unchanged
            // (a symbol only grows at its end, by absorbing its right neighbour).
            if (start[l] < 0 || start[r] < 0 || next[l] != r || end[r] != stampEnd) continue;
            end[l] = end[r];
            start[r] = -1;
            next[l] = next[r];
            if (next[r] >= 0) prev[next[r]] = l;
            if (prev[l] >= 0) revMerge = pushPair(heap, c, start, end, frozen, prev[l], l, revMerge);
            if (next[l] >= 0) revMerge = pushPair(heap, c, start, end, frozen, l, next[l], revMerge);
        }
        for (int s = 0; s >= 0; s = next[s]) emit(new String(c, start[s], end[s] - start[s]), out, revMerge);
    }

    private int matchUserDefined(String norm, int at) {
        for (int len = Math.min(maxUserDefinedLength, norm.length() - at); len > 0; len--)
            if (userDefined.containsKey(norm.substring(at, at + len))) return len;
        return 0;
    }

    private Map<String, String[]> pushPair(MergeHeap heap, char[] c, int[] start, int[] end, boolean[] frozen,
                                           int l, int r, Map<String, String[]> revMerge) {
        if (frozen != null && (frozen[l] || frozen[r])) return revMerge;
        String merged = new String(c, start[l], end[r] - start[l]);
        Integer id = mergeable.get(merged);
        if (id == null) return revMerge;
        heap.push(MergeHeap.scoreKey(scores[id], l), l, r, end[r]);
        if (types[id] == UNUSED) {
            // An unused piece may be a merge step but not an output: remember how to split it back.
            if (revMerge == null) revMerge = new HashMap<>();
            revMerge.put(merged, new String[] {new String(c, start[l], end[l] - start[l]),
                    new String(c, start[r], end[r] - start[r])});
        }
        return revMerge;
    }

    private void emit(String piece, IntList out, Map<String, String[]> revMerge) {
        Integer id = mergeable.get(piece);
        if (id != null && types[id] == UNUSED && revMerge != null && revMerge.containsKey(piece)) {
            String[] parts = revMerge.get(piece);
            emit(parts[0], out, revMerge);
            emit(parts[1], out, revMerge);
            return;
        }
        if (id != null) {
            out.add(id);
        } else if (byteFallback) {
            for (byte b : piece.getBytes(StandardCharsets.UTF_8)) out.add(byteIds[b & 0xff]);
        } else if (out.size() == 0 || out.last() != unkId) {
            out.add(unkId); // sentencepiece merges a run of unknowns into one <unk>
        }
    }

    // ---------------------------------------------------------------- decode

    @Override
    public String decode(int[] ids, boolean renderSpecials) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(ids.length * 4);
        boolean atStart = true;
        for (int id : ids) {
            checkId(id);
            switch (types[id]) {
                case CONTROL -> {
                    if (renderSpecials) out.writeBytes(pieces[id].getBytes(StandardCharsets.UTF_8));
                }
                case UNKNOWN -> {
                    out.writeBytes((renderSpecials ? pieces[id] : UNK_SURFACE).getBytes(StandardCharsets.UTF_8));
                    atStart = false;
                }
                case BYTE -> {
                    out.write(parseBytePiece(pieces[id]));
                    atStart = false;
                }
                default -> {
                    String p = pieces[id];
                    if (atStart && addDummyPrefix && p.charAt(0) == SPACE_SYMBOL) p = p.substring(1);
                    out.writeBytes(p.replace(SPACE_SYMBOL, ' ').getBytes(StandardCharsets.UTF_8));
                    atStart = false;
                }
            }
        }
        return new String(out.toByteArray(), StandardCharsets.UTF_8);
    }

    @Override
    public byte[] decodePieceBytes(int prevId, int id) {
        checkId(id);
        switch (types[id]) {
            case CONTROL:
                return new byte[0];
            case UNKNOWN:
                return UNK_SURFACE.getBytes(StandardCharsets.UTF_8);
            case BYTE:
                return new byte[] {(byte) parseBytePiece(pieces[id])};
            default:
                String p = pieces[id].replace(SPACE_SYMBOL, ' ');
                if ((prevId < 0 || prevId == bosId) && addDummyPrefix && p.startsWith(" ")) p = p.substring(1);
                return p.getBytes(StandardCharsets.UTF_8);
        }
    }

    private void checkId(int id) {
        if (id < 0 || id >= pieces.length)
            throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, " + pieces.length + ")");
    }

    // ---------------------------------------------------------------- vocabulary

    @Override
    public int vocabSize() {
        return pieces.length;
    }

    @Override
    public int bosId() {
        return bosId;
    }

    @Override
    public int eosId() {
        return eosId;
    }

    @Override
    public OptionalInt padId() {
        return padId >= 0 ? OptionalInt.of(padId) : OptionalInt.empty();
    }

    /** The {@code <unk>} id, or -1. */
    public int unkId() {
        return unkId;
    }

    @Override
    public int tokenId(String piece) {
        Integer id = allPieces.get(piece);
        return id == null ? -1 : id;
    }

    @Override
    public String piece(int id) {
        checkId(id);
        return pieces[id];
    }

    /** The merge score of {@code id} (higher merges first). */
    public float score(int id) {
        checkId(id);
        return scores[id];
    }

    /**
     * The SentencePiece type of {@code id} (sentencepiece_model.proto: 1 normal, 2 unknown,
     * 3 control, 4 user-defined, 5 unused, 6 byte), as GGUF's {@code tokenizer.ggml.token_type} stores it.
     */
    public int pieceType(int id) {
        checkId(id);
        return types[id];
    }

    @Override
    public boolean isSpecial(int id) {
        checkId(id);
        return types[id] == CONTROL;
    }

    @Override
    public Map<String, Integer> specialTokens() {
        return specials;
    }

    @Override
    public String toString() {
        return "SentencePieceBpe[vocab=" + pieces.length + ", bos=" + bosId + ", eos=" + eosId + "]";
    }
}
