package io.lora4j.data;

import java.util.List;
import java.util.Locale;

/**
 * What {@link DataPipeline#build} read and did, for the run log and {@code lora4j data}.
 *
 * @param format          the dataset format used (detected or given)
 * @param template        the chat template's name, or null when no row needed one
 * @param markers         the masking markers in use, or null without train_on_responses_only
 * @param rows            rows read (train and eval files)
 * @param badRows         malformed rows skipped (including rows the template refused)
 * @param badExamples     the first bad rows: "file line N: problem"
 * @param trainRows       training rows kept (text pieces count one each)
 * @param evalRows        eval rows kept
 * @param skipped         rows without a trained target (e.g. everything masked) and left out
 * @param truncated       rows cut to max_seq_length
 * @param split           text rows split into pieces of max_seq_length
 * @param trainSequences  sequences per epoch (packed sequences with packing)
 * @param trainTokens     tokens in the training rows
 * @param trainTargets    targets with loss in the training rows
 * @param firstSkipped    the text of the first skipped row, or null
 * @param notes           what the defaults decided (eval_split auto, train_on_responses_only auto), one line each
 */
public record DataStats(DatasetFormat format, String template, ChatTemplate.Markers markers, int rows, int badRows, List<String> badExamples,
        int trainRows, int evalRows, int skipped, int truncated, int split, int trainSequences, long trainTokens, long trainTargets,
        String firstSkipped, List<String> notes) {
    public DataStats {
        badExamples = List.copyOf(badExamples);
        notes = List.copyOf(notes);
    }

    DataStats withSequences(int n) {
        return new DataStats(format, template, markers, rows, badRows, badExamples, trainRows, evalRows, skipped, truncated, split, n,
                trainTokens, trainTargets, firstSkipped, notes);
    }

    /** A few lines for people. */
    public String summary() {
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "format %s, %d rows read, %d bad, %d train, %d eval, %d skipped (no target), %d truncated, %d split",
                format.key(), rows, badRows, trainRows, evalRows, skipped, truncated, split));
        sb.append(String.format(Locale.ROOT, "%ntrain: %d sequences, %d tokens, %d with loss (%.1f%%)", trainSequences, trainTokens, trainTargets,
                trainTokens == 0 ? 0.0 : 100.0 * trainTargets / trainTokens));
        if (template != null) sb.append("\nchat template: ").append(template);
        if (markers != null)
            sb.append("\nresponses only: instruction_part ").append(ChatTemplate.show(markers.instruction())).append(", response_part ")
                    .append(ChatTemplate.show(markers.response())).append(", turn end ").append(ChatTemplate.show(markers.turnEnd()));
        for (String n : notes) sb.append('\n').append(n);
        for (String b : badExamples) sb.append("\nbad row: ").append(b);
        return sb.toString();
    }
}
