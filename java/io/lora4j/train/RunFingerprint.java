package io.lora4j.train;

import io.lora4j.data.DataConfig;
import io.lora4j.data.DataPipeline;
import io.lora4j.data.Example;
import io.lora4j.lora.LoraConfig;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The settings of a run that decide its numbers, as config key → value strings, so that resuming
 * with settings that would train differently is refused and the message names what changed.
 * Settings that only change what is logged or saved (logging_steps, save_steps,
 * save_total_limit, output_dir), where it runs (device) or how memory is spent
 * (use_gradient_checkpointing: same gradients) are left out. The data enter as a SHA-256 of the
 * tokenized rows; the base model as its files' sizes and a SHA-256 of their first and last MiB
 * (hashing a 16 GB model on every resume would take minutes).
 */
final class RunFingerprint {
    /** Bytes hashed at each end of every model file. */
    private static final int SAMPLE_BYTES = 1 << 20;

    private RunFingerprint() {}

    static Map<String, String> of(RunConfig cfg, DataPipeline data, long totalSteps) throws IOException {
        Map<String, String> f = new LinkedHashMap<>();
        f.put("model", modelIdentity(cfg.model()));
        f.put("load_in_4bit", String.valueOf(cfg.loadIn4bit()));
        // weight storage rounds the base (bf16): only an explicit dtype is recorded, so older checkpoints still match auto
        if (cfg.weightDtype() != null) f.put("dtype", cfg.weightDtype().name().toLowerCase(Locale.ROOT));
        // bf16 kept activations round what the backward reads: an explicit bf16 is recorded (auto, as dtype, is not)
        if (cfg.bf16() != null) f.put("bf16", String.valueOf(cfg.bf16()));
        // bf16 NF4 products change the forward: recorded only when set, as dtype
        if (cfg.computeDtype() != null) f.put("bnb_4bit_compute_dtype", cfg.computeDtype().name().toLowerCase(Locale.ROOT));
        LoraConfig l = cfg.lora();
        f.put("r", String.valueOf(l.r()));
        f.put("lora_alpha", String.valueOf(l.loraAlpha()));
        f.put("lora_dropout", String.valueOf(l.loraDropout()));
        f.put("bias", l.bias().peftName);
        f.put("target_modules", String.valueOf(l.targetModuleNames()));
        f.put("use_rslora", String.valueOf(l.useRslora()));
        f.put("init_lora_weights", l.init().name().toLowerCase(Locale.ROOT));
        f.put("loftq_iter", String.valueOf(l.loftqIter()));
        f.put("random_state", String.valueOf(l.randomState()));
        TrainConfig t = cfg.train();
        f.put("learning_rate", String.valueOf(t.learningRate()));
        f.put("num_train_epochs", String.valueOf(t.numTrainEpochs()));
        f.put("max_steps", String.valueOf(t.maxSteps()));
        f.put("per_device_train_batch_size", String.valueOf(t.perDeviceTrainBatchSize()));
        f.put("gradient_accumulation_steps", String.valueOf(t.gradientAccumulationSteps()));
        f.put("warmup_steps", String.valueOf(t.warmupSteps()));
        f.put("warmup_ratio", String.valueOf(t.warmupRatio()));
        f.put("lr_scheduler_type", t.lrScheduler().hfName);
        f.put("weight_decay", String.valueOf(t.weightDecay()));
        f.put("max_grad_norm", String.valueOf(t.maxGradNorm()));
        f.put("seed", String.valueOf(t.seed()));
        f.put("optim", cfg.optim());
        f.put("max_seq_length", String.valueOf(t.maxSeqLength()));
        f.put("total_steps", String.valueOf(totalSteps));
        DataConfig d = data.config();
        f.put("packing", String.valueOf(d.packing()));
        f.put("group_by_length", String.valueOf(d.groupByLength()));
        f.put("train_rows", rowsDigest(data.train()));
        // Evaluations change the adapter only through early stopping.
        if (t.earlyStoppingPatience() > 0) {
            f.put("early_stopping_patience", String.valueOf(t.earlyStoppingPatience()));
            f.put("early_stopping_threshold", String.valueOf(t.earlyStoppingThreshold()));
            f.put("eval_steps", String.valueOf(t.evalSteps()));
            f.put("eval_rows", rowsDigest(data.eval()));
        }
        return f;
    }

    /**
     * The differences between a checkpoint's fingerprint and this run's, as
     * "key: checkpoint value -> this run's value" items; empty when they agree.
     */
    static List<String> differences(Map<String, String> checkpoint, Map<String, String> now) {
        List<String> out = new ArrayList<>();
        for (Map.Entry<String, String> e : now.entrySet()) {
            String was = checkpoint.get(e.getKey());
            if (!e.getValue().equals(was)) out.add(e.getKey() + " " + (was == null ? "(absent)" : was) + " -> " + e.getValue());
        }
        for (String k : checkpoint.keySet()) if (!now.containsKey(k)) out.add(k + " " + checkpoint.get(k) + " -> (absent)");
        return out;
    }

    /** SHA-256 over the rows' ids and labels, with the count. */
    static String rowsDigest(List<Example> rows) {
        MessageDigest md = sha256();
        ByteBuffer b = ByteBuffer.allocate(8);
        b.putLong(rows.size());
        md.update(b.array());
        for (Example e : rows) {
            ByteBuffer x = ByteBuffer.allocate(4 + 8 * e.inputIds().length);
            x.putInt(e.inputIds().length);
            for (int v : e.inputIds()) x.putInt(v);
            for (int v : e.labels()) x.putInt(v);
            md.update(x.array());
        }
        return rows.size() + " rows, sha256 " + HexFormat.of().formatHex(md.digest()).substring(0, 16);
    }

    /** Sizes and sampled hashes of the model file, or of a model directory's files. */
    static String modelIdentity(Path model) throws IOException {
        List<Path> files = new ArrayList<>();
        if (Files.isDirectory(model)) {
            try (Stream<Path> s = Files.list(model)) {
                s.filter(Files::isRegularFile).filter(p -> !p.getFileName().toString().startsWith(".")).sorted().forEach(files::add);
            }
        } else {
            files.add(model);
        }
        MessageDigest md = sha256();
        long total = 0;
        for (Path p : files) {
            try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
                long size = ch.size();
                total += size;
                // a directory's files are told apart by name; a single file may be renamed or moved
                if (files.size() > 1 || Files.isDirectory(model)) md.update(p.getFileName().toString().getBytes(StandardCharsets.UTF_8));
                md.update(ByteBuffer.allocate(8).putLong(0, size).array());
                hashRange(ch, 0, Math.min(size, SAMPLE_BYTES), md);
                if (size > SAMPLE_BYTES) hashRange(ch, Math.max(SAMPLE_BYTES, size - SAMPLE_BYTES), size, md);
            }
        }
        return total + " bytes, sampled sha256 " + HexFormat.of().formatHex(md.digest()).substring(0, 16);
    }

    private static void hashRange(FileChannel ch, long from, long to, MessageDigest md) throws IOException {
        ByteBuffer b = ByteBuffer.allocate((int) (to - from));
        while (b.hasRemaining()) if (ch.read(b, from + b.position()) < 0) break;
        md.update(b.array(), 0, b.position());
    }

    static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("the JVM lacks SHA-256, which every Java platform must provide", e);
        }
    }
}
