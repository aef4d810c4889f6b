package example;

import io.lora4j.data.DemoData;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import io.lora4j.train.RunConfig;
import io.lora4j.train.TrainingRun;
import java.io.PrintStream;
import java.io.OutputStream;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.Random;

/**
 * A program that depends only on the lora4j jar: the kernels come from the jar, nothing else is
 * installed and no environment variable is set.
 *
 * <pre>
 *   Consumer                                      quantize a random weight to NF4 and multiply
 *   Consumer dataset OUT_DIR                      write the capitals chat set, print its path
 *   Consumer train MODEL TOKENIZER DATA OUT STEPS QLoRA on DATA as README's "Fine-tuning from Java"
 *   Consumer cli-args MODEL TOKENIZER DATA STEPS  the same settings as `lora4j train` options
 * </pre>
 */
public final class Consumer {
    public static void main(String[] args) throws Exception {
        if (args.length == 0) {
            quantizeAndMultiply();
        } else if (args[0].equals("dataset") && args.length == 2) {
            System.out.println(DemoData.capitals(DemoData.datasetsDir(), Path.of(args[1])).train());
        } else if (args[0].equals("train") && args.length == 6) {
            train(args[1], args[2], args[3], Path.of(args[4]), Integer.parseInt(args[5]));
        } else if (args[0].equals("cli-args") && args.length == 5) {
            StringBuilder sb = new StringBuilder();
            config(args[1], args[2], args[3], Integer.parseInt(args[4]))
                    .forEach((k, v) -> sb.append(sb.length() == 0 ? "" : " ").append("--").append(k).append(' ').append(v));
            System.out.println(sb);
        } else {
            System.err.println("usage: Consumer [dataset OUT_DIR | train MODEL TOKENIZER DATA OUT STEPS | cli-args MODEL TOKENIZER DATA STEPS]");
            System.exit(2);
        }
    }

    /** The settings of both runs that scripts/consumer-check.sh compares (paths without spaces). */
    static Map<String, Object> config(String model, String tokenizer, String data, int steps) {
        Map<String, Object> cfg = new LinkedHashMap<>();
        cfg.put("model", model);
        cfg.put("tokenizer", tokenizer);
        cfg.put("dataset", data);
        cfg.put("load_in_4bit", true);
        cfg.put("chat_template", "alpaca");
        cfg.put("train_on_responses_only", true);
        cfg.put("max_seq_length", 256);
        cfg.put("per_device_train_batch_size", 4);
        cfg.put("gradient_accumulation_steps", 1);
        cfg.put("max_steps", steps);
        cfg.put("logging_steps", 1);
        return cfg;
    }

    private static void train(String model, String tokenizer, String data, Path out, int steps) throws Exception {
        RunConfig cfg = RunConfig.from(config(model, tokenizer, data, steps));
        PrintStream quiet = new PrintStream(OutputStream.nullOutputStream());
        long t0 = System.nanoTime();
        TrainingRun.Summary s = TrainingRun.run(cfg, out, true, quiet);
        System.out.printf("consumer trained %d steps in %.1f s, final loss %.4f%n", s.steps(),
                (System.nanoTime() - t0) / 1e9, s.losses().get(s.losses().size() - 1));
    }

    private static void quantizeAndMultiply() {
        Backend backend = Backends.select(Optional.empty());
        int out = 96, in = 288, t = 20;
        Random rnd = new Random(7);
        float[] w = new float[out * in];
        float[] x = new float[t * in];
        for (int i = 0; i < w.length; i++) w[i] = (float) rnd.nextGaussian() * 0.02f;
        for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextGaussian();
        try (Tensor wt = backend.upload(Tensor.ofFloats(w, out, in), MemoryCategory.WEIGHTS);
             Nf4Weight q = Nf4.quantize(backend, wt, 64, true);
             Tensor xt = backend.upload(Tensor.ofFloats(x, t, in), MemoryCategory.ACTIVATIONS);
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
