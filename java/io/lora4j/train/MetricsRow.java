package io.lora4j.train;

/**
 * One step's row of {@code metrics.jsonl} ({@link MetricsLog#write(MetricsRow)} serialises it, in
 * this field order, leaving out the null fields). Three kinds of row:
 * <ul>
 * <li>{@link #baseEval}: step 0, the base model's eval loss;</li>
 * <li>{@link #logged}: every logging_steps step, the train loss and tokens per second averaged
 *     since the last logged row;</li>
 * <li>{@link #skipped}: a step whose loss or gradient was not finite, with the training rows of
 *     its window (their indices and their lines in the source file).</li>
 * </ul>
 *
 * @param step            the optimizer step (0: before the first)
 * @param epoch           step / steps per epoch
 * @param skipped         true for a skipped step, else null
 * @param loss            train loss in nats per target token (the step's own for a skipped step)
 * @param learningRate    the rate the step used
 * @param gradNorm        global L2 norm of the gradient before clipping
 * @param tokensPerSecond input positions per second since the last logged row
 * @param rowIds          training-row indices of a skipped step's window
 * @param sourceLines     their 1-based lines in the data file
 * @param evalLoss        the eval loss measured at this step
 */
record MetricsRow(long step, double epoch, Boolean skipped, Double loss, Double learningRate, Double gradNorm, Double tokensPerSecond,
        int[] rowIds, int[] sourceLines, Double evalLoss) {

    /** Step 0: the base model's eval loss (every lora_B is still zero). */
    static MetricsRow baseEval(double evalLoss) {
        return new MetricsRow(0, 0.0, null, null, null, null, null, null, null, evalLoss);
    }

    /** A logged step: {@code loss} and {@code tokensPerSecond} are the means since the last logged row. */
    static MetricsRow logged(long step, double epoch, double loss, double learningRate, double gradNorm, double tokensPerSecond,
            Double evalLoss) {
        return new MetricsRow(step, epoch, null, loss, learningRate, gradNorm, tokensPerSecond, null, null, evalLoss);
    }

    /** A skipped step (non-finite loss or gradient) and the rows of its window. */
    static MetricsRow skipped(long step, double epoch, double loss, double learningRate, double gradNorm, int[] rowIds, int[] sourceLines,
            Double evalLoss) {
        return new MetricsRow(step, epoch, true, loss, learningRate, gradNorm, null, rowIds, sourceLines, evalLoss);
    }
}
