package io.lora4j.bench;

import io.lora4j.data.Batch;
import io.lora4j.data.Example;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.ops.Backends;
import io.lora4j.train.LoraTrainingModel;
import io.lora4j.train.LrSchedule;
import io.lora4j.train.TrainConfig;
import io.lora4j.train.Trainer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * One LoRA optimizer step on stories15M (r 16, alpha 16, all seven projections, no dropout) on one
 * thread: forward + backward of {@code batch} rows of 256 random tokens (every token trained),
 * clipping and AdamW. The PyTorch peer (scripts/reference/torch_train_peer.py) runs the same step
 * on one thread; training tokens/s = batch·256 / (ms/1000), and the ratio to the peer is the figure
 * to report. {@code weights}: fp32 LoRA, or the NF4 base (QLoRA).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xmx4g"})
@Warmup(iterations = 2, time = 3)
@Measurement(iterations = 5, time = 3)
@Threads(1)
@State(Scope.Benchmark)
public class TrainBench {
    static final int SEQ = 256;

    @Param({"1", "2"})
    public int batch;

    @Param({"fp32", "nf4"})
    public String weights;

    LlamaWeights w;
    LoraAdapter adapter;
    LoraTrainingModel model;
    Trainer trainer;
    List<Batch> window;

    @Setup
    public void setup() throws Exception {
        NativeLibrary.setNumThreads(1);
        String cache = System.getenv().getOrDefault("LORA4J_CACHE", System.getProperty("user.home") + "/.cache/lora4j");
        w = ModelLoader.load(Path.of(cache, "stories15M.bin"), weights.equals("nf4") ? ModelLoader.Options.in4bit() : ModelLoader.Options.defaults());
        adapter = LoraAdapter.create(Backends.cpu(), w.config(), LoraConfig.defaults());
        model = new LoraTrainingModel(Backends.cpu(), w, adapter);
        trainer = new Trainer(model, TrainConfig.defaults().withBatch(batch, 1).withSchedule(2e-4, 0, LrSchedule.CONSTANT, 0.01, 1.0, 1_000_000), 1_000_000);
        Random r = new Random(7);
        List<Example> rows = new ArrayList<>();
        for (int b = 0; b < batch; b++) {
            int[] ids = new int[SEQ];
            ids[0] = 1;
            for (int i = 1; i < SEQ; i++) ids[i] = 3 + r.nextInt(31997);
            rows.add(Example.allTokens(ids));
        }
        window = List.of(Batch.of(rows, 0));
    }

    @TearDown
    public void tearDown() {
        trainer.close();
        model.close();
        adapter.close();
        w.close();
    }

    @Benchmark
    public double trainStep() {
        return trainer.step(window).loss();
    }
}
