package io.lora4j.plan;

import io.lora4j.model.DeviceWeights;
import io.lora4j.model.Projection;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.train.CheckpointMode;
import io.lora4j.train.LoraTrainingModel;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;

/**
 * What a training run would use, as far as memory is concerned. Validated at construction; every
 * bad field is reported in one {@link IllegalArgumentException}.
 *
 * @param r               LoRA rank, &gt;= 1
 * @param targets         the adapted projections (non-empty)
 * @param seqLen          tokens per row (padded length of a micro-batch), &gt;= 2
 * @param batch           rows per micro-batch (per_device_train_batch_size), &gt;= 1
 * @param checkpointing   use_gradient_checkpointing
 * @param checkpointEvery checkpoint_every for {@link CheckpointMode#CHUNKED} (0: round(√L)); must be 0
 *                        for the other modes
 * @param loadIn4bit      NF4 base projections (QLoRA) instead of the dense fp32 base
 * @param blocksize       NF4 blocksize (64, bitsandbytes' default)
 * @param doubleQuant     NF4 double quantization of the absmax (on by default)
 * @param loraDropout     lora_dropout; &gt; 0 keeps one fp32 mask per adapted projection input
 * @param device          where the model trains (CPU: one memory pool; CUDA: offloaded inputs are host memory)
 * @param weightDtype     storage of the embedding, lm_head and dense projections: F32, BF16, or null for the
 *                        device's default ({@link DeviceWeights#defaultStorage}: BF16 on CUDA, F32 on the CPU)
 * @param bf16            TRL's bf16 (mixed precision): kept activations in bf16 (true) or fp32 (false); null for
 *                        the device's default ({@link LoraTrainingModel#defaultBf16}: on CUDA, not on the CPU)
 */
public record PlanSettings(int r, Set<Projection> targets, int seqLen, int batch, CheckpointMode checkpointing, int checkpointEvery,
        boolean loadIn4bit, int blocksize, boolean doubleQuant, double loraDropout, Device device, DType weightDtype, Boolean bf16) {

    /** Settings with the device's default activation precision. */
    public PlanSettings(int r, Set<Projection> targets, int seqLen, int batch, CheckpointMode checkpointing, int checkpointEvery,
            boolean loadIn4bit, int blocksize, boolean doubleQuant, double loraDropout, Device device, DType weightDtype) {
        this(r, targets, seqLen, batch, checkpointing, checkpointEvery, loadIn4bit, blocksize, doubleQuant, loraDropout, device, weightDtype, null);
    }

    /** Settings with the device's default weight storage. */
    public PlanSettings(int r, Set<Projection> targets, int seqLen, int batch, CheckpointMode checkpointing, int checkpointEvery,
            boolean loadIn4bit, int blocksize, boolean doubleQuant, double loraDropout, Device device) {
        this(r, targets, seqLen, batch, checkpointing, checkpointEvery, loadIn4bit, blocksize, doubleQuant, loraDropout, device, null);
    }

    public PlanSettings {
        List<String> e = new ArrayList<>();
        if (r < 1) e.add("r must be >= 1, got " + r);
        if (targets == null || targets.isEmpty()) e.add("at least one target module is needed");
        if (seqLen < 2) e.add("sequence length must be >= 2, got " + seqLen);
        if (batch < 1) e.add("batch must be >= 1, got " + batch);
        if (checkpointing == null) e.add("checkpointing mode must be set");
        if (checkpointEvery < 0) e.add("checkpoint_every must be >= 0, got " + checkpointEvery);
        else if (checkpointEvery > 0 && checkpointing != CheckpointMode.CHUNKED)
            e.add("checkpoint_every applies only to chunked checkpointing, not " + checkpointing);
        if (blocksize < 32 || blocksize > 4096 || Integer.bitCount(blocksize) != 1)
            e.add("NF4 blocksize must be a power of two in [32, 4096], got " + blocksize);
        if (!(loraDropout >= 0 && loraDropout < 1)) e.add("lora_dropout must be in [0, 1), got " + loraDropout);
        if (device == null) e.add("device must be set");
        if (weightDtype != null && weightDtype != DType.F32 && weightDtype != DType.BF16)
            e.add("weights are stored as F32 or BF16, not " + weightDtype);
        if (!e.isEmpty()) throw new IllegalArgumentException("invalid plan settings: " + String.join("; ", e));
        targets = Set.copyOf(targets);
    }

    /** The guide's defaults: r 16, all seven projections, seq 2048, batch 2, unsloth checkpointing (as train and plan), dense base, CUDA (bf16 storage). */
    public static PlanSettings defaults() {
        return new PlanSettings(16, EnumSet.allOf(Projection.class), 2048, 2, CheckpointMode.UNSLOTH, 0, false, 64, true, 0, Device.CUDA);
    }

    public PlanSettings withBatch(int b) {
        return new PlanSettings(r, targets, seqLen, b, checkpointing, checkpointEvery, loadIn4bit, blocksize, doubleQuant, loraDropout, device, weightDtype, bf16);
    }

    public PlanSettings withSeqLen(int s) {
        return new PlanSettings(r, targets, s, batch, checkpointing, checkpointEvery, loadIn4bit, blocksize, doubleQuant, loraDropout, device, weightDtype, bf16);
    }

    public PlanSettings withRank(int rank) {
        return new PlanSettings(rank, targets, seqLen, batch, checkpointing, checkpointEvery, loadIn4bit, blocksize, doubleQuant, loraDropout, device, weightDtype, bf16);
    }

    public PlanSettings withTargets(Set<Projection> t) {
        return new PlanSettings(r, t, seqLen, batch, checkpointing, checkpointEvery, loadIn4bit, blocksize, doubleQuant, loraDropout, device, weightDtype, bf16);
    }

    public PlanSettings withCheckpointing(CheckpointMode m, int every) {
        return new PlanSettings(r, targets, seqLen, batch, m, every, loadIn4bit, blocksize, doubleQuant, loraDropout, device, weightDtype, bf16);
    }

    public PlanSettings withLoadIn4bit(boolean q) {
        return new PlanSettings(r, targets, seqLen, batch, checkpointing, checkpointEvery, q, blocksize, doubleQuant, loraDropout, device, weightDtype, bf16);
    }

    public PlanSettings withDropout(double p) {
        return new PlanSettings(r, targets, seqLen, batch, checkpointing, checkpointEvery, loadIn4bit, blocksize, doubleQuant, p, device, weightDtype, bf16);
    }

    public PlanSettings withDevice(Device d) {
        return new PlanSettings(r, targets, seqLen, batch, checkpointing, checkpointEvery, loadIn4bit, blocksize, doubleQuant, loraDropout, d, weightDtype, bf16);
    }

    public PlanSettings withWeightDtype(DType t) {
        return new PlanSettings(r, targets, seqLen, batch, checkpointing, checkpointEvery, loadIn4bit, blocksize, doubleQuant, loraDropout, device, t, bf16);
    }

    public PlanSettings withBf16(Boolean b) {
        return new PlanSettings(r, targets, seqLen, batch, checkpointing, checkpointEvery, loadIn4bit, blocksize, doubleQuant, loraDropout, device, weightDtype, b);
    }

    /** Whether the kept activations are bf16: {@code bf16} or the device's default. */
    public boolean keptBf16() {
        return bf16 != null ? bf16 : LoraTrainingModel.defaultBf16(device);
    }

    /** The storage dtype of the embedding, lm_head and dense projections: {@code weightDtype} or the device's default. */
    public DType storage() {
        return weightDtype != null ? weightDtype : DeviceWeights.defaultStorage(device);
    }

    /** Tokens per micro-batch, batch × seqLen. */
    public long tokens() {
        return (long) batch * seqLen;
    }
}
