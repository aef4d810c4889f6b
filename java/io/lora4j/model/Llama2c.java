package io.lora4j.model;

import io.lora4j.io.FormatException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/**
 * The llama2.c legacy (v0) checkpoint layout (Karpathy's {@code export.py legacy_export}):
 * <pre>
 *   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len   (vocab &lt; 0: untied)
 *   fp32  token_embedding [vocab, dim]
 *         rms_att  [L][dim]
 *         wq [L][n_heads*hs, dim]   wk [L][n_kv_heads*hs, dim]   wv [L][n_kv_heads*hs, dim]
 *         wo [L][dim, n_heads*hs]
 *         rms_ffn  [L][dim]
 *         w1 [L][hidden, dim] (gate)   w2 [L][dim, hidden] (down)   w3 [L][hidden, dim] (up)
 *         rms_final [dim]
 *         freq_cis_real [seq_len, hs/2]   freq_cis_imag [seq_len, hs/2]   (unused)
 *         wcls [vocab, dim]               (only when untied)
 * </pre>
 * hs = dim / n_heads. q and k rows are in Meta's interleaved RoPE order; loaders permute them.
 */
public final class Llama2c {
    /** Bytes of the header: seven int32. */
    public static final int HEADER_BYTES = 28;
    /** The magic of the newer llama2.c exports (version 1, 2), "ak42". */
    static final int MAGIC_V1 = 0x616b3432;

    private Llama2c() {}

    /** One fp32 array of the file: its llama2.c name, byte offset and shape. */
    public record Array(String name, int layer, long offset, long[] shape) {
        public long floats() {
            long n = 1;
            for (long d : shape) n *= d;
            return n;
        }

        public long bytes() {
            return 4 * floats();
        }
    }

    /** The validated header of a llama2.c v0 file. */
    public record Header(int dim, int hiddenDim, int layers, int heads, int kvHeads, int vocab, int seqLen, boolean tied) {
        public int headSize() {
            return dim / heads;
        }

        public int kvDim() {
            return kvHeads * headSize();
        }

        /** The equivalent HF config. */
        public LlamaConfig config() {
            return LlamaConfig.ofLlama2c(dim, hiddenDim, layers, heads, kvHeads, vocab, seqLen, tied);
        }

        /** Every array in file order. */
        public List<Array> arrays() {
            List<Array> out = new ArrayList<>();
            long[] off = {HEADER_BYTES};
            int hs = headSize();
            add(out, off, "token_embedding_table", -1, vocab, dim);
            for (int l = 0; l < layers; l++) add(out, off, "rms_att_weight", l, dim);
            for (int l = 0; l < layers; l++) add(out, off, "wq", l, (long) heads * hs, dim);
            for (int l = 0; l < layers; l++) add(out, off, "wk", l, kvDim(), dim);
            for (int l = 0; l < layers; l++) add(out, off, "wv", l, kvDim(), dim);
            for (int l = 0; l < layers; l++) add(out, off, "wo", l, dim, (long) heads * hs);
            for (int l = 0; l < layers; l++) add(out, off, "rms_ffn_weight", l, dim);
            for (int l = 0; l < layers; l++) add(out, off, "w1", l, hiddenDim, dim);
            for (int l = 0; l < layers; l++) add(out, off, "w2", l, dim, hiddenDim);
            for (int l = 0; l < layers; l++) add(out, off, "w3", l, hiddenDim, dim);
            add(out, off, "rms_final_weight", -1, dim);
            add(out, off, "freq_cis_real", -1, seqLen, hs / 2);
            add(out, off, "freq_cis_imag", -1, seqLen, hs / 2);
            if (!tied) add(out, off, "wcls", -1, vocab, dim);
            return out;
        }

        private static void add(List<Array> out, long[] off, String name, int layer, long... shape) {
            Array a = new Array(name, layer, off[0], shape);
            out.add(a);
            off[0] = Math.addExact(off[0], Math.multiplyExact(4L, Math.multiplyExact(shape[0], shape.length > 1 ? shape[1] : 1)));
        }

        /**
         * The file size this header implies, the sum of {@link #arrays()} computed in closed form
         * (a hostile n_layers must not make us build billions of array records first).
         *
         * @throws ArithmeticException when it exceeds 2^63 bytes
         */
        public long expectedBytes() {
            long d = dim, hs = headSize(), q = (long) heads * hs, kv = kvDim(), h = hiddenDim;
            long perLayer = Math.addExact(Math.addExact(2 * d, Math.multiplyExact(2 * q, d)),
                    Math.addExact(Math.multiplyExact(2 * kv, d), Math.multiplyExact(3 * h, d)));
            long emb = Math.multiplyExact((long) vocab, d);
            long floats = Math.addExact(Math.addExact(emb, Math.multiplyExact((long) layers, perLayer)),
                    Math.addExact(d, Math.multiplyExact(2L * seqLen, hs / 2)));
            if (!tied) floats = Math.addExact(floats, emb);
            return Math.addExact(HEADER_BYTES, Math.multiplyExact(4L, floats));
        }

        /** The header as llama2.c's run.c prints it. */
        @Override
        public String toString() {
            return "dim " + dim + ", hidden_dim " + hiddenDim + ", n_layers " + layers + ", n_heads " + heads
                    + ", n_kv_heads " + kvHeads + ", vocab_size " + (tied ? vocab : -vocab) + ", seq_len " + seqLen;
        }
    }

    /**
     * Reads and validates the header of {@code file}, including that the file size is exactly
     * what it implies.
     *
     * @throws FormatException a one-line description of the first problem
     */
    public static Header readHeader(Path file) throws IOException {
        if (!Files.isRegularFile(file)) throw new FormatException(file, Files.exists(file) ? "not a regular file" : "no such file");
        long size;
        ByteBuffer b = ByteBuffer.allocate(HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            size = ch.size();
            if (size < HEADER_BYTES)
                throw new FormatException(file, "too short for a llama2.c checkpoint (" + size + " bytes, the header needs 28)");
            while (b.hasRemaining()) if (ch.read(b, b.position()) < 0) break;
        }
        int[] h = new int[7];
        for (int i = 0; i < 7; i++) h[i] = b.getInt(4 * i);
        if (h[0] == MAGIC_V1)
            throw new FormatException(file, "a llama2.c version 1/2 export (magic \"ak42\"); lora4j reads the legacy v0 format (export.py --version 0)");
        int dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv = h[4], vocabRaw = h[5], seqLen = h[6];
        List<String> bad = new ArrayList<>();
        if (dim <= 0) bad.add("dim " + dim);
        if (hidden <= 0) bad.add("hidden_dim " + hidden);
        if (layers <= 0) bad.add("n_layers " + layers);
        if (heads <= 0) bad.add("n_heads " + heads);
        if (kv <= 0) bad.add("n_kv_heads " + kv);
        if (vocabRaw == 0 || vocabRaw == Integer.MIN_VALUE) bad.add("vocab_size " + vocabRaw);
        if (seqLen <= 0) bad.add("seq_len " + seqLen);
        if (!bad.isEmpty()) throw new FormatException(file, "not a llama2.c v0 checkpoint: header has " + String.join(", ", bad));
        if (dim % heads != 0) throw new FormatException(file, "llama2.c header: dim " + dim + " is not a multiple of n_heads " + heads);
        if ((dim / heads) % 2 != 0) throw new FormatException(file, "llama2.c header: head size " + dim / heads + " is odd");
        if (heads % kv != 0) throw new FormatException(file, "llama2.c header: n_heads " + heads + " is not a multiple of n_kv_heads " + kv);
        Header header = new Header(dim, hidden, layers, heads, kv, Math.abs(vocabRaw), seqLen, vocabRaw > 0);
        long expected;
        try {
            expected = header.expectedBytes();
        } catch (ArithmeticException e) {
            throw new FormatException(file, "not a llama2.c v0 checkpoint: header (" + header + ") implies more than 2^63 bytes");
        }
        if (expected != size)
            throw new FormatException(file, "file holds " + size + " bytes but its llama2.c header (" + header + ") implies "
                    + expected + (size < expected ? ": truncated" : ": trailing data or not a v0 checkpoint"));
        return header;
    }
}
