package io.lora4j.emu;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.lora4j.io.SafeTensors;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.model.TestModels;
import io.lora4j.train.RunConfig;
import io.lora4j.train.TinyRun;
import io.lora4j.train.TrainingRun;
import io.lora4j.tensor.Tensor;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Whole training runs ({@link TrainingRun}, what {@code lora4j train} runs) with {@code device: cuda}
 * against the same runs with {@code device: cpu}: the tiny llama2.c model of {@link TinyRun}
 * (dropout 0.1: the masks are the same on both) and stories15M, LoRA and QLoRA, a few AdamW steps
 * on short sequences. Compared: the loss of every step and the adapter written at the end.
 *
 * <p>Tolerances. Dense LoRA runs the same fp32 math in other summation orders, ~1e-6 relative per
 * op: the first step's loss (no update yet) within {@link #DENSE_FIRST_LOSS_RTOL}; later steps
 * within {@link #DENSE_LOSS_RTOL}, because AdamW's first updates are ≈ ±lr whatever the gradient's
 * size, so an element with a near-zero gradient may move the other way (stories15M: 1.3e-4 after one
 * step). The adapter moves by AdamW
 * updates whose size is ~lr for every element with a gradient (m/√v ≈ ±1 in the first steps), so an
 * element whose gradient is near zero can get a different update; the adapter is therefore compared
 * as a whole: ‖p_cuda − p_cpu‖ / ‖p_cpu − p_0‖ (relative to how far training moved it) within
 * {@link #DENSE_ADAPTER_RTOL} (measured: 4e-6 on the tiny model at lr 1e-2, 0.023 on stories15M at
 * lr 1e-3, where more gradients are near zero). QLoRA's CUDA matmul rounds to bf16 (~4e-3 per product, see
 * {@code Parity.BF16_DOT}), so its bounds are those of a bf16 run: the first loss within
 * {@link #NF4_FIRST_LOSS_RTOL} (measured on the emulator: 1.3e-4..1.4e-4), later ones within
 * {@link #NF4_LOSS_RTOL} (measured: up to 2.9e-3, stories15M after one step), {@link #NF4_ADAPTER_RTOL} (measured: 0.07 on the tiny model, where
 * AdamW turns the bf16 noise of near-zero gradients into full-size updates; dense LoRA: 4e-6).
 */
class CudaEndToEndTrainingTest {
    static final double DENSE_FIRST_LOSS_RTOL = 1e-5, DENSE_LOSS_RTOL = 1e-3, DENSE_ADAPTER_RTOL = 0.1;
    static final double NF4_FIRST_LOSS_RTOL = 2e-3, NF4_LOSS_RTOL = 1e-2, NF4_ADAPTER_RTOL = 0.3;

    @TempDir
    Path tmp;

    private record Run(List<Double> losses, Map<String, float[]> adapter, String log, double initialEval, double finalEval) {}

    private Run train(Path yaml, String device, Path out, Map<String, String> more) throws IOException {
        Map<String, String> o = new TreeMap<>(more);
        o.put("device", device);
        RunConfig cfg = RunConfig.load(yaml, o);
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        TrainingRun.Summary s;
        try (PrintStream ps = new PrintStream(log, true, StandardCharsets.UTF_8)) {
            s = TrainingRun.run(cfg, out, true, ps);
        }
        assertEquals(TrainingRun.Status.COMPLETED, s.status(), device + " run: " + s.message());
        Map<String, float[]> ad = new TreeMap<>();
        SafeTensors st = SafeTensors.open(out.resolve(LoraAdapter.WEIGHTS_FILE));
        for (String k : st.entries().keySet()) {
            try (Tensor t = st.tensor(k)) {
                ad.put(k, t.toFloats());
            }
        }
        return new Run(s.losses(), ad, log.toString(StandardCharsets.UTF_8), s.initialEval(), s.finalEval());
    }

    private void compare(String what, Path yaml, Map<String, String> more, double firstLossRtol, double lossRtol, double adapterRtol)
            throws IOException {
        compare(what, yaml, more, more, firstLossRtol, lossRtol, adapterRtol);
    }

    private Run[] compare(String what, Path yaml, Map<String, String> cpuMore, Map<String, String> cudaMore, double firstLossRtol,
            double lossRtol, double adapterRtol) throws IOException {
        return compare(what, yaml, cpuMore, cudaMore, firstLossRtol, lossRtol, 0, adapterRtol);
    }

    /** ... with each later step's loss also allowed {@code movedRtol} of how far training has moved the CPU's loss from step 1. */
    private Run[] compare(String what, Path yaml, Map<String, String> cpuMore, Map<String, String> cudaMore, double firstLossRtol,
            double lossRtol, double movedRtol, double adapterRtol) throws IOException {
        Twins.cuda(); // skip (or fail, in the emulated execution) before training on the CPU
        Run cpu = train(yaml, "cpu", tmp.resolve(what + "-cpu"), cpuMore);
        Run cuda = train(yaml, "cuda", tmp.resolve(what + "-cuda"), cudaMore);
        assertTrue(cuda.log.contains("cuda ("), what + ": the run names its backend:\n" + cuda.log);
        assertEquals(cpu.losses.size(), cuda.losses.size(), what + ": steps");
        List<String> rows = new ArrayList<>();
        for (int i = 0; i < cpu.losses.size(); i++) {
            double a = cpu.losses.get(i), b = cuda.losses.get(i);
            rows.add(String.format(Locale.ROOT, "step %d: cpu %.6f cuda %.6f", i + 1, a, b));
            double bound = (i == 0 ? firstLossRtol : lossRtol) * Math.abs(a) + movedRtol * Math.abs(a - cpu.losses.get(0));
            assertEquals(a, b, bound, what + ": loss of step " + (i + 1) + "\n" + String.join("\n", rows));
        }
        assertEquals(cpu.adapter.keySet(), cuda.adapter.keySet(), what + ": adapter tensors");
        // training moved B away from 0: ‖p_cpu − p_0‖ ≥ ‖B_cpu‖ (A's initial values are unknown here)
        double diff = 0, moved = 0;
        for (String k : cpu.adapter.keySet()) {
            float[] x = cpu.adapter.get(k), y = cuda.adapter.get(k);
            for (int i = 0; i < x.length; i++) {
                assertTrue(Float.isFinite(y[i]), what + ": " + k + "[" + i + "] = " + y[i]);
                diff += (double) (x[i] - y[i]) * (x[i] - y[i]);
                if (k.contains("lora_B")) moved += (double) x[i] * x[i];
            }
        }
        assertTrue(moved > 0, what + ": training did not move B");
        double rel = Math.sqrt(diff / moved);
        System.out.printf(Locale.ROOT, "%s: %s; adapter |cuda - cpu| / |B| = %.3g%n", what, String.join("; ", rows), rel);
        assertTrue(rel <= adapterRtol, what + ": adapter differs by " + rel + " of the training update (bound " + adapterRtol + ")");
        return new Run[] {cpu, cuda};
    }

    /**
     * Both devices hold the base in bf16 (CUDA's default; the CPU's opt-in) and keep fp32 activations
     * ({@code bf16: false}; CUDA's default is mixed precision), so they differ only in summation order.
     */
    private static final Map<String, String> BF16 = Map.of("dtype", "bfloat16", "bf16", "false");

    private static final String TINY = "r: 4\nlora_alpha: 8\nlora_dropout: 0.1\nper_device_train_batch_size: 2\n"
            + "gradient_accumulation_steps: 2\nmax_steps: 3\nlearning_rate: 1e-2\nwarmup_steps: 1\nmax_seq_length: 64\nseed: 5\n"
            + "use_gradient_checkpointing: unsloth\n";

    @Test
    void tinyModelLora() throws IOException {
        compare("tiny LoRA", TinyRun.write(tmp.resolve("tiny"), TINY), BF16, DENSE_FIRST_LOSS_RTOL, DENSE_LOSS_RTOL, DENSE_ADAPTER_RTOL);
    }

    @Test
    void tinyModelQlora() throws IOException {
        compare("tiny QLoRA", TinyRun.write(tmp.resolve("tiny"), TINY + "load_in_4bit: true\n"), BF16, NF4_FIRST_LOSS_RTOL,
                NF4_LOSS_RTOL, NF4_ADAPTER_RTOL);
    }

    private Path stories(String extra) throws IOException {
        Path model = TestModels.stories15M();
        assumeTrue(Files.isRegularFile(model), TestModels.MISSING);
        Path yaml = tmp.resolve("stories.yaml");
        Files.writeString(yaml, "model: " + model + "\ndataset: " + Path.of("examples/data/simple-instructions.jsonl").toAbsolutePath()
                + "\nchat_template: alpaca\nmax_seq_length: 16\nr: 8\nlora_alpha: 16\n"
                + "per_device_train_batch_size: 1\ngradient_accumulation_steps: 1\nmax_steps: 2\nlearning_rate: 1e-3\n"
                + "seed: 3\ntrain_on_responses_only: false\neval_split: 0\n" + extra); // 16 tokens end before any response
        return yaml;
    }

    @Test
    void stories15mLora() throws IOException {
        compare("stories15M LoRA", stories(""), BF16, DENSE_FIRST_LOSS_RTOL, DENSE_LOSS_RTOL, DENSE_ADAPTER_RTOL);
    }

    /**
     * CUDA's bf16 storage of embedding, lm_head and projections ({@code dtype} auto; activations fp32)
     * against the CPU's default fp32 run, within the bf16 bounds of QLoRA: a bf16 weight is within 2^-9
     * relative of the fp32 one (8 significant bits, round to nearest even), so every product moves by
     * at most 2^-9·Σ|x·w| and typically far less (independent roundings), ~1e-3 of the loss at most.
     * Measured on the emulator: loss 9.949362 (cpu fp32) vs 9.951287 (cuda bf16), 1.9e-4 relative;
     * adapter 0.17 of the training update (AdamW's ±lr first steps amplify tiny gradient changes, as
     * for QLoRA's 0.18). The other runs here set {@code dtype: bfloat16} on both devices, so they
     * compare the same weights and keep the fp32 bounds.
     */
    @Test
    void stories15mLoraBf16StorageAgainstTheFp32Cpu() throws IOException {
        compare("stories15M LoRA bf16 vs fp32", stories(""), Map.of(), Map.of("bf16", "false"), NF4_FIRST_LOSS_RTOL, NF4_LOSS_RTOL,
                NF4_ADAPTER_RTOL);
    }

    // ---------------------------------------------------------------- mixed precision over whole runs

    /**
     * Mixed precision over a real run: CUDA's defaults (bf16 storage and bf16 kept activations, as
     * PEFT/Unsloth with {@code bf16=True}) against the CPU's fp32 run, every step's training loss and
     * the final eval loss.
     *
     * <p>Why these bounds. bf16 keeps 8 significant bits: a value rounded to nearest even moves by
     * at most u = 2^-9 ≈ 2e-3 of itself, and on average by about u/3 with a random sign. The run
     * rounds each weight once, and in every micro-batch each layer's input, h1, q, k, v, the attention
     * output, x_mid, h2, g, u and s once.
     * Roundings of different elements are independent, so in the sums that follow (projections, norms,
     * the logits) they cancel: a dot product over K terms moves by ~u·‖x⊙w‖₂, about u/√K of its
     * magnitude bound u·Σ|x·w|. The per-token log-likelihood thus moves by a few 1e-4 relative per
     * layer; the loss is a mean over tokens, which averages these further. Across steps the
     * difference does not compound like an error in a recurrence: both runs descend the same loss,
     * and AdamW's normalised step (≈ ±lr per element in the first steps, whatever the gradient's size)
     * makes the adapters differ by a fraction ρ of the training update (held here to ρ ≤
     * {@link #NF4_ADAPTER_RTOL}), which moves a later loss by about ρ times how far training has
     * moved it. Hence: step 1's loss within {@link #MIXED_LOSS_RTOL} (5u) of the fp32 run; each later
     * step's within 5u plus {@link #NF4_ADAPTER_RTOL} of |L_k − L_1|; the final eval loss within
     * {@link #MIXED_EVAL_RTOL} (2.5u) plus the same fraction of |eval_end − eval_start|.
     * Measured on the emulator, with q, k, v, the attention output and x_mid kept in bf16 too: the tiny model
     * (18 steps, loss 6.56 → 5.43) LoRA steps within 3.3e-3 relative, final eval 1.1e-3 (QLoRA 2.0e-3 and
     * 8.1e-4); stories15M (6 steps at lr 3e-3, loss 9.95 → 2.7) step 1 7.5e-4, later steps within 0.8 % of the
     * loss (1.1 % of its movement), final eval 1.4e-3 relative, adapter 0.15 of the update; the rows are printed
     * by each run.
     */
    static final double MIXED_LOSS_RTOL = 1e-2, MIXED_EVAL_RTOL = 5e-3;

    private static final String TINY_RUN = "r: 8\nlora_alpha: 16\nper_device_train_batch_size: 2\ngradient_accumulation_steps: 1\n"
            + "max_steps: 18\nlearning_rate: 5e-3\nwarmup_steps: 2\nmax_seq_length: 64\nseed: 7\neval_steps: 6\n"
            + "use_gradient_checkpointing: unsloth\n";

    private void mixedRun(String what, Path yaml, Map<String, String> more) throws IOException {
        Run[] r = compare(what, yaml, more, more, MIXED_LOSS_RTOL, MIXED_LOSS_RTOL, NF4_ADAPTER_RTOL, NF4_ADAPTER_RTOL);
        String says = "mixed precision: activations kept for the backward in bf16";
        assertTrue(r[1].log.contains(says), what + ": the CUDA run says so:\n" + r[1].log);
        assertFalse(r[0].log.contains(says), what + ": the CPU default is fp32:\n" + r[0].log);
        double a = r[0].finalEval, b = r[1].finalEval;
        System.out.printf(Locale.ROOT, "%s: final eval loss cpu fp32 %.6f, cuda mixed %.6f (%.2e relative); first loss %.6f, last %.6f%n", what, a, b,
                Math.abs(a - b) / a, r[0].losses.get(0), r[0].losses.get(r[0].losses.size() - 1));
        assertTrue(Double.isFinite(a) && a < r[0].losses.get(0), what + ": the run trained (eval " + a + ")");
        assertEquals(a, b, MIXED_EVAL_RTOL * a + NF4_ADAPTER_RTOL * Math.abs(r[0].initialEval - a), what + ": final eval loss");
    }

    @Test
    void mixedPrecisionLoraRunFollowsTheFp32Cpu() throws IOException {
        mixedRun("tiny LoRA mixed precision", TinyRun.write(tmp.resolve("tiny"), TINY_RUN), Map.of());
    }

    @Test
    void mixedPrecisionQloraRunFollowsTheFp32Cpu() throws IOException {
        mixedRun("tiny QLoRA mixed precision", TinyRun.write(tmp.resolve("tiny"), TINY_RUN + "load_in_4bit: true\n"), Map.of());
    }

    /** The real stories15M (6 layers, hidden 288), 6 steps with a held-out split evaluated at the end. */
    @Test
    void mixedPrecisionStories15mRunFollowsTheFp32Cpu() throws IOException {
        mixedRun("stories15M LoRA mixed precision", stories(""), Map.of("max_steps", "6", "eval_split", "0.05", "learning_rate", "3e-3"));
    }

    @Test
    void stories15mQlora() throws IOException {
        compare("stories15M QLoRA", stories("load_in_4bit: true\n"), BF16, NF4_FIRST_LOSS_RTOL, NF4_LOSS_RTOL, NF4_ADAPTER_RTOL);
    }
}
