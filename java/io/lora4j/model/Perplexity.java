package io.lora4j.model;

import io.lora4j.ops.Backend;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.List;

/**
 * Mean next-token cross-entropy (nats per predicted token) and perplexity of a model over token
 * rows. A row longer than max_position_embeddings is cut into consecutive windows of that length,
 * each evaluated from position 0 (no context carried across windows); every token after the
 * first of a window is predicted once.
 */
public final class Perplexity {
    /** The loss sum, the number of predicted tokens, and what follows from them. */
    public record Result(double lossSum, long tokens, int windows) {
        public double meanLoss() {
            return tokens == 0 ? Double.NaN : lossSum / tokens;
        }

        public double perplexity() {
            return Math.exp(meanLoss());
        }
    }

    private Perplexity() {}

    public static Result evaluate(LlamaModel model, List<int[]> rows) {
        Backend b = model.backend();
        int max = model.config().maxPositionEmbeddings();
        double sum = 0;
        long tokens = 0;
        int windows = 0;
        for (int[] row : rows) {
            for (int start = 0; start + 1 < row.length; start += max) {
                int len = Math.min(max, row.length - start);
                if (len < 2) break;
                int[] w = java.util.Arrays.copyOfRange(row, start, start + len);
                int[] labels = new int[len];
                for (int i = 0; i + 1 < len; i++) labels[i] = w[i + 1];
                labels[len - 1] = -100;
                try (Tensor logits = model.forward(new int[][] {w});
                     Tensor lab = upload(b, labels);
                     Tensor loss = b.allocate(DType.F32, MemoryCategory.WORKSPACE, len)) {
                    b.crossEntropyFwd(logits, lab, loss, null);
                    Tensor host = b.download(loss);
                    // Sum the per-token losses in double here: a long row's fp32 sum would round.
                    for (float l : host.toFloats()) sum += l;
                    if (host != loss) host.close();
                }
                tokens += len - 1;
                windows++;
            }
        }
        return new Result(sum, tokens, windows);
    }

    private static Tensor upload(Backend b, int[] v) {
        Tensor h = Tensor.allocate(DType.I32, MemoryCategory.WORKSPACE, v.length);
        h.buffer().asIntBuffer().put(v);
        Tensor d = b.upload(h, MemoryCategory.WORKSPACE);
        if (d != h) h.close();
        return d;
    }
}
