package example;

import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.Tensor;
import java.util.Optional;
import java.util.Random;

/** Quantizes a random weight to NF4 and multiplies with it: the kernels come from the jar. */
public final class Consumer {
    public static void main(String[] args) {
        Backend backend = Backends.select(Optional.empty());
        int out = 96, in = 288, t = 20;
        Random rnd = new Random(7);
        float[] w = new float[out * in];
        float[] x = new float[t * in];
        for (int i = 0; i < w.length; i++) w[i] = (float) rnd.nextGaussian() * 0.02f;
        for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextGaussian();
        try (Tensor wt = backend.upload(Tensor.ofFloats(w, out, in), io.lora4j.tensor.MemoryCategory.WEIGHTS);
             Nf4Weight q = Nf4.quantize(backend, wt, 64, true);
             Tensor xt = backend.upload(Tensor.ofFloats(x, t, in), io.lora4j.tensor.MemoryCategory.ACTIVATIONS);
             Tensor y = Nf4.matmul(backend, xt, q)) {
            float[] yh = backend.download(y).toFloats();
            double sum = 0;
            for (float v : yh) sum += Math.abs(v);
            if (!(sum > 0) || Double.isNaN(sum)) throw new AssertionError("NF4 matmul gave " + sum);
            System.out.printf("consumer ok: %s, NF4 %s, y[%d,%d] mean |y| = %.5f%n",
                    backend.description(), q, t, out, sum / yh.length);
        }
    }
}
