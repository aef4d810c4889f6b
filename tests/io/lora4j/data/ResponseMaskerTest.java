package io.lora4j.data;

import static io.lora4j.data.DataTesting.trainedSpans;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

class ResponseMaskerTest {
    static final ToyTokenizer TOK = ToyTokenizer.chat();
    static final ChatTemplate.Tokens TOKENS = new ChatTemplate.Tokens("<s>", "</s>", null, "<unk>");

    private static List<String> spans(ChatTemplate.Builtin b, List<Message> conv, boolean lastOnly) {
        ChatTemplate t = ChatTemplate.builtin(b, TOKENS);
        int[] ids = TOK.encodeWithSpecials(t.renderForTraining(conv), false, false);
        assertEquals(1, Arrays.stream(ids).filter(i -> i == TOK.bosId()).count() - (b == ChatTemplate.Builtin.LLAMA_2 ? conv.size() / 2 - 1 : 0),
                b + ": one BOS per conversation (llama-2: one per user turn)");
        assertEquals(TOK.bosId(), ids[0], b + " starts with BOS");
        return trainedSpans(TOK, ids, ResponseMasker.of(TOK, t.markers(), lastOnly).labels(ids));
    }

    @Test
    void everyBuiltinTrainsExactlyTheAssistantTurnsAndTheirEnds() {
        List<Message> single = List.of(Message.user("What is the capital of Ohio?"), Message.assistant("Columbus."));
        List<Message> multi = List.of(Message.system("Be brief."), Message.user("What is 2+2?"), Message.assistant("4."), Message.user("And 3+3?"),
                Message.assistant("6."));
        String[][] expected = {
            {"llama-3", "<|eot_id|>", ""}, {"gemma", "<end_of_turn>", ""}, {"chatml", "<|im_end|>", ""}, {"alpaca", "</s>", ""},
            {"llama-2", " </s>", " "}, {"mistral", "</s>", ""}};
        for (String[] x : expected) {
            ChatTemplate.Builtin b = ChatTemplate.Builtin.parse(x[0]).orElseThrow();
            String end = x[1], lead = x[2];
            assertEquals(List.of(lead + "Columbus." + end), spans(b, single, false), b + " single turn");
            assertEquals(List.of(lead + "4." + end, lead + "6." + end), spans(b, multi, false), b + " multi-turn");
            assertEquals(List.of(lead + "6." + end), spans(b, multi, true), b + " last_response_only");
        }
    }

    @Test
    void aMarkerMergedWithTheResponseStillStartsTheSpan() {
        // This tokenizer has the word ":\nThe": alpaca's "### Response:\n" + "The ..." ends inside one token.
        ToyTokenizer merging = new ToyTokenizer(List.of(), List.of("### ", "Response", ":\nThe", " answer", "Instruction", ":\n"));
        ChatTemplate t = ChatTemplate.builtin(ChatTemplate.Builtin.ALPACA, TOKENS);
        String text = t.renderForTraining(List.of(Message.user("Q?"), Message.assistant("The answer is 4.")));
        int[] ids = merging.encodeWithSpecials(text, false, false);
        int merged = merging.tokenId(":\nThe");
        int at = -1;
        for (int i = 0; i < ids.length; i++) if (ids[i] == merged && i > 0 && ids[i - 1] == merging.tokenId("Response")) at = i;
        assertTrue(at > 0, "the marker's newline merged with the response");
        // The marker's own token sequence (### , Response, :\n) never occurs, yet the span is found.
        int[] labels = ResponseMasker.of(merging, t.markers(), false).labels(ids);
        assertEquals(Example.IGNORE_INDEX, labels[at - 1]);
        assertEquals(merged, labels[at]);
        assertEquals(List.of(":\nThe answer is 4.</s>"), trainedSpans(merging, ids, labels));
    }

    @Test
    void givenMarkersAndNoMatch() {
        ChatTemplate t = ChatTemplate.builtin(ChatTemplate.Builtin.CHATML, TOKENS);
        int[] ids = TOK.encodeWithSpecials(t.renderForTraining(List.of(Message.user("Hi"), Message.assistant("Hello"))), false, false);
        int[] labels = new ResponseMasker(TOK, "<|im_start|>user\n", "<|im_start|>assistant\n", "", false).labels(ids);
        assertEquals(List.of("Hello<|im_end|>\n"), trainedSpans(TOK, ids, labels), "without a turn end the span runs to the next instruction or the end");
        labels = new ResponseMasker(TOK, "USER:", "ASSISTANT:", "", false).labels(ids);
        assertTrue(Arrays.stream(labels).allMatch(l -> l == Example.IGNORE_INDEX));
    }
}
