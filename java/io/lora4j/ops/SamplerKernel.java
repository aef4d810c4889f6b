package io.lora4j.ops;

import static io.lora4j.nativeapi.Lora4jOpsNative.lora4j_sample_probs;
import static io.lora4j.nativeapi.Lora4jOpsNative.lora4j_sample_token;

import io.lora4j.nativeapi.NativeLibrary;
import java.nio.FloatBuffer;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.LongPointer;

/**
 * The native next-token draw (native/cpu/sample.cpp, host memory): softmax(logits / T) with a fixed
 * fp32 exp that every ISA path computes to the same bits, then a draw over every token or the top-p
 * nucleus. Keeps its scratch (probabilities, sort keys, and a staging copy for heap buffers) between
 * calls; not thread-safe.
 */
public final class SamplerKernel {
    private FloatPointer p, staged;
    private LongPointer keys;
    private long capacity;

    public SamplerKernel() {
        NativeLibrary.load();
    }

    /**
     * The token drawn from {@code logits}' remaining elements (not consumed) with the uniform
     * {@code u}.
     *
     * @throws IllegalArgumentException for an empty vocabulary or a setting out of range
     */
    public int sample(FloatBuffer logits, float temperature, float topP, double u) {
        check(logits, temperature);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top_p must be in (0, 1], got " + topP);
        if (!(u >= 0 && u < 1)) throw new IllegalArgumentException("u must be in [0, 1), got " + u);
        long n = logits.remaining();
        reserve(n);
        return lora4j_sample_token(view(logits), n, temperature, topP, u, p, keys);
    }

    /**
     * The unnormalised probabilities the draw uses, into {@code out[0, n)}; returns their sum
     * (0 when no logit is finite).
     */
    public double probabilities(FloatBuffer logits, float temperature, float[] out) {
        check(logits, temperature);
        long n = logits.remaining();
        if (out.length < n) throw new IllegalArgumentException("out holds " + out.length + " floats, the logits " + n);
        reserve(n);
        try (DoublePointer z = new DoublePointer(1)) {
            lora4j_sample_probs(view(logits), n, temperature, p, z);
            p.position(0).get(out, 0, (int) n);
            return z.get();
        }
    }

    private static void check(FloatBuffer logits, float temperature) {
        if (!logits.hasRemaining()) throw new IllegalArgumentException("no logits to sample from");
        if (!(temperature > 0) || Float.isInfinite(temperature))
            throw new IllegalArgumentException("temperature must be > 0 and finite, got " + temperature);
    }

    private void reserve(long n) {
        if (n <= capacity) return;
        p = new FloatPointer(n);
        staged = new FloatPointer(n);
        keys = new LongPointer(n);
        capacity = n;
    }

    /** A pointer to the remaining logits: in place for a direct buffer, else staged once. */
    private FloatPointer view(FloatBuffer logits) {
        if (logits.isDirect()) return new FloatPointer(logits.slice());
        int n = logits.remaining();
        if (logits.hasArray()) staged.position(0).put(logits.array(), logits.arrayOffset() + logits.position(), n);
        else for (int i = 0; i < n; i++) staged.put(i, logits.get(logits.position() + i));
        return staged.position(0);
    }
}
