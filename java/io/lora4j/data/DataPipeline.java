package io.lora4j.data;

import io.lora4j.io.FormatException;
import io.lora4j.io.TextFiles;
import io.lora4j.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Optional;
import java.util.Random;

/**
 * Dataset -> chat template -> tokens -> response masking -> truncation -> batches (DESIGN.md §1).
 * Build once per run with {@link #build}; then {@link #batches(int, int)} gives each epoch's
 * micro-batches and {@link #steps} groups them into optimizer steps.
 *
 * <h2>Rows</h2>
 * <ul>
 *   <li>conversations (conversational, ShareGPT, Alpaca, message-list prompt/completion): rendered
 *       with the chat template and tokenized with {@link Tokenizer#encodeWithSpecials} adding
 *       nothing (the template holds BOS where the model wants it: no double BOS); loss on every
 *       token, or with {@code train_on_responses_only} on the assistant turns and their turn ends;
 *   <li>text: [BOS] + text + [EOS], loss on every token; a row longer than max_seq_length is split
 *       into consecutive pieces of max_seq_length (continued pretraining keeps all text);
 *   <li>prompt + completion strings: [BOS] + prompt + completion + [EOS], loss on the completion and EOS;
 *   <li>pre-tokenized: as given.
 * </ul>
 * Other rows longer than max_seq_length are truncated (counted). A row with no trained target
 * left is skipped (counted); if every training row is, the build fails naming the markers and
 * showing the first rendered row.
 */
public final class DataPipeline {
    /** One tokenized row and where it came from. {@code text}: the rendered/encoded text. */
    public record Row(String source, int line, String text, Example example) {}

    private final DataConfig cfg;
    private final Tokenizer tok;
    private final ChatTemplate template;
    private final ResponseMasker masker;
    private final List<Row> train, eval;
    private final List<Batches.Packed> trainPacked, evalPacked;
    private final DataStats stats;
    private final int padId;
    /** Training example -> its index in {@link #train}, to fill {@link Batch#rowIds()} (packed parts are the same objects). */
    private final IdentityHashMap<Example, Integer> trainIndex = new IdentityHashMap<>();

    private DataPipeline(DataConfig cfg, Tokenizer tok, ChatTemplate template, ResponseMasker masker, List<Row> train, List<Row> eval,
            DataStats stats) {
        this.cfg = cfg;
        this.tok = tok;
        this.template = template;
        this.masker = masker;
        this.train = List.copyOf(train);
        this.eval = List.copyOf(eval);
        this.padId = padId(tok);
        for (int i = 0; i < this.train.size(); i++) trainIndex.put(this.train.get(i).example(), i);
        if (cfg.packing()) {
            List<Example> ex = examples(this.train);
            Integer[] perm = Batches.permutation(ex.size(), new Random(cfg.seed() + PACK_SALT));
            List<Example> order = new ArrayList<>(ex.size());
            for (Integer i : perm) order.add(ex.get(i));
            trainPacked = Batches.pack(order, cfg.maxSeqLength());
            evalPacked = Batches.pack(examples(this.eval), cfg.maxSeqLength());
        } else {
            trainPacked = null;
            evalPacked = null;
        }
        this.stats = stats.withSequences(trainPacked != null ? trainPacked.size() : this.train.size());
    }

    private static final long SPLIT_SALT = 0, PACK_SALT = 1_000_003, EPOCH_SALT = 7_919;

    /**
     * Reads, renders, tokenizes and masks the datasets of {@code cfg}.
     *
     * @param tokenizerPath the tokenizer file or model directory (where tokenizer_config.json and
     *                      its chat_template are looked for); may be null when no chat template of
     *                      the model is needed
     * @throws FormatException          a missing or malformed dataset, too many bad rows, no row left
     *                                  to train (one line naming the file)
     * @throws IllegalArgumentException an unknown chat template name, a template that cannot be
     *                                  rendered or whose markers cannot be detected
     */
    public static DataPipeline build(DataConfig cfg, Tokenizer tok, Path tokenizerPath) throws IOException {
        Path dataPath = Path.of(cfg.dataset());
        DatasetReader.Result train = DatasetReader.read(dataPath, cfg.datasetFormat(), cfg.maxBadRowFraction());
        List<Sample> trainSamples = new ArrayList<>(train.samples());
        List<Sample> evalSamples = new ArrayList<>();
        int rows = train.rows(), bad = train.badRows();
        List<String> badExamples = new ArrayList<>(train.badExamples());
        if (cfg.evalDataset() != null) {
            DatasetReader.Result ev = DatasetReader.read(Path.of(cfg.evalDataset()), cfg.datasetFormat(), cfg.maxBadRowFraction());
            evalSamples.addAll(ev.samples());
            rows += ev.rows();
            bad += ev.badRows();
            badExamples.addAll(ev.badExamples());
        } else if (cfg.evalRows(trainSamples.size()) > 0) {
            int n = trainSamples.size();
            int k = cfg.evalRows(n);
            if (n - k < 1) throw new FormatException(dataPath, n + " rows cannot give eval_split " + cfg.evalSplit() + " and keep a training row");
            Integer[] perm = Batches.permutation(n, new Random(cfg.seed() + SPLIT_SALT));
            boolean[] isEval = new boolean[n];
            for (int i = 0; i < k; i++) isEval[perm[i]] = true;
            List<Sample> t = new ArrayList<>();
            for (int i = 0; i < n; i++) (isEval[i] ? evalSamples : t).add(trainSamples.get(i));
            trainSamples = t;
        }

        boolean chat = false;
        for (Sample s : trainSamples) chat |= s instanceof Sample.Chat;
        for (Sample s : evalSamples) chat |= s instanceof Sample.Chat;
        ChatTemplate template = chat || cfg.chatTemplate() != null ? resolveTemplate(cfg.chatTemplate(), tok, tokenizerPath) : null;
        ResponseMasker masker = null;
        if (cfg.responsesOnlyFor(chat) && template != null) {
            ChatTemplate.Markers m = cfg.instructionPart() != null && cfg.responsePart() != null
                    ? new ChatTemplate.Markers(cfg.instructionPart(), cfg.responsePart(), turnEndOrEmpty(template), false)
                    : template.markers();
            masker = new ResponseMasker(tok, cfg.instructionPart() != null ? cfg.instructionPart() : m.instruction(),
                    cfg.responsePart() != null ? cfg.responsePart() : m.response(), m.turnEnd(), cfg.lastResponseOnly());
        }

        Encoder enc = new Encoder(cfg, tok, template, masker);
        List<Row> trainRows = enc.encodeAll(trainSamples);
        List<Row> evalRows = enc.encodeAll(evalSamples);
        bad += enc.renderFailures;
        badExamples.addAll(enc.renderProblems);
        if (enc.renderFailures > 0 && bad > cfg.maxBadRowFraction() * rows)
            throw new FormatException(dataPath, bad + " of " + rows + " rows are bad (more than max_bad_row_fraction "
                    + cfg.maxBadRowFraction() + "); first: " + badExamples.get(0));
        if (trainRows.isEmpty()) {
            if (masker != null && enc.skipped > 0)
                throw new FormatException(dataPath, "no training row has an assistant token left: all " + enc.skipped
                        + " were masked entirely with instruction_part " + ChatTemplate.show(masker.instruction()) + " and response_part "
                        + ChatTemplate.show(masker.response()) + " (turn end " + ChatTemplate.show(masker.turnEnd()) + ", max_seq_length "
                        + cfg.maxSeqLength() + "); first rendered row: " + ChatTemplate.show(enc.firstSkipped));
            throw new FormatException(dataPath, "no training row has a token to predict (" + enc.skipped + " rows skipped; first: "
                    + ChatTemplate.show(enc.firstSkipped == null ? "" : enc.firstSkipped) + ")");
        }
        long tokens = 0, targets = 0;
        for (Row r : trainRows) {
            tokens += r.example().length();
            targets += r.example().predictedTokens();
        }
        DataStats stats = new DataStats(train.format(), template == null ? null : template.name(),
                masker == null ? null : new ChatTemplate.Markers(masker.instruction(), masker.response(), masker.turnEnd(), false), rows, bad,
                badExamples, trainRows.size(), evalRows.size(), enc.skipped, enc.truncated, enc.split, trainRows.size(), tokens, targets,
                enc.firstSkipped, List.of(cfg.describeEvalSplit(train.samples().size()), cfg.describeResponsesOnly(chat)));
        return new DataPipeline(cfg, tok, template, masker, trainRows, evalRows, stats);
    }

    private static String turnEndOrEmpty(ChatTemplate t) {
        try {
            return t.markers().turnEnd();
        } catch (ChatTemplate.TemplateException e) {
            return "";
        }
    }

    /**
     * The chat template of config value {@code name} (see {@link DataConfig#chatTemplate()}).
     *
     * @throws IllegalArgumentException for an unknown name, or "model" when the model has none
     */
    public static ChatTemplate resolveTemplate(String name, Tokenizer tok, Path tokenizerPath) throws IOException {
        ChatTemplate.Tokens tokens = tokens(tok);
        String n = name == null ? "auto" : name.trim();
        if (n.equals("auto") || n.equals("model") || n.equals("tokenizer")) {
            Optional<ChatTemplate> own = tokenizerPath == null ? Optional.empty() : ChatTemplate.fromModel(tokenizerPath, tokens);
            if (own.isPresent()) return own.get();
            if (!n.equals("auto"))
                throw new IllegalArgumentException("chat_template: " + n + ": " + tokenizerPath + " has no chat_template (choose one of "
                        + ChatTemplate.Builtin.names() + ")");
            return ChatTemplate.builtin(ChatTemplate.Builtin.ALPACA, tokens);
        }
        Optional<ChatTemplate.Builtin> b = ChatTemplate.Builtin.parse(n);
        if (b.isPresent()) return ChatTemplate.builtin(b.get(), tokens);
        if (n.contains("{%") || n.contains("{{")) return ChatTemplate.jinja("inline chat_template", n, tokens);
        Path p = Path.of(n);
        if (Files.isRegularFile(p)) return ChatTemplate.jinja(p.toString(), TextFiles.readUtf8(p), tokens);
        throw new IllegalArgumentException("chat_template '" + n + "' is not auto, model, one of " + ChatTemplate.Builtin.names()
                + ", a template file or inline Jinja");
    }

    /** The special-token strings a template may use, from the tokenizer. */
    public static ChatTemplate.Tokens tokens(Tokenizer tok) {
        return new ChatTemplate.Tokens(special(tok, tok.bosId()), special(tok, tok.eosId()),
                tok.padId().isPresent() ? special(tok, tok.padId().getAsInt()) : "", tok.tokenId("<unk>") >= 0 ? "<unk>" : "");
    }

    private static String special(Tokenizer tok, int id) {
        if (id < 0) return "";
        String p = tok.piece(id);
        // llama2.c's tokenizer.bin stores "\n<s>\n": use the string encodeWithSpecials reads as the id.
        for (var e : tok.specialTokens().entrySet()) if (e.getValue() == id && p.strip().equals(e.getKey())) return e.getKey();
        return p;
    }

    /**
     * The padding id: the tokenizer's pad when it differs from EOS, else the first of
     * {@code <|finetune_right_pad_id|>}, {@code <pad>}, {@code <unk>},
     * {@code <|reserved_special_token_0|>} in the vocabulary, else 0 (or 1 when 0 is EOS). Padding
     * never carries loss (targets -100) whatever its id; a pad distinct from EOS keeps label
     * derivation by id (HF collators) from masking EOS.
     */
    public static int padId(Tokenizer tok) {
        int eos = tok.eosId();
        if (tok.padId().isPresent() && tok.padId().getAsInt() != eos) return tok.padId().getAsInt();
        for (String s : new String[] {"<|finetune_right_pad_id|>", "<pad>", "<unk>", "<|reserved_special_token_0|>"}) {
            int id = tok.tokenId(s);
            if (id >= 0 && id != eos) return id;
        }
        return eos == 0 ? 1 : 0;
    }

    // ---- encoding ----

    /** Tokenizes samples into rows, counting what it skips, truncates and splits. */
    static final class Encoder {
        final DataConfig cfg;
        final Tokenizer tok;
        final ChatTemplate template;
        final ResponseMasker masker;
        int skipped, truncated, split, renderFailures;
        String firstSkipped;
        final List<String> renderProblems = new ArrayList<>();

        Encoder(DataConfig cfg, Tokenizer tok, ChatTemplate template, ResponseMasker masker) {
            this.cfg = cfg;
            this.tok = tok;
            this.template = template;
            this.masker = masker;
        }

        List<Row> encodeAll(List<Sample> samples) {
            List<Row> out = new ArrayList<>(samples.size());
            for (Sample s : samples) {
                try {
                    encode(s, out);
                } catch (ChatTemplate.TemplateException e) {
                    renderFailures++;
                    if (renderProblems.size() < DatasetReader.MAX_REPORTED_BAD) renderProblems.add(s.source() + " line " + s.line() + ": " + e.getMessage());
                }
            }
            return out;
        }

        void encode(Sample s, List<Row> out) {
            int max = cfg.maxSeqLength();
            int vocab = tok.vocabSize();
            if (s instanceof Sample.Text t) {
                int[] ids = encodeText(t.text(), true);
                if (ids.length > max) split++;
                for (int off = 0; off < ids.length; off += max) {
                    int[] piece = Arrays.copyOfRange(ids, off, Math.min(ids.length, off + max));
                    add(out, s, t.text(), new Example(piece, piece));
                }
                return;
            }
            String text;
            int[] ids, labels;
            if (s instanceof Sample.Chat c) {
                text = template.renderForTraining(c.messages());
                ids = tok.encodeWithSpecials(text, false, false);
                labels = masker != null ? masker.labels(ids) : ids;
            } else if (s instanceof Sample.PromptCompletion pc) {
                text = pc.prompt() + pc.completion();
                ids = encodeText(text, true);
                labels = ids.clone();
                int masked = promptTokens(pc.prompt(), ids);
                Arrays.fill(labels, 0, masked, Example.IGNORE_INDEX);
            } else {
                Sample.Tokens tk = (Sample.Tokens) s;
                ids = tk.inputIds();
                labels = tk.labels();
                for (int i = 0; i < ids.length; i++) {
                    if (ids[i] >= vocab || (labels[i] != Example.IGNORE_INDEX && labels[i] >= vocab)) {
                        renderFailures++;
                        if (renderProblems.size() < DatasetReader.MAX_REPORTED_BAD)
                            renderProblems.add(s.source() + " line " + s.line() + ": token " + i + " is outside the vocabulary of " + vocab);
                        return;
                    }
                }
                text = tok.decode(ids, true);
            }
            if (ids.length > max) {
                truncated++;
                ids = Arrays.copyOf(ids, max);
                labels = Arrays.copyOf(labels, max);
            }
            add(out, s, text, new Example(ids, labels));
        }

        /**
         * [BOS] + text (+ EOS) of a text or prompt/completion row: special-token strings become
         * their ids, as HF tokenizers read them, unless split_special_tokens keeps them as text.
         */
        int[] encodeText(String text, boolean eos) {
            return cfg.splitSpecialTokens() ? tok.encode(text, true, eos) : tok.encodeWithSpecials(text, true, eos);
        }

        /** Tokens of [BOS] + prompt inside the ids of [BOS] + prompt + completion (+ EOS). */
        int promptTokens(String prompt, int[] full) {
            int[] p = encodeText(prompt, false);
            boolean prefix = p.length <= full.length;
            for (int i = 0; prefix && i < p.length; i++) prefix = p[i] == full[i];
            if (prefix) return p.length;
            // The tokenizer merged the prompt's end with the completion's start: that token is trained.
            int promptBytes = p.length == 0 ? 0 : TokenText.of(tok, p).end(p.length - 1);
            return TokenText.of(tok, full).tokenEndingAfter(promptBytes);
        }

        private void add(List<Row> out, Sample s, String text, Example e) {
            if (e.predictedTokens() == 0) {
                skipped++;
                if (firstSkipped == null) firstSkipped = text;
                return;
            }
            out.add(new Row(s.source(), s.line(), text, e));
        }
    }

    private static List<Example> examples(List<Row> rows) {
        List<Example> out = new ArrayList<>(rows.size());
        for (Row r : rows) out.add(r.example());
        return out;
    }

    // ---- accessors and batches ----

    public DataConfig config() {
        return cfg;
    }

    public Tokenizer tokenizer() {
        return tok;
    }

    /** The chat template in use (conversation rows), if any. */
    public Optional<ChatTemplate> template() {
        return Optional.ofNullable(template);
    }

    /** The masker in use (train_on_responses_only with conversation rows), if any. */
    public Optional<ResponseMasker> masker() {
        return Optional.ofNullable(masker);
    }

    /** Training rows, in dataset order (after split, truncation and skipping). */
    public List<Example> train() {
        return examples(train);
    }

    /** Eval rows, in dataset order. */
    public List<Example> eval() {
        return examples(eval);
    }

    /** Training rows with their rendered text and origin (for {@code lora4j data --dump}). */
    public List<Row> trainRows() {
        return train;
    }

    public List<Row> evalRows() {
        return eval;
    }

    public DataStats stats() {
        return stats;
    }

    /** The padding id of every batch ({@link #padId(Tokenizer)}). */
    public int padId() {
        return padId;
    }

    /** Training sequences per epoch: packed sequences with packing, else rows. */
    public int trainSequences() {
        return trainPacked != null ? trainPacked.size() : train.size();
    }

    /** {@link #batches(int, int, long)} with the config's seed. */
    public List<Batch> batches(int epoch, int batchSize) {
        return batches(epoch, batchSize, cfg.seed());
    }

    /**
     * The training micro-batches of epoch {@code epoch} (0-based): the sequences shuffled with
     * (seed, epoch) — length-grouped with group_by_length — cut into batches of
     * {@code batchSize} (the last may be smaller), right-padded to the batch's longest sequence.
     * With packing, the sequences were packed once at build (seeded) and only their order changes.
     */
    public List<Batch> batches(int epoch, int batchSize, long seed) {
        if (batchSize < 1) throw new IllegalArgumentException("batch size " + batchSize + " is below 1");
        if (epoch < 0) throw new IllegalArgumentException("epoch " + epoch + " is negative");
        Random rnd = new Random(seed + EPOCH_SALT * (epoch + 1L));
        List<Batch> out = new ArrayList<>();
        if (trainPacked != null) {
            Integer[] perm = Batches.permutation(trainPacked.size(), rnd);
            for (int i = 0; i < perm.length; i += batchSize) {
                List<Batches.Packed> b = new ArrayList<>();
                for (int k = i; k < Math.min(perm.length, i + batchSize); k++) b.add(trainPacked.get(perm[k]));
                int[][] ids = new int[b.size()][];
                for (int k = 0; k < ids.length; k++) {
                    List<Example> parts = b.get(k).parts();
                    ids[k] = new int[parts.size()];
                    for (int j = 0; j < ids[k].length; j++) ids[k][j] = trainIndex.get(parts.get(j));
                }
                out.add(Batches.packedBatch(b, padId).withRowIds(ids));
            }
            return out;
        }
        List<Example> ex = train();
        if (cfg.groupByLength()) {
            int[] lengths = new int[ex.size()];
            for (int i = 0; i < lengths.length; i++) lengths[i] = ex.get(i).length();
            for (int[] idx : Batches.lengthGrouped(lengths, batchSize, rnd)) {
                List<Example> b = new ArrayList<>(idx.length);
                for (int i : idx) b.add(ex.get(i));
                out.add(Batch.of(b, padId).withRowIds(single(idx, 0, idx.length)));
            }
            return out;
        }
        Integer[] perm = Batches.permutation(ex.size(), rnd);
        List<Example> order = new ArrayList<>(ex.size());
        for (Integer i : perm) order.add(ex.get(i));
        int[] idx = new int[perm.length];
        for (int i = 0; i < idx.length; i++) idx[i] = perm[i];
        List<Batch> padded = Batches.padded(order, batchSize, padId);
        for (int k = 0; k < padded.size(); k++)
            out.add(padded.get(k).withRowIds(single(idx, k * batchSize, Math.min(idx.length, (k + 1) * batchSize))));
        return out;
    }

    /** {@code idx[from..to)} as one row id per batch row. */
    private static int[][] single(int[] idx, int from, int to) {
        int[][] out = new int[to - from][];
        for (int i = from; i < to; i++) out[i - from] = new int[] {idx[i]};
        return out;
    }

    /** Eval micro-batches in dataset order (packed with packing). */
    public List<Batch> evalBatches(int batchSize) {
        if (batchSize < 1) throw new IllegalArgumentException("batch size " + batchSize + " is below 1");
        if (evalPacked == null) return Batches.padded(eval(), batchSize, padId);
        List<Batch> out = new ArrayList<>();
        for (int i = 0; i < evalPacked.size(); i += batchSize)
            out.add(Batches.packedBatch(evalPacked.subList(i, Math.min(evalPacked.size(), i + batchSize)), padId));
        return out;
    }

    /** Optimizer steps per epoch, as HF counts them: ceil(sequences / (batchSize × gradAccum)). */
    public int stepsPerEpoch(int batchSize, int gradAccum) {
        return Batches.stepsPerEpoch(trainSequences(), batchSize, gradAccum);
    }

    /**
     * Epoch {@code epoch}'s micro-batches grouped into optimizer steps of {@code gradAccum}
     * micro-batches (the last step may have fewer). The loss of a step divides by the sum of
     * {@link Batch#targetTokens()} over its micro-batches (the GA rule, DESIGN.md §4).
     */
    public List<List<Batch>> steps(int epoch, int batchSize, int gradAccum) {
        if (gradAccum < 1) throw new IllegalArgumentException("gradient accumulation " + gradAccum + " is below 1");
        List<Batch> all = batches(epoch, batchSize);
        List<List<Batch>> out = new ArrayList<>();
        for (int i = 0; i < all.size(); i += gradAccum) out.add(List.copyOf(all.subList(i, Math.min(all.size(), i + gradAccum))));
        return out;
    }
}
