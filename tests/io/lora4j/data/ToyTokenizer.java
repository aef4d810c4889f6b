package io.lora4j.data;

import io.lora4j.tokenizer.Tokenizer;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;

/**
 * A small deterministic tokenizer for tests: ids 0..2 are {@code <unk> <s> </s>}, then the given
 * special tokens, then the 256 bytes, then multi-character "words" matched greedily (longest
 * first). Words may span a marker's end and the text after it, which is how tests make a
 * tokenizer merge a marker with its neighbour.
 */
final class ToyTokenizer implements Tokenizer {
    static final List<String> CHAT_SPECIALS = List.of("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
            "<|end_header_id|>", "<start_of_turn>", "<end_of_turn>", "<|im_start|>", "<|im_end|>");

    private final List<String> pieces = new ArrayList<>();
    private final Map<String, Integer> specials = new LinkedHashMap<>();
    private final int byteBase, wordBase, nSpecial;
    private final List<String> wordsByLength;

    ToyTokenizer(List<String> extraSpecials, List<String> words) {
        pieces.addAll(List.of("<unk>", "<s>", "</s>"));
        pieces.addAll(extraSpecials);
        nSpecial = pieces.size();
        for (int i = 0; i < nSpecial; i++) specials.put(pieces.get(i), i);
        byteBase = pieces.size();
        for (int b = 0; b < 256; b++) pieces.add(String.format("<0x%02X>", b));
        wordBase = pieces.size();
        pieces.addAll(words);
        wordsByLength = new ArrayList<>(words);
        wordsByLength.sort(Comparator.comparingInt(String::length).reversed());
    }

    /** Chat specials and a few words (including "Response:\nThe", which merges alpaca's marker end with content). */
    static ToyTokenizer chat() {
        return new ToyTokenizer(CHAT_SPECIALS, List.of("user", "assistant", "system", "model", "### ", "Instruction", "Response", ":\n",
                "\n\n", " the", " is", "The", "What", " capital", " of", "[INST]", "[/INST]", " [/INST]", "[INST] "));
    }

    @Override
    public int[] encode(String text, boolean addBos, boolean addEos) {
        List<Integer> out = new ArrayList<>();
        if (addBos) out.add(1);
        int i = 0;
        outer:
        while (i < text.length()) {
            for (String w : wordsByLength) {
                if (text.startsWith(w, i)) {
                    out.add(wordBase + pieces.subList(wordBase, pieces.size()).indexOf(w));
                    i += w.length();
                    continue outer;
                }
            }
            int cp = text.codePointAt(i);
            for (byte b : new String(Character.toChars(cp)).getBytes(StandardCharsets.UTF_8)) out.add(byteBase + (b & 0xff));
            i += Character.charCount(cp);
        }
        if (addEos) out.add(2);
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    @Override
    public int[] encodeWithSpecials(String text, boolean addBos, boolean addEos) {
        List<Integer> out = new ArrayList<>();
        if (addBos && !text.startsWith("<s>")) out.add(1);
        int i = 0, segStart = 0;
        while (i <= text.length()) {
            String hit = null;
            if (i < text.length()) for (String s : specials.keySet()) if (!s.equals("<unk>") && text.startsWith(s, i) && (hit == null || s.length() > hit.length())) hit = s;
            if (hit != null || i == text.length()) {
                for (int id : encode(text.substring(segStart, i), false, false)) out.add(id);
                if (hit == null) break;
                out.add(specials.get(hit));
                i += hit.length();
                segStart = i;
            } else {
                i++;
            }
        }
        if (addEos && (out.isEmpty() || out.get(out.size() - 1) != 2)) out.add(2);
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    @Override
    public String decode(int[] ids, boolean renderSpecials) {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        for (int id : ids) {
            byte[] x = isSpecial(id) ? (renderSpecials ? piece(id).getBytes(StandardCharsets.UTF_8) : new byte[0]) : decodePieceBytes(-1, id);
            b.writeBytes(x);
        }
        return b.toString(StandardCharsets.UTF_8);
    }

    @Override
    public byte[] decodePieceBytes(int prevId, int id) {
        check(id);
        if (isSpecial(id)) return new byte[0];
        if (id >= byteBase && id < wordBase) return new byte[] {(byte) (id - byteBase)};
        return pieces.get(id).getBytes(StandardCharsets.UTF_8);
    }

    @Override public int vocabSize() { return pieces.size(); }

    @Override public int bosId() { return 1; }

    @Override public int eosId() { return 2; }

    @Override public OptionalInt padId() { return OptionalInt.empty(); }

    @Override public int tokenId(String piece) { return pieces.indexOf(piece); }

    @Override public String piece(int id) {
        check(id);
        return pieces.get(id);
    }

    @Override public boolean isSpecial(int id) {
        check(id);
        return id < nSpecial;
    }

    @Override public Map<String, Integer> specialTokens() { return Map.copyOf(specials); }

    private void check(int id) {
        if (id < 0 || id >= pieces.size()) throw new IllegalArgumentException("id " + id + " out of range " + Arrays.toString(new int[] {pieces.size()}));
    }
}
