package io.lora4j.train;

import io.lora4j.model.TestModels;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A whole training run small enough for process tests: a llama2.c model (hidden 32, MLP 48, 2
 * layers, 4 heads over 2 KV heads, vocab 259, context 64) with a byte-only SentencePiece
 * {@code tokenizer.bin} beside it (ids 0-2 specials, 3-258 the bytes), 12 training and 3 eval
 * text rows of 20-40 tokens. A step takes milliseconds.
 */
public final class TinyRun {
    /** ids 0..2 and the 256 byte pieces: the smallest vocabulary the llama2.c reader accepts. */
    public static final int VOCAB = 259;

    private static final String[] TRAIN = {
        "the cat sat on the mat", "a dog ran in the park", "birds sing in the tree", "the sun is warm today",
        "fish swim in the lake", "we bake bread at home", "rain falls on the roof", "the moon is bright",
        "kids play with a ball", "an owl hoots at night", "bees make sweet honey", "the wind moves leaves"};
    private static final String[] EVAL = {"the cat ran in the park", "birds swim in the lake", "the sun is bright"};

    private TinyRun() {}

    /**
     * Writes the model, tokenizer and data into {@code dir} and a config that uses them.
     *
     * @param settings further YAML lines (e.g. "max_steps: 8\n")
     * @return the YAML config
     */
    public static Path write(Path dir, String settings) throws IOException {
        Files.createDirectories(dir);
        Path model = dir.resolve("tiny.bin");
        TestModels.writeLlama2c(model, 32, 48, 2, 4, 2, VOCAB, 64, false, 11);
        writeByteTokenizer(dir.resolve("tokenizer.bin"));
        Path train = dir.resolve("train.jsonl"), eval = dir.resolve("eval.jsonl");
        Files.write(train, rows(TRAIN));
        Files.write(eval, rows(EVAL));
        Path yaml = dir.resolve("run.yaml");
        Files.writeString(yaml, "model: " + model + "\ndataset: " + train + "\neval_dataset: " + eval + "\n" + settings);
        return yaml;
    }

    /**
     * The settings the resume tests share: dropout 0.1, batch 2 × GA 2 (3 steps per epoch, so
     * epoch boundaries fall after steps 3 and 6), 8 steps, eval every 4, checkpoints every 2.
     */
    public static final String SETTINGS = "r: 4\nlora_alpha: 8\nlora_dropout: 0.1\nper_device_train_batch_size: 2\n"
            + "gradient_accumulation_steps: 2\nmax_steps: 8\nlearning_rate: 1e-2\nwarmup_steps: 2\nmax_seq_length: 64\n"
            + "eval_steps: 4\nsave_steps: 2\nseed: 5\n";

    private static List<String> rows(String[] texts) {
        List<String> out = new ArrayList<>();
        for (String t : texts) out.add("{\"text\": \"" + t + "\"}");
        return out;
    }

    /** llama2.c tokenizer.bin: max_token_length, then per token f32 score, i32 length, bytes. */
    static void writeByteTokenizer(Path file) throws IOException {
        List<byte[]> pieces = new ArrayList<>();
        pieces.add("<unk>".getBytes(StandardCharsets.UTF_8));
        pieces.add("\n<s>\n".getBytes(StandardCharsets.UTF_8));
        pieces.add("\n</s>\n".getBytes(StandardCharsets.UTF_8));
        for (int b = 0; b < 256; b++) pieces.add(String.format("<0x%02X>", b).getBytes(StandardCharsets.UTF_8));
        int size = 4;
        for (byte[] p : pieces) size += 8 + p.length;
        ByteBuffer buf = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
        buf.putInt(8);
        for (byte[] p : pieces) {
            buf.putFloat(0f).putInt(p.length).put(p);
        }
        Files.write(file, buf.array());
    }
}
