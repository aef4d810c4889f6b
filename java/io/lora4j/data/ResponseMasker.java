package io.lora4j.data;

import io.lora4j.tokenizer.Tokenizer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Train on responses only (Unsloth's {@code train_on_responses_only}, DESIGN.md §4): labels are
 * -100 everywhere except the assistant turns. A trained span starts after each occurrence of the
 * response marker and ends with the assistant's turn end (EOS or an end-of-turn token, which is
 * trained, so the model learns to stop), or, for a template without one, before the next
 * instruction marker or at the end.
 *
 * <p>The markers are searched in the decoded text of the ids ({@link TokenText}), not as token
 * sequences: a tokenizer may merge a marker's last characters with the response's first ones
 * (SentencePiece turns {@code "Response: Paris"} into {@code "▁Paris"}, taking the marker's
 * space). A token that straddles the end of the response marker belongs to the response, as in
 * Unsloth, whose token search drops the marker's merged tail for the same effect.
 */
public final class ResponseMasker {
    private final Tokenizer tok;
    private final String instruction, response, turnEnd;
    private final byte[] instr, resp, end;
    private final boolean lastOnly;

    /**
     * @param instruction the text that starts a user turn
     * @param response    the text that precedes assistant content
     * @param turnEnd     the text that ends an assistant turn (may be empty)
     * @param lastOnly    train only the last assistant turn ({@code last_response_only})
     */
    public ResponseMasker(Tokenizer tok, String instruction, String response, String turnEnd, boolean lastOnly) {
        if (response == null || response.isEmpty()) throw new IllegalArgumentException("response_part must not be empty");
        if (instruction == null || instruction.isEmpty()) throw new IllegalArgumentException("instruction_part must not be empty");
        this.tok = tok;
        this.instruction = instruction;
        this.response = response;
        this.turnEnd = turnEnd == null ? "" : turnEnd;
        this.instr = instruction.getBytes(StandardCharsets.UTF_8);
        this.resp = response.getBytes(StandardCharsets.UTF_8);
        this.end = this.turnEnd.getBytes(StandardCharsets.UTF_8);
        this.lastOnly = lastOnly;
    }

    public static ResponseMasker of(Tokenizer tok, ChatTemplate.Markers m, boolean lastOnly) {
        return new ResponseMasker(tok, m.instruction(), m.response(), m.turnEnd(), lastOnly);
    }

    public String instruction() {
        return instruction;
    }

    public String response() {
        return response;
    }

    public String turnEnd() {
        return turnEnd;
    }

    /** Labels aligned to {@code ids}: the id inside trained spans, {@link Example#IGNORE_INDEX} elsewhere. */
    public int[] labels(int[] ids) {
        int[] labels = new int[ids.length];
        Arrays.fill(labels, Example.IGNORE_INDEX);
        TokenText t = TokenText.of(tok, ids);
        int[][] spans = spans(t);
        int first = lastOnly ? Math.max(0, spans.length - 1) : 0;
        for (int s = first; s < spans.length; s++)
            for (int i = spans[s][0]; i < spans[s][1]; i++) labels[i] = ids[i];
        return labels;
    }

    /** Token ranges [from, to) of the assistant turns. */
    int[][] spans(TokenText t) {
        java.util.List<int[]> out = new java.util.ArrayList<>();
        int pos = 0;
        int n = t.tokens();
        while (true) {
            int r = t.indexOf(resp, pos);
            if (r < 0) break;
            int contentStart = r + resp.length;
            int nextInstr = t.indexOf(instr, contentStart);
            int nextResp = t.indexOf(resp, contentStart);
            int limit = bytesLen(t);
            if (nextInstr >= 0) limit = nextInstr;
            if (nextResp >= 0 && nextResp < limit) limit = nextResp;
            int stop = limit;
            if (end.length > 0) {
                int e = t.indexOf(end, contentStart);
                if (e >= 0 && e + end.length <= limit) stop = e + end.length;
            }
            int from = t.tokenEndingAfter(contentStart);
            // Tokens that end by `stop` are in; one straddling `stop` from the turn end is too.
            int to = stop == limit ? t.tokenStartingAtOrAfter(limit) : t.tokenEndingAfter(stop - 1) + 1;
            to = Math.min(to, n);
            if (from < to) out.add(new int[] {from, to});
            pos = Math.max(contentStart, stop);
            if (pos >= bytesLen(t)) break;
        }
        return out.toArray(new int[0][]);
    }

    private static int bytesLen(TokenText t) {
        return t.tokens() == 0 ? 0 : t.end(t.tokens() - 1);
    }
}
