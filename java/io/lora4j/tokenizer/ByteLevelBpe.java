package io.lora4j.tokenizer;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Byte-level BPE from a Hugging Face {@code tokenizer.json} (GPT-2 style; Llama 3), matching
 * HF tokenizers' pipeline:
 * <ol>
 * <li>added tokens are cut out first (leftmost-longest) and become single ids — only the
 *     non-special ones in {@link #encode}, all of them in {@link #encodeWithSpecials};</li>
 * <li>optional NFC normalisation;</li>
 * <li>pre-tokenization: the {@code Split} regex of the file (Llama 3:
 *     {@code (?i:'s|'t|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+})
 *     compiled for java.util.regex with {@link Pattern#UNICODE_CHARACTER_CLASS}, so {@code \s}
 *     is Unicode White_Space and case folding is Unicode, as in HF's Oniguruma; then
 *     {@code ByteLevel}: each piece's UTF-8 bytes mapped to GPT-2's printable byte alphabet;</li>
 * <li>BPE per piece: merge the adjacent pair with the lowest merge rank, leftmost on ties
 *     (with {@code ignore_merges}, a piece that is itself a token is taken whole).</li>
 * </ol>
 * Decoding maps tokens back through the byte alphabet to UTF-8 (invalid bytes become U+FFFD).
 * HF's {@code clean_up_tokenization_spaces} is not applied: it would break round trips.
 *
 * <p>The same merge-rank BPE also runs SentencePiece-style vocabularies exported to
 * {@code tokenizer.json} (Gemma 3; {@link Alphabet#CHARS_WITH_BYTE_FALLBACK}): the normalizer's
 * {@code Replace} steps (Gemma: every space becomes {@code "▁"}, U+2581) run instead of the byte
 * mapping, a word's symbols are its Unicode code points, and a code point the vocabulary lacks
 * becomes the {@code <0xNN>} tokens of its UTF-8 bytes (HF's {@code byte_fallback}). Decoding
 * turns {@code "▁"} back into spaces and byte tokens back into UTF-8 (HF's Replace, ByteFallback
 * and Fuse decoders).
 */
public final class ByteLevelBpe implements Tokenizer {
    /** Word cache bound: past it the cache is dropped (the working set of a corpus is far smaller). */
    private static final int CACHE_LIMIT = 1 << 17;

    /** GPT-2's bytes_to_unicode: byte value -> printable char. */
    static final char[] BYTE_TO_CHAR = new char[256];
    /** Its inverse, -1 where a char is not in the alphabet. */
    private static final int[] CHAR_TO_BYTE = new int[512];

    static {
        java.util.Arrays.fill(CHAR_TO_BYTE, -1);
        int extra = 0;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            char c = printable ? (char) b : (char) (256 + extra++);
            BYTE_TO_CHAR[b] = c;
            CHAR_TO_BYTE[c] = b;
        }
    }

    /** One pre-tokenization step: turns pieces into finer pieces. */
    interface PreTokenizer {
        void apply(String piece, List<String> out);
    }

    /** What a word's initial symbols are. */
    enum Alphabet {
        /** GPT-2's byte alphabet: one symbol per UTF-8 byte (a ByteLevel pre-tokenizer). */
        BYTE_LEVEL,
        /** One symbol per code point; a code point outside the vocabulary falls back to {@code <0xNN>} byte tokens. */
        CHARS_WITH_BYTE_FALLBACK
    }

    /** A normalizer's literal {@code Replace} step: every {@code from} becomes {@code to}. */
    record Replace(String from, String to) {}

    private static final char METASPACE = '\u2581';

    private final String[] tokens;
    private final boolean[] special;
    private final boolean[] added;
    private final Map<String, Integer> tokenToId;
    private final int[] byteIds = new int[256];
    private final MergeTable merges;
    private final boolean ignoreMerges;
    private final boolean nfc;
    private final Alphabet alphabet;
    private final List<Replace> replaces;
    private final boolean[] byteToken; // CHARS_WITH_BYTE_FALLBACK: ids that are <0xNN> tokens
    private final List<PreTokenizer> preTokenizers;
    private final SpecialTokenMatcher plainMatcher, allMatcher;
    private final Map<String, Integer> specials;
    private final int bosId, eosId, padId;
    private final ConcurrentHashMap<String, int[]> cache = new ConcurrentHashMap<>();

    /**
     * @param byteIds the token of each byte: its byte-alphabet char (BYTE_LEVEL) or its
     *                {@code <0xNN>} token (CHARS_WITH_BYTE_FALLBACK)
     * @param replaces the normalizer's Replace steps, in order (after NFC)
     */
    ByteLevelBpe(String[] tokens, boolean[] special, boolean[] added, Map<String, Integer> tokenToId, int[] byteIds,
                 MergeTable merges, boolean ignoreMerges, boolean nfc, Alphabet alphabet, List<Replace> replaces,
                 List<PreTokenizer> preTokenizers, List<SpecialTokenMatcher.Token> addedTokens, int bosId, int eosId,
                 int padId) {
        this.tokens = tokens;
        this.alphabet = alphabet;
        this.replaces = List.copyOf(replaces);
        this.byteToken = new boolean[tokens.length];
        if (alphabet == Alphabet.CHARS_WITH_BYTE_FALLBACK) for (int id : byteIds) byteToken[id] = true;
        this.special = special;
        this.added = added;
        this.tokenToId = tokenToId;
        System.arraycopy(byteIds, 0, this.byteIds, 0, 256);
        this.merges = merges;
        this.ignoreMerges = ignoreMerges;
        this.nfc = nfc;
        this.preTokenizers = List.copyOf(preTokenizers);
        List<SpecialTokenMatcher.Token> nonSpecial = new ArrayList<>();
        Map<String, Integer> sp = new java.util.LinkedHashMap<>();
        for (SpecialTokenMatcher.Token t : addedTokens) {
            if (!special[t.id()]) nonSpecial.add(t);
            sp.put(t.content(), t.id());
        }
        plainMatcher = nonSpecial.isEmpty() ? SpecialTokenMatcher.EMPTY : new SpecialTokenMatcher(nonSpecial);
        allMatcher = new SpecialTokenMatcher(addedTokens);
        specials = Collections.unmodifiableMap(sp);
        this.bosId = bosId;
        this.eosId = eosId;
        this.padId = padId;
    }

    /** The Split pre-tokenizer with HF's "Isolated" behaviour: matches and the gaps between them. */
    static PreTokenizer split(Pattern pattern, boolean removeMatches) {
        return (piece, out) -> {
            Matcher m = pattern.matcher(piece);
            int last = 0;
            while (m.find()) {
                if (m.end() == m.start()) continue; // HF ignores empty matches
                if (m.start() > last) out.add(piece.substring(last, m.start()));
                if (!removeMatches) out.add(m.group());
                last = m.end();
            }
            if (last < piece.length()) out.add(piece.substring(last));
        };
    }

    /** The Split pre-tokenizer with HF's "MergedWithPrevious" behaviour: each match ends the piece before it. */
    static PreTokenizer splitMergedWithPrevious(Pattern pattern) {
        return (piece, out) -> {
            Matcher m = pattern.matcher(piece);
            int last = 0;
            while (m.find()) {
                if (m.end() == m.start()) continue;
                out.add(piece.substring(last, m.end()));
                last = m.end();
            }
            if (last < piece.length()) out.add(piece.substring(last));
        };
    }

    /** GPT-2's own split regex, used by a ByteLevel pre-tokenizer with use_regex. */
    static final Pattern GPT2_PATTERN = Pattern.compile(
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
            Pattern.UNICODE_CHARACTER_CLASS);

    /** The ByteLevel pre-tokenizer; the byte mapping itself happens in {@link #encodePlain}. */
    static PreTokenizer byteLevel(boolean addPrefixSpace, boolean useRegex) {
        PreTokenizer regex = split(GPT2_PATTERN, false);
        return (piece, out) -> {
            // HF applies add_prefix_space to every piece it receives, not just the first.
            String p = addPrefixSpace && !piece.startsWith(" ") ? " " + piece : piece;
            if (useRegex) regex.apply(p, out);
            else out.add(p);
        };
    }

    // ---------------------------------------------------------------- encode

    @Override
    public int[] encode(String text, boolean addBos, boolean addEos) {
        return Tokenizer.withBosEos(text, addBos, addEos, bosId, eosId, bosId >= 0 ? tokens[bosId] : null, false,
                t -> encodeWith(plainMatcher, t));
    }

    @Override
    public int[] encodeWithSpecials(String text, boolean addBos, boolean addEos) {
        return Tokenizer.withBosEos(text, addBos, addEos, bosId, eosId, null, true, t -> encodeWith(allMatcher, t));
    }

    private int[] encodeWith(SpecialTokenMatcher matcher, String text) {
        IntList out = new IntList(text.length() / 3 + 4);
        encodeWith(matcher, text, out);
        return out.toArray();
    }

    private void encodeWith(SpecialTokenMatcher matcher, String text, IntList out) {
        matcher.split(text, new SpecialTokenMatcher.Sink() {
            @Override
            public void text(String s) {
                encodePlain(s, out);
            }

            @Override
            public void token(int id) {
                out.add(id);
            }
        });
    }

    private void encodePlain(String text, IntList out) {
        String t = nfc ? java.text.Normalizer.normalize(text, java.text.Normalizer.Form.NFC) : text;
        for (Replace r : replaces) t = t.replace(r.from(), r.to());
        List<String> pieces = new ArrayList<>();
        pieces.add(t);
        for (PreTokenizer p : preTokenizers) {
            List<String> next = new ArrayList<>(pieces.size() * 2);
            for (String s : pieces) p.apply(s, next);
            pieces = next;
        }
        StringBuilder sb = new StringBuilder();
        for (String piece : pieces) {
            if (piece.isEmpty()) continue;
            String word = piece;
            if (alphabet == Alphabet.BYTE_LEVEL) {
                sb.setLength(0);
                for (byte b : piece.getBytes(StandardCharsets.UTF_8)) sb.append(BYTE_TO_CHAR[b & 0xff]);
                word = sb.toString();
            }
            int[] ids = cache.get(word);
            if (ids == null) {
                ids = bpe(word, symbols(word));
                if (cache.size() >= CACHE_LIMIT) cache.clear();
                cache.put(word, ids);
            }
            out.addAll(ids);
        }
    }

    /**
     * A word's initial symbols: one per byte-alphabet char (BYTE_LEVEL), or one per code point
     * with the byte tokens of its UTF-8 in place of a code point the vocabulary lacks.
     */
    private int[] symbols(String word) {
        if (alphabet == Alphabet.BYTE_LEVEL) {
            int[] ids = new int[word.length()];
            for (int i = 0; i < ids.length; i++) ids[i] = byteIds[CHAR_TO_BYTE[word.charAt(i)]];
            return ids;
        }
        IntList ids = new IntList(word.length() + 4);
        for (int i = 0; i < word.length(); ) {
            int cp = word.codePointAt(i);
            String ch = word.substring(i, i + Character.charCount(cp));
            Integer id = tokenToId.get(ch);
            if (id != null && !added[id]) ids.add(id);
            else for (byte b : ch.getBytes(StandardCharsets.UTF_8)) ids.add(byteIds[b & 0xff]);
            i += ch.length();
        }
        return ids.toArray();
    }

    /** BPE over one word's symbols: lowest rank first, leftmost on ties (HF Word::merge_all). */
    private int[] bpe(String word, int[] ids) {
        if (ignoreMerges) {
            Integer whole = tokenToId.get(word);
            if (whole != null) return new int[] {whole};
        }
        int n = ids.length;
        int[] prev = new int[n], next = new int[n];
        for (int i = 0; i < n; i++) {
            prev[i] = i - 1;
            next[i] = i + 1;
        }
        next[n - 1] = -1;
        boolean[] dead = new boolean[n];
        MergeHeap heap = new MergeHeap(n);
        for (int i = 0; i + 1 < n; i++) pushPair(heap, ids, i, i + 1);
        int alive = n;
        while (!heap.isEmpty()) {
            int l = heap.topLeft(), r = heap.topRight(), merged = heap.topStamp();
            heap.pop();
            // Stale unless adjacent and the pair still merges into the same token.
            if (dead[l] || dead[r] || next[l] != r || merges.mergedId(ids[l], ids[r]) != merged) continue;
            ids[l] = merged;
            dead[r] = true;
            alive--;
            next[l] = next[r];
            if (next[r] >= 0) prev[next[r]] = l;
            if (prev[l] >= 0) pushPair(heap, ids, prev[l], l);
            if (next[l] >= 0) pushPair(heap, ids, l, next[l]);
        }
        int[] result = new int[alive];
        int k = 0;
        for (int s = 0; s >= 0; s = next[s]) result[k++] = ids[s];
        return result;
    }

    private void pushPair(MergeHeap heap, int[] ids, int l, int r) {
        long m = merges.get(ids[l], ids[r]);
        if (m < 0) return;
        heap.push(MergeHeap.rankKey((int) (m >>> 32), l), l, r, (int) m);
    }

    // ---------------------------------------------------------------- decode

    @Override
    public String decode(int[] ids, boolean renderSpecials) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(ids.length * 4);
        for (int id : ids) {
            checkId(id);
            if (special[id] && !renderSpecials) continue;
            writeToken(id, out);
        }
        return new String(out.toByteArray(), StandardCharsets.UTF_8);
    }

    @Override
    public byte[] decodePieceBytes(int prevId, int id) {
        checkId(id);
        if (special[id]) return new byte[0];
        ByteArrayOutputStream out = new ByteArrayOutputStream(8);
        writeToken(id, out);
        return out.toByteArray();
    }

    private void writeToken(int id, ByteArrayOutputStream out) {
        String t = tokens[id];
        if (alphabet == Alphabet.CHARS_WITH_BYTE_FALLBACK) {
            if (byteToken[id]) out.write(SentencePieceBpe.parseBytePiece(t));
            else out.writeBytes(t.replace(METASPACE, ' ').getBytes(StandardCharsets.UTF_8));
        } else if (!added[id]) {
            // A vocabulary token is all byte-alphabet chars (checked at load).
            for (int i = 0; i < t.length(); i++) out.write(CHAR_TO_BYTE[t.charAt(i)]);
        } else {
            out.writeBytes(t.getBytes(StandardCharsets.UTF_8)); // added tokens are stored as plain text
        }
    }

    private void checkId(int id) {
        if (id < 0 || id >= tokens.length)
            throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, " + tokens.length + ")");
        if (tokens[id] == null) throw new IllegalArgumentException("token id " + id + " has no token in this vocabulary");
    }

    /** Whether {@code c} is one of GPT-2's 256 byte-alphabet chars. */
    static boolean isByteChar(char c) {
        return c < CHAR_TO_BYTE.length && CHAR_TO_BYTE[c] >= 0;
    }

    // ---------------------------------------------------------------- vocabulary

    @Override
    public int vocabSize() {
        return tokens.length;
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

    @Override
    public int tokenId(String piece) {
        Integer id = tokenToId.get(piece);
        return id == null ? -1 : id;
    }

    @Override
    public String piece(int id) {
        checkId(id);
        return tokens[id];
    }

    @Override
    public boolean isSpecial(int id) {
        checkId(id);
        return special[id];
    }

    @Override
    public Map<String, Integer> specialTokens() {
        return specials;
    }

    @Override
    public String toString() {
        return "ByteLevelBpe[vocab=" + tokens.length + ", bos=" + bosId + ", eos=" + eosId + "]";
    }

    /**
     * Merge rules: (left id, right id) -> (rank, merged id), in an open-addressing table of
     * primitive longs (280k Llama 3 merges; boxed maps would triple the memory and the time).
     */
    static final class MergeTable {
        private final long[] keys;
        private final long[] values;
        private final int mask;

        MergeTable(int capacity) {
            int size = Integer.highestOneBit(Math.max(4, capacity * 2 - 1)) << 1;
            keys = new long[size];
            values = new long[size];
            java.util.Arrays.fill(keys, -1L);
            mask = size - 1;
        }

        /** Adds a rule; a repeated pair takes the later rank, as HF's map building does. */
        void put(int left, int right, int rank, int mergedId) {
            long k = ((long) left << 32) | (right & 0xffffffffL);
            int i = slot(k);
            while (keys[i] != -1L && keys[i] != k) i = (i + 1) & mask;
            keys[i] = k;
            values[i] = ((long) rank << 32) | (mergedId & 0xffffffffL);
        }

        /** (rank << 32 | merged id), or -1 when the pair does not merge. */
        long get(int left, int right) {
            long k = ((long) left << 32) | (right & 0xffffffffL);
            for (int i = slot(k); keys[i] != -1L; i = (i + 1) & mask)
                if (keys[i] == k) return values[i];
            return -1L;
        }

        int mergedId(int left, int right) {
            long v = get(left, right);
            return v < 0 ? -1 : (int) v;
        }

        private int slot(long k) {
            long h = k * 0x9E3779B97F4A7C15L;
            return (int) (h >>> 32) & mask;
        }
    }
}
