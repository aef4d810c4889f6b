package io.lora4j.data;

import java.util.Arrays;

/**
 * One tokenized training row: {@code labels[i]} is {@code inputIds[i]} where the loss applies and
 * {@link #IGNORE_INDEX} where it does not (HF convention: labels are aligned with the inputs; the
 * loss does the causal shift, predicting {@code labels[i + 1]} from position {@code i}).
 */
public record Example(int[] inputIds, int[] labels) {
    /** The label of a position without loss (PyTorch's CrossEntropyLoss ignore_index). */
    public static final int IGNORE_INDEX = -100;

    public Example {
        if (inputIds.length != labels.length)
            throw new IllegalArgumentException(inputIds.length + " input ids but " + labels.length + " labels");
        inputIds = inputIds.clone();
        labels = labels.clone();
    }

    /** A row trained on every next token (continued pretraining). */
    public static Example allTokens(int[] ids) {
        return new Example(ids, ids);
    }

    public int length() {
        return inputIds.length;
    }

    /** Positions whose next token is predicted with loss: labels[i + 1] != IGNORE_INDEX. */
    public int predictedTokens() {
        int n = 0;
        for (int i = 1; i < labels.length; i++) if (labels[i] != IGNORE_INDEX) n++;
        return n;
    }

    @Override
    public int[] inputIds() {
        return inputIds.clone();
    }

    @Override
    public int[] labels() {
        return labels.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Example e && Arrays.equals(inputIds, e.inputIds) && Arrays.equals(labels, e.labels);
    }

    @Override
    public int hashCode() {
        return 31 * Arrays.hashCode(inputIds) + Arrays.hashCode(labels);
    }
}
