package io.lora4j.tokenizer;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Finds special/added token strings in text, leftmost first and longest at a position (as HF
 * tokenizers' Aho-Corasick LeftmostLongest), and splits the text around them.
 */
final class SpecialTokenMatcher {
    /** One matchable token; lstrip/rstrip absorb whitespace on that side (HF AddedToken). */
    record Token(String content, int id, boolean lstrip, boolean rstrip) {}

    /** Receives the pieces of a split, in order. */
    interface Sink {
        void text(String s);

        void token(int id);
    }

    static final SpecialTokenMatcher EMPTY = new SpecialTokenMatcher(List.of());

    /** Candidates by first char, longest first; the common case (no candidate) is one array load. */
    private final Token[][] byFirstChar = new Token[65536][];

    SpecialTokenMatcher(List<Token> tokens) {
        Map<Character, List<Token>> groups = new HashMap<>();
        for (Token t : tokens) {
            if (t.content().isEmpty()) continue;
            groups.computeIfAbsent(t.content().charAt(0), c -> new ArrayList<>()).add(t);
        }
        for (Map.Entry<Character, List<Token>> e : groups.entrySet()) {
            List<Token> l = e.getValue();
            l.sort(Comparator.comparingInt((Token t) -> -t.content().length()));
            byFirstChar[e.getKey()] = l.toArray(new Token[0]);
        }
    }

    void split(String text, Sink sink) {
        int n = text.length();
        int segStart = 0;
        int i = 0;
        outer:
        while (i < n) {
            Token[] cands = byFirstChar[text.charAt(i)];
            if (cands != null) {
                for (Token t : cands) {
                    if (!text.startsWith(t.content(), i)) continue;
                    int textEnd = i;
                    if (t.lstrip()) while (textEnd > segStart && Character.isWhitespace(text.charAt(textEnd - 1))) textEnd--;
                    if (textEnd > segStart) sink.text(text.substring(segStart, textEnd));
                    sink.token(t.id());
                    int j = i + t.content().length();
                    if (t.rstrip()) while (j < n && Character.isWhitespace(text.charAt(j))) j++;
                    segStart = j;
                    i = j;
                    continue outer;
                }
            }
            i++;
        }
        if (segStart < n) sink.text(text.substring(segStart));
    }
}
