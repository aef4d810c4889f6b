package io.lora4j.data;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The data settings of a run, under the config keys of TRL's SFTConfig and Unsloth
 * (DESIGN.md §8). Validated at construction: every bad field is named in one
 * {@link IllegalArgumentException}.
 *
 * @param dataset             a JSONL/JSON file or a directory of them ({@code dataset})
 * @param evalDataset         a separate eval file or directory, or null ({@code eval_dataset})
 * @param evalSplit           the share of {@code dataset} rows held out for eval, in [0, 1), 0 = none,
 *                            chosen with {@code seed} ({@code eval_split}); not with evalDataset.
 *                            {@link #EVAL_SPLIT_AUTO} ({@code eval_split: auto}, the default): see
 *                            {@link #evalRows(int)}
 * @param datasetFormat       the row layout, or AUTO ({@code dataset_format})
 * @param chatTemplate        null or "auto" (the model's own chat_template, else the built-in alpaca),
 *                            "model" (the model's, required), a built-in name (llama-3, gemma, chatml,
 *                            alpaca, llama-2, mistral), a template file, or inline Jinja ({@code chat_template})
 * @param trainOnResponsesOnly loss on assistant turns only ({@code train_on_responses_only}); null is
 *                            {@code auto}, the default: on for conversation rows, off for plain text
 *                            ({@link #responsesOnlyFor})
 * @param instructionPart     the user-turn marker, or null to detect it from the template ({@code instruction_part})
 * @param responsePart        the assistant-turn marker, or null to detect it ({@code response_part})
 * @param lastResponseOnly    with trainOnResponsesOnly: only the last assistant turn ({@code last_response_only})
 * @param packing             pack rows into sequences of maxSeqLength ({@code packing})
 * @param maxSeqLength        tokens per row (longer chat/prompt rows are truncated; text rows are
 *                            split into consecutive pieces) ({@code max_seq_length})
 * @param groupByLength       HF's length-grouped batch order ({@code group_by_length})
 * @param maxBadRowFraction   the largest tolerated share of malformed rows, in [0, 1]; default
 *                            {@value #DEFAULT_MAX_BAD_ROW_FRACTION}: a few broken lines in a big scraped
 *                            file are reported and skipped, a broken file is an error ({@code max_bad_row_fraction})
 * @param seed                eval split, packing order and per-epoch shuffles ({@code seed})
 * @param splitSpecialTokens  read special-token strings in text and prompt/completion rows as
 *                            plain text ({@code split_special_tokens}, HF's tokenizer option of that
 *                            name); false, the default, reads {@code "<|eot_id|>"}, {@code "<|im_end|>"}
 *                            ... as their single ids, as HF tokenizers do. Chat rows always read the
 *                            template's markers as ids.
 */
public record DataConfig(String dataset, String evalDataset, double evalSplit, DatasetFormat datasetFormat, String chatTemplate,
        Boolean trainOnResponsesOnly, String instructionPart, String responsePart, boolean lastResponseOnly, boolean packing,
        int maxSeqLength, boolean groupByLength, double maxBadRowFraction, long seed, boolean splitSpecialTokens) {

    public static final int DEFAULT_MAX_SEQ_LENGTH = 2048;
    public static final double DEFAULT_MAX_BAD_ROW_FRACTION = 0.01;
    /** Unsloth's default seed. */
    public static final long DEFAULT_SEED = 3407;
    /** {@code eval_split: auto}: hold out {@link #AUTO_EVAL_FRACTION} of the rows when there are enough. */
    public static final double EVAL_SPLIT_AUTO = -1;
    /**
     * eval_split auto: 5 % of the rows, at least 1 and at most {@link #AUTO_EVAL_MAX_ROWS}, when the
     * dataset has at least {@link #AUTO_EVAL_MIN_ROWS} rows (fewer: no eval set). lora4j's choice:
     * the guide relies on watching eval loss ("enable evaluation and stop when the evaluation loss
     * increases") but gives no size.
     */
    public static final double AUTO_EVAL_FRACTION = 0.05;
    public static final int AUTO_EVAL_MIN_ROWS = 20, AUTO_EVAL_MAX_ROWS = 256;

    /** The config keys this record reads. */
    public static final List<String> KEYS = List.of("dataset", "eval_dataset", "eval_split", "dataset_format", "chat_template",
            "train_on_responses_only", "instruction_part", "response_part", "last_response_only", "packing", "max_seq_length",
            "group_by_length", "max_bad_row_fraction", "seed", "split_special_tokens");

    public DataConfig {
        if (datasetFormat == null) datasetFormat = DatasetFormat.AUTO;
        List<String> bad = problems(dataset, evalDataset, evalSplit, chatTemplate, trainOnResponsesOnly, instructionPart, responsePart,
                lastResponseOnly, packing, groupByLength, maxSeqLength, maxBadRowFraction);
        if (!bad.isEmpty()) throw new IllegalArgumentException("bad data config: " + String.join("; ", bad));
    }

    /** The settings with special-token strings read as their ids (split_special_tokens false). */
    public DataConfig(String dataset, String evalDataset, double evalSplit, DatasetFormat datasetFormat, String chatTemplate,
            Boolean trainOnResponsesOnly, String instructionPart, String responsePart, boolean lastResponseOnly, boolean packing,
            int maxSeqLength, boolean groupByLength, double maxBadRowFraction, long seed) {
        this(dataset, evalDataset, evalSplit, datasetFormat, chatTemplate, trainOnResponsesOnly, instructionPart, responsePart, lastResponseOnly,
                packing, maxSeqLength, groupByLength, maxBadRowFraction, seed, false);
    }

    /** The same settings with max_seq_length {@code n}. */
    public DataConfig withMaxSeqLength(int n) {
        return new DataConfig(dataset, evalDataset, evalSplit, datasetFormat, chatTemplate, trainOnResponsesOnly, instructionPart, responsePart,
                lastResponseOnly, packing, n, groupByLength, maxBadRowFraction, seed, splitSpecialTokens);
    }

    /** The same settings with split_special_tokens {@code split}. */
    public DataConfig withSplitSpecialTokens(boolean split) {
        return new DataConfig(dataset, evalDataset, evalSplit, datasetFormat, chatTemplate, trainOnResponsesOnly, instructionPart, responsePart,
                lastResponseOnly, packing, maxSeqLength, groupByLength, maxBadRowFraction, seed, split);
    }

    /** Defaults for everything but the dataset. */
    public static DataConfig of(String dataset) {
        return new DataConfig(dataset, null, EVAL_SPLIT_AUTO, DatasetFormat.AUTO, null, null, null, null, false, false, DEFAULT_MAX_SEQ_LENGTH,
                false, DEFAULT_MAX_BAD_ROW_FRACTION, DEFAULT_SEED);
    }

    /** Whether the loss is on responses only, given whether the rows are conversations ({@code chat}); the masker needs a chat template too. */
    public boolean responsesOnlyFor(boolean chat) {
        return trainOnResponsesOnly == null ? chat : trainOnResponsesOnly;
    }

    /** What train_on_responses_only does with ({@code chat}) or without conversation rows, for the log. */
    public String describeResponsesOnly(boolean chat) {
        String v = trainOnResponsesOnly == null ? "auto" : trainOnResponsesOnly.toString();
        return "train_on_responses_only " + v + ": " + (responsesOnlyFor(chat) ? "on" : "off")
                + (chat ? " (conversation rows)" : " (no conversation rows)");
    }

    /** Whether eval_split is auto. */
    public boolean evalSplitAuto() {
        return evalSplit == EVAL_SPLIT_AUTO;
    }

    /**
     * Rows of a {@code rows}-row dataset held out for eval: none with an eval_dataset; with auto,
     * round(5 %) clamped to 1..{@value #AUTO_EVAL_MAX_ROWS} from {@value #AUTO_EVAL_MIN_ROWS} rows
     * on (else 0); else max(1, round(evalSplit × rows)) when evalSplit &gt; 0.
     */
    public int evalRows(int rows) {
        if (evalDataset != null) return 0;
        if (evalSplitAuto()) {
            if (rows < AUTO_EVAL_MIN_ROWS) return 0;
            return (int) Math.min(AUTO_EVAL_MAX_ROWS, Math.max(1, Math.round(AUTO_EVAL_FRACTION * rows)));
        }
        return evalSplit > 0 ? (int) Math.max(1, Math.round(evalSplit * rows)) : 0;
    }

    /** What eval_split does with {@code rows} rows, for the log: "eval_split auto: 12 of 240 rows held out (5 %)". */
    public String describeEvalSplit(int rows) {
        if (evalDataset != null) return "eval: " + evalDataset;
        int k = evalRows(rows);
        if (evalSplitAuto())
            return k == 0 ? "eval_split auto: no eval set (" + rows + " rows, fewer than " + AUTO_EVAL_MIN_ROWS + ")"
                    : "eval_split auto: " + k + " of " + rows + " rows held out for eval_loss (5 %, at most " + AUTO_EVAL_MAX_ROWS + ")";
        return k == 0 ? "eval_split 0: no eval set" : "eval_split " + evalSplit + ": " + k + " of " + rows + " rows held out";
    }

    private static List<String> problems(String dataset, String evalDataset, double evalSplit, String chatTemplate, Boolean responsesOnly,
            String instructionPart, String responsePart, boolean lastResponseOnly, boolean packing, boolean groupByLength,
            int maxSeqLength, double maxBad) {
        List<String> bad = new ArrayList<>();
        if (dataset == null || dataset.isBlank()) bad.add("dataset is missing");
        if (!(evalSplit >= 0 && evalSplit < 1) && evalSplit != EVAL_SPLIT_AUTO) bad.add("eval_split " + evalSplit + " is not in [0, 1) or auto");
        if (evalDataset != null && evalDataset.isBlank()) bad.add("eval_dataset is empty");
        if (evalDataset != null && evalSplit > 0) bad.add("eval_dataset and eval_split are both set (use one)");
        if (maxSeqLength < 2) bad.add("max_seq_length " + maxSeqLength + " is below 2");
        if (!(maxBad >= 0 && maxBad <= 1)) bad.add("max_bad_row_fraction " + maxBad + " is not in [0, 1]");
        if (instructionPart != null && instructionPart.isEmpty()) bad.add("instruction_part is empty");
        if (responsePart != null && responsePart.isEmpty()) bad.add("response_part is empty");
        if (instructionPart != null && instructionPart.equals(responsePart)) bad.add("instruction_part and response_part are the same");
        if (Boolean.FALSE.equals(responsesOnly) && (instructionPart != null || responsePart != null || lastResponseOnly))
            bad.add("instruction_part, response_part and last_response_only need train_on_responses_only: true (or auto)");
        if (packing && groupByLength) bad.add("packing and group_by_length exclude each other (packed sequences are all about max_seq_length long)");
        if (chatTemplate != null && chatTemplate.isBlank()) bad.add("chat_template is empty");
        return bad;
    }

    /**
     * Reads the data keys of a parsed YAML config (other keys are ignored). Values of the wrong
     * type are reported together with the validation problems, in one message.
     *
     * @throws IllegalArgumentException naming every bad key
     */
    public static DataConfig fromMap(Map<String, ?> m) {
        List<String> bad = new ArrayList<>();
        String dataset = str(m, "dataset", bad);
        String evalDataset = str(m, "eval_dataset", bad);
        double evalSplit = isAuto(m.get("eval_split")) ? EVAL_SPLIT_AUTO : num(m, "eval_split", EVAL_SPLIT_AUTO, bad);
        DatasetFormat fmt = DatasetFormat.AUTO;
        String f = str(m, "dataset_format", bad);
        if (f != null) {
            try {
                fmt = DatasetFormat.parse(f);
            } catch (IllegalArgumentException e) {
                bad.add(e.getMessage());
            }
        }
        String chat = str(m, "chat_template", bad);
        Boolean responsesOnly = isAuto(m.get("train_on_responses_only")) ? null : bool(m, "train_on_responses_only", false, bad);
        String instr = str(m, "instruction_part", bad), resp = str(m, "response_part", bad);
        boolean lastOnly = bool(m, "last_response_only", false, bad);
        boolean packing = bool(m, "packing", false, bad);
        double maxLen = num(m, "max_seq_length", DEFAULT_MAX_SEQ_LENGTH, bad);
        if (maxLen != Math.rint(maxLen) || maxLen > Integer.MAX_VALUE) {
            bad.add("max_seq_length " + maxLen + " is not an integer");
            maxLen = DEFAULT_MAX_SEQ_LENGTH;
        }
        boolean group = bool(m, "group_by_length", false, bad);
        double maxBad = num(m, "max_bad_row_fraction", DEFAULT_MAX_BAD_ROW_FRACTION, bad);
        double seed = num(m, "seed", DEFAULT_SEED, bad);
        if (seed != Math.rint(seed)) {
            bad.add("seed " + seed + " is not an integer");
            seed = DEFAULT_SEED;
        }
        boolean splitSpecial = bool(m, "split_special_tokens", false, bad);
        bad.addAll(problems(dataset, evalDataset, evalSplit, chat, responsesOnly, instr, resp, lastOnly, packing, group, (int) maxLen, maxBad));
        if (!bad.isEmpty()) throw new IllegalArgumentException("bad data config: " + String.join("; ", bad));
        return new DataConfig(dataset, evalDataset, evalSplit, fmt, chat, responsesOnly, instr, resp, lastOnly, packing, (int) maxLen, group,
                maxBad, (long) seed, splitSpecial);
    }

    /** Unset or "auto": the default decides. */
    private static boolean isAuto(Object v) {
        return v == null || (v instanceof String s && s.trim().equalsIgnoreCase("auto"));
    }

    private static String str(Map<String, ?> m, String key, List<String> bad) {
        Object v = m.get(key);
        if (v == null) return null;
        if (v instanceof String s) return s;
        if (v instanceof Number || v instanceof Boolean) return String.valueOf(v);
        bad.add(key + " is not a string");
        return null;
    }

    private static double num(Map<String, ?> m, String key, double dflt, List<String> bad) {
        Object v = m.get(key);
        if (v == null) return dflt;
        if (v instanceof Number n) return n.doubleValue();
        if (v instanceof String s) {
            try {
                return Double.parseDouble(s.trim());
            } catch (NumberFormatException e) {
                // reported below
            }
        }
        bad.add(key + " '" + v + "' is not a number");
        return dflt;
    }

    private static boolean bool(Map<String, ?> m, String key, boolean dflt, List<String> bad) {
        Object v = m.get(key);
        if (v == null) return dflt;
        if (v instanceof Boolean b) return b;
        if (v instanceof String s) {
            String t = s.trim().toLowerCase(Locale.ROOT);
            if (t.equals("true") || t.equals("yes") || t.equals("1")) return true;
            if (t.equals("false") || t.equals("no") || t.equals("0")) return false;
        }
        bad.add(key + " '" + v + "' is not true or false");
        return dflt;
    }
}
