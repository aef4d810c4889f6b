package io.lora4j.train;

import io.lora4j.data.DataConfig;
import io.lora4j.data.DataPipeline;
import io.lora4j.data.Example;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.FormatException;
import io.lora4j.lora.LoftQ;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.plan.MemoryPlanner;
import io.lora4j.plan.PlanSettings;
import io.lora4j.quant.Nf4;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tokenizer.TokenizerPath;
import io.lora4j.tokenizer.Tokenizer;
import io.lora4j.tokenizer.Tokenizers;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;

/**
 * The setup stage of a {@link TrainingRun} (torchtune's recipe {@code setup}): the output
 * directory, the backend, the tokenizer, the base model (dense, NF4 or LoftQ's), the adapter, the
 * data, the step count, and for a resumed run the checkpoint with its fingerprint checked against
 * the settings. Owns the model and adapter tensors until {@link #close()}.
 */
final class RunSetup implements AutoCloseable {
    /** The fingerprint key of a data-parallel run's world size. */
    static final String WORLD_SIZE = "world_size";
    final RunConfig cfg;
    /** cfg's training settings with checkpoint_every resolved (see {@link #checkpointEvery}). */
    final TrainConfig train;
    /** The output directory (absolute). */
    final Path out;
    final Backend backend;
    /** The weights the loop trains on: {@code loaded}, or LoftQ's NF4 base made from it. */
    final LlamaWeights base;
    final DataPipeline data;
    /** Optimizer steps of the whole run, and per epoch, as this rank's shard of the data gives them. */
    final long total, perEpoch;
    /** What the run's settings are ({@link RunFingerprint}). */
    final Map<String, String> fingerprint;
    /** The checkpoint to resume from, or null for a new run. */
    final TrainingCheckpoint.Loaded resumed;
    private final LlamaWeights loaded;
    /** The trained adapter (a resumed run's holds the checkpoint's parameters). */
    private LoraAdapter adapter;

    private RunSetup(RunConfig cfg, TrainConfig train, Path out, Backend backend, LlamaWeights loaded, LlamaWeights base, LoraAdapter adapter,
            DataPipeline data, long total, long perEpoch, Map<String, String> fingerprint, TrainingCheckpoint.Loaded resumed) {
        this.cfg = cfg;
        this.train = train;
        this.out = out;
        this.backend = backend;
        this.loaded = loaded;
        this.base = base;
        this.adapter = adapter;
        this.data = data;
        this.total = total;
        this.perEpoch = perEpoch;
        this.fingerprint = fingerprint;
        this.resumed = resumed;
    }

    LoraAdapter adapter() {
        return adapter;
    }

    /**
     * The output directory of a run: {@code out}, or with {@link TrainingRun.Options#resume} the
     * resumed run's (then {@code out} must be null or name it).
     */
    static Path directory(Path out, TrainingRun.Options o) throws IOException {
        if (o.resume() != null) {
            Path dir = TrainingCheckpoint.choose(o.resume()).runDir();
            if (out != null && !(Files.exists(out) && Files.isSameFile(out.toAbsolutePath(), dir)))
                throw new IllegalArgumentException("the resumed run's directory is " + dir + ", not " + out + " (leave the output directory out)");
            return dir;
        }
        Path dir = Objects.requireNonNull(out, "out").toAbsolutePath().normalize();
        if (Files.exists(dir, LinkOption.NOFOLLOW_LINKS) && !Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS))
            throw new FormatException(dir, "exists and is not a directory");
        return dir;
    }

    /** Refuses a new run into a directory holding anything but the lock, unless it overwrites. */
    static void checkEmpty(Path dir, TrainingRun.Options o) throws IOException {
        if (o.resume() != null || o.overwrite()) return;
        for (Path p : list(dir))
            if (!p.getFileName().toString().equals(RunLock.FILE))
                throw new FormatException(dir, "exists and is not empty (use --overwrite to replace it, or --resume to continue its run)");
    }

    /**
     * Builds everything the loop needs, in the locked directory {@code out}; an overwriting run
     * empties it (the lock stays).
     */
    static RunSetup open(RunConfig cfg, Path out, PrintStream log, TrainingRun.Options o) throws IOException {
        TrainingCheckpoint.Choice choice = null;
        if (o.resume() != null) {
            // chosen again under the lock: a run that held the directory may have written a newer one
            choice = TrainingCheckpoint.choose(o.resume());
            for (String s : choice.skipped()) log.println("warning: skipped " + s);
        }
        Backend backend;
        try {
            backend = Backends.select(cfg.device());
        } catch (IllegalStateException e) {
            throw new IllegalArgumentException("device " + cfg.device() + ": " + e.getMessage());
        }
        Path tokPath = TokenizerPath.of(cfg.model(), cfg.tokenizer());
        Tokenizer tok = Tokenizers.load(tokPath);
        LoraConfig lc = cfg.lora();
        boolean loftq = lc.init() == LoraConfig.Init.LOFTQ;
        ModelLoader.Options opts = (cfg.loadIn4bit() && !loftq ? ModelLoader.Options.in4bit() : ModelLoader.Options.defaults()).withBackend(backend)
                .withComputeDtype(cfg.computeDtype());
        LlamaWeights loaded = ModelLoader.load(cfg.model(), opts);
        LlamaWeights base = loaded;
        LoraAdapter adapter = null;
        boolean ok = false;
        try {
            // more embedding rows than tokens is normal (Qwen pads 151,669 tokens to 151,936 rows); fewer is not
            if (tok.vocabSize() > loaded.config().vocabSize())
                throw new FormatException(cfg.model(), "the tokenizer has " + tok.vocabSize() + " tokens, more than the model's vocabulary of " + loaded.config().vocabSize());
            if (lc.bias() != LoraConfig.Bias.NONE)
                log.println("note: bias=" + lc.bias().peftName + " selects no parameter on Llama (it has no biases), as in PEFT");
            if (loftq) {
                // LoftQ also changes the base (W - BA quantized): a resumed run recomputes it, deterministically
                LoftQ.Result r = LoftQ.initialize(backend, loaded, lc, Nf4.DEFAULT_BLOCKSIZE, true);
                LoftQ.releaseDenseProjections(loaded); // the start-up spike ends here (MemoryPlanner.loftqStartupBytes)
                base = r.weights();
                if (cfg.computeDtype() == DType.BF16) base = ModelLoader.withComputeDtype(base, DType.BF16);
                adapter = r.adapter();
                log.printf(Locale.ROOT, "LoftQ (%d iteration%s): relative error of the NF4 base %.4f -> %.4f with the adapter%n",
                        lc.loftqIter(), lc.loftqIter() == 1 ? "" : "s", r.errorBefore(), r.errorAfter());
            } else {
                adapter = LoraAdapter.create(backend, loaded.config(), lc);
            }
            TrainConfig tc = cfg.train();
            int maxLen = Math.min(tc.maxSeqLength(), loaded.config().maxPositionEmbeddings());
            DataConfig dc = cfg.data();
            if (dc.maxSeqLength() != maxLen) dc = dc.withMaxSeqLength(maxLen);
            DataPipeline data = DataPipeline.build(dc, tok, tokPath);
            log.println("data: " + data.stats().summary());
            long sequences = o.parallel().shard().sequences(data);
            long total = tc.totalSteps(sequences);
            Map<String, String> fingerprint = RunFingerprint.of(cfg, data, total);
            // Absent for one process, so that checkpoints of single-process runs keep resuming.
            if (o.parallel().worldSize() > 1) fingerprint.put(WORLD_SIZE, Integer.toString(o.parallel().worldSize()));
            TrainingCheckpoint.Loaded resumed = null;
            if (choice != null) {
                resumed = TrainingCheckpoint.load(choice.checkpoint());
                String was = resumed.state().fingerprint.getOrDefault(WORLD_SIZE, "1");
                if (!was.equals(Integer.toString(o.parallel().worldSize())))
                    throw new FormatException(choice.checkpoint().resolve(TrainingState.FILE), "was written by a run of " + was + " rank(s), this one has "
                            + o.parallel().worldSize() + ": each step's global batch and every rank's share of it depend on the world size,"
                            + " so the run would not continue the same way (resume with " + was + " rank(s))");
                List<String> diff = RunFingerprint.differences(resumed.state().fingerprint, fingerprint);
                if (!diff.isEmpty())
                    throw new FormatException(choice.checkpoint().resolve(TrainingState.FILE), "was made with settings that train differently: "
                            + String.join("; ", diff) + " (resume with the checkpoint's settings, or start a new run)");
                float[] v;
                try (LoraAdapter saved = LoraAdapter.load(choice.checkpoint(), backend, loaded.config())) {
                    v = saved.toFloats();
                }
                adapter.close();
                adapter = null; // not released twice should the next line throw
                adapter = LoraAdapter.of(backend, loaded.config(), lc, v);
                if (o.parallel().writesOutputs()) TrainingCheckpoint.removeLeftovers(out);
            } else if (o.overwrite() && o.parallel().writesOutputs()) {
                for (Path p : list(out)) if (!p.getFileName().toString().equals(RunLock.FILE)) AtomicFiles.deleteRecursively(p);
            }
            int longest = 2;
            for (Example e : data.train()) longest = Math.max(longest, e.length());
            int every = checkpointEvery(cfg, loaded.config(), longest, backend.device());
            if (tc.checkpointing() == CheckpointMode.CHUNKED && tc.checkpointEvery() == 0)
                log.printf(Locale.ROOT, "checkpointing: chunked, checkpoint_every %d (the memory planner's lowest peak; round(sqrt(layers)) would be %d)%n",
                        every, CheckpointMode.defaultEvery(loaded.config().numHiddenLayers()));
            RunSetup s = new RunSetup(cfg, tc.withCheckpointing(tc.checkpointing(), every), out, backend, loaded, base, adapter, data, total, tc.stepsPerEpoch(sequences), fingerprint, resumed);
            ok = true;
            return s;
        } finally {
            if (!ok) release(adapter, base, loaded);
        }
    }

    /**
     * checkpoint_every as the run uses it: the configured value, or for {@link CheckpointMode#CHUNKED}
     * with 0 the group size with the lowest predicted peak ({@link MemoryPlanner#bestCheckpointEvery})
     * at this run's rank, targets, batch, base precision, dropout and device, for rows of
     * {@code longestRow} tokens (at most max_seq_length).
     * Every layer is recomputed once whatever the group size, so the choice costs no time. The
     * resolved value is not part of the fingerprint: any group size trains the same numbers.
     */
    static int checkpointEvery(RunConfig cfg, LlamaConfig model, int longestRow, Device device) {
        TrainConfig tc = cfg.train();
        if (tc.checkpointing() != CheckpointMode.CHUNKED || tc.checkpointEvery() > 0) return tc.checkpointEvery();
        LoraConfig lc = cfg.lora();
        boolean nf4 = cfg.loadIn4bit() || lc.init() == LoraConfig.Init.LOFTQ;
        PlanSettings s = new PlanSettings(lc.r(), lc.targetModules(), Math.max(2, Math.min(longestRow, tc.maxSeqLength())), tc.perDeviceTrainBatchSize(),
                CheckpointMode.CHUNKED, 0, nf4, Nf4.DEFAULT_BLOCKSIZE, true, lc.loraDropout(), device, cfg.weightDtype(), cfg.bf16());
        return MemoryPlanner.bestCheckpointEvery(model, s);
    }

    @Override
    public void close() {
        release(adapter, base, loaded);
        adapter = null;
    }

    private static void release(LoraAdapter adapter, LlamaWeights base, LlamaWeights loaded) {
        if (adapter != null) adapter.close();
        if (base != loaded) for (var l : base.layers()) for (var pw : l.projections().values()) pw.close();
        loaded.close();
    }

    static List<Path> list(Path dir) throws IOException {
        try (var s = Files.list(dir)) {
            return s.toList();
        }
    }
}
