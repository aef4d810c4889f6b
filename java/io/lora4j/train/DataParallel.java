package io.lora4j.train;

import io.lora4j.data.Batch;
import io.lora4j.data.DataPipeline;
import io.lora4j.ops.Backend;
import io.lora4j.tensor.Tensor;
import java.util.List;
import java.util.Objects;

/**
 * How this process takes part in a data-parallel run: the three seams a distributed trainer fills
 * in. {@link #single()} is one process training alone, what every run without a launcher is.
 *
 * <ul>
 * <li>{@link Shard}: which windows this rank trains on (and how many sequences an epoch has for the
 *     step count);</li>
 * <li>{@link Exchange}: sums over the ranks, called by {@link Trainer} at the two places one step
 *     needs them: the window's target-token count N before the backward passes (every rank scales
 *     its CE gradient by the same global 1/N), then the summed LoRA gradients and the loss sum
 *     before the norm, the clipping and AdamW (so every rank applies the same update);</li>
 * <li>{@link #writesOutputs()}: whether this rank writes metrics.jsonl, checkpoints and the adapter
 *     (rank 0; the others compute the same parameters).</li>
 * </ul>
 * Only the rank that writes outputs creates, locks and checks the output directory
 * ({@link TrainingRun#run}); the others read a resumed checkpoint from it. Evaluation is sharded
 * ({@link Shard#evalBatches}) and its loss summed over the ranks; dropout seeds follow the global
 * micro-batch index ({@link Shard#firstMicroBatch}).
 *
 * @param rank      this process's index, 0 ≤ rank &lt; worldSize
 * @param worldSize the number of processes training together
 * @param shard     the windows of this rank
 * @param exchange  the sums over the ranks
 */
public record DataParallel(int rank, int worldSize, Shard shard, Exchange exchange) {
    public DataParallel {
        if (worldSize < 1 || rank < 0 || rank >= worldSize)
            throw new IllegalArgumentException("rank " + rank + " of world size " + worldSize + " is not a valid rank");
        Objects.requireNonNull(shard, "shard");
        Objects.requireNonNull(exchange, "exchange");
    }

    /** Which training windows a rank reads. */
    public interface Shard {
        /**
         * The optimizer-step windows of {@code epoch} this rank trains, in order: each is the
         * {@code accumulation} micro-batches of one step. Every rank must return the same number.
         */
        List<List<Batch>> windows(DataPipeline data, int epoch, int batch, int accumulation);

        /** The training sequences of one epoch as this rank sees them (the step count derives from it). */
        long sequences(DataPipeline data);

        /**
         * Where this rank's micro-batches start in each step's global window, for the dropout seeds:
         * micro-batch i of this rank draws the masks of global micro-batch {@code first + i}, as a
         * single process training the whole window would.
         */
        default int firstMicroBatch(int accumulation) {
            return 0;
        }

        /** This rank's share of the eval batches (their loss is then summed over the ranks). */
        default List<Batch> evalBatches(List<Batch> all) {
            return all;
        }
    }

    /** Sums over all ranks; every rank calls each method in the same order. */
    public interface Exchange {
        /** Σ over ranks of this window's target-token count (before any backward pass). */
        long sumTargets(long local);

        /** Σ over ranks of the window's summed CE loss (nats). */
        double sumLoss(double local);

        /** Replaces {@code gradients} (the flat LoRA gradient [P], fp32, on {@code backend}) by its sum over ranks. */
        void sumGradients(Backend backend, Tensor gradients);

        /**
         * {@link #sumGradients} and {@link #sumLoss} together, which an exchange may do in one
         * collective over one flat buffer; returns the summed loss.
         */
        default double sumGradientsAndLoss(Backend backend, Tensor gradients, double loss) {
            sumGradients(backend, gradients);
            return sumLoss(loss);
        }

        /**
         * Called after every optimizer step with the adapter's parameters [P] as AdamW left them
         * (skipped steps included): where an exchange checks that the ranks have not drifted apart.
         */
        default void afterStep(Backend backend, Tensor parameters, long step) {}

        /** Σ over ranks of an eval loss sum and its target count, {loss, targets}; one collective where the exchange can. */
        default double[] sumLossAndTargets(double loss, long targets) {
            return new double[] {sumLoss(loss), sumTargets(targets)};
        }
    }

    /** One process: every window of the pipeline, sums over one rank are the values themselves. */
    public static DataParallel single() {
        return SINGLE;
    }

    /** Whether this rank writes the run's outputs (metrics, checkpoints, the adapter). */
    public boolean writesOutputs() {
        return rank == 0;
    }

    private static final Shard ALL_WINDOWS = new Shard() {
        @Override
        public List<List<Batch>> windows(DataPipeline data, int epoch, int batch, int accumulation) {
            return data.steps(epoch, batch, accumulation);
        }

        @Override
        public long sequences(DataPipeline data) {
            return data.trainSequences();
        }
    };

    private static final Exchange ALONE = new Exchange() {
        @Override
        public long sumTargets(long local) {
            return local;
        }

        @Override
        public double sumLoss(double local) {
            return local;
        }

        @Override
        public void sumGradients(Backend backend, Tensor gradients) {}
    };

    private static final DataParallel SINGLE = new DataParallel(0, 1, ALL_WINDOWS, ALONE);
}
