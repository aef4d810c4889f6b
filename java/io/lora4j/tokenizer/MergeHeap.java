package io.lora4j.tokenizer;

import java.util.Arrays;

/**
 * A binary min-heap of BPE merge candidates on parallel primitive arrays (no boxing: a long
 * text pushes millions of candidates). Each entry is a 64-bit priority key plus three int
 * payloads (the left symbol, the right symbol, and a stamp the caller uses to detect stale
 * entries). Callers encode "best merge first, leftmost on ties" into the key so that the
 * smallest key is the merge to do next.
 */
final class MergeHeap {
    private long[] key;
    private int[] left, right, stamp;
    private int size;

    MergeHeap(int capacity) {
        int c = Math.max(8, capacity);
        key = new long[c];
        left = new int[c];
        right = new int[c];
        stamp = new int[c];
    }

    boolean isEmpty() {
        return size == 0;
    }

    void push(long k, int l, int r, int s) {
        if (size == key.length) {
            int c = size * 2;
            key = Arrays.copyOf(key, c);
            left = Arrays.copyOf(left, c);
            right = Arrays.copyOf(right, c);
            stamp = Arrays.copyOf(stamp, c);
        }
        int i = size++;
        while (i > 0) {
            int p = (i - 1) >>> 1;
            if (key[p] <= k) break;
            move(p, i);
            i = p;
        }
        key[i] = k;
        left[i] = l;
        right[i] = r;
        stamp[i] = s;
    }

    /** Removes the top entry; read it first with {@link #topLeft()} etc. */
    void pop() {
        int last = --size;
        if (last == 0) return;
        long k = key[last];
        int l = left[last], r = right[last], s = stamp[last];
        int i = 0;
        while (true) {
            int c = 2 * i + 1;
            if (c >= last) break;
            if (c + 1 < last && key[c + 1] < key[c]) c++;
            if (key[c] >= k) break;
            move(c, i);
            i = c;
        }
        key[i] = k;
        left[i] = l;
        right[i] = r;
        stamp[i] = s;
    }

    long topKey() {
        return key[0];
    }

    int topLeft() {
        return left[0];
    }

    int topRight() {
        return right[0];
    }

    int topStamp() {
        return stamp[0];
    }

    private void move(int from, int to) {
        key[to] = key[from];
        left[to] = left[from];
        right[to] = right[from];
        stamp[to] = stamp[from];
    }

    /**
     * Key for score-ordered merges (SentencePiece): higher score first, then lower position.
     * The float is mapped to an int with the same order, then complemented so larger sorts first.
     */
    static long scoreKey(float score, int position) {
        int bits = Float.floatToIntBits(score);
        int ordered = bits ^ ((bits >> 31) & 0x7fffffff);
        return ((long) ~ordered << 32) | (position & 0xffffffffL);
    }

    /** Key for rank-ordered merges (HF BPE): lower rank first, then lower position. */
    static long rankKey(int rank, int position) {
        return ((long) rank << 32) | (position & 0xffffffffL);
    }
}
