package io.lora4j.emu;

import com.google.gson.Gson;
import com.google.gson.JsonObject;
import io.lora4j.lora.AdaptedModel;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.LlamaModel;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.Tensor;
import io.lora4j.train.TinyRun;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

/**
 * Helpers of scripts/device-check-java.sh (run with the test classes on the class path):
 * <pre>
 * tiny-run DIR                          writes TinyRun's model, tokenizer, data and run.yaml; prints the yaml's path
 * adapter-logits MODEL_DIR OUT DEVICE   a seeded LoRA adapter (r 4, alpha 8, all 7 projections, B != 0) for the HF
 *                                       model, saved in PEFT's format as OUT/adapter; the model's logits with it
 *                                       merged, on DEVICE (cpu|cuda), for the ids of MODEL_DIR/reference.json,
 *                                       as OUT/logits-DEVICE.json {"device", "backend", "ids", "logits"}
 * </pre>
 * scripts/reference/peft_logits_check.py loads OUT/adapter with PEFT and compares.
 */
public final class DeviceCheckMain {
    private DeviceCheckMain() {}

    public static void main(String[] args) throws IOException {
        if (args.length == 2 && args[0].equals("tiny-run")) {
            System.out.println(TinyRun.write(Path.of(args[1]), TinyRun.SETTINGS));
        } else if (args.length == 4 && args[0].equals("adapter-logits")) {
            adapterLogits(Path.of(args[1]), Path.of(args[2]), Device.parse(args[3]));
        } else {
            System.err.println("usage: DeviceCheckMain tiny-run DIR | adapter-logits MODEL_DIR OUT cpu|cuda");
            System.exit(2);
        }
    }

    private static void adapterLogits(Path modelDir, Path out, Device device) throws IOException {
        Backend be = Backends.get(device);
        JsonObject ref = new Gson().fromJson(Files.readString(modelDir.resolve("reference.json")), JsonObject.class);
        int[] ids = new Gson().fromJson(ref.get("ids"), int[].class);
        Files.createDirectories(out);
        try (LlamaWeights w = ModelLoader.load(modelDir)) {
            LoraConfig lc = LoraConfig.defaults().withRank(4).withAlpha(8);
            long n = 0;
            for (LoraAdapter.Slot s : LoraAdapter.layout(w.config(), lc)) n = Math.max(n, s.offsetB() + s.out() * lc.r());
            float[] v = new float[(int) n];
            Random r = new Random(4242);
            for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextGaussian() * 0.1);
            try (LoraAdapter ad = LoraAdapter.of(be, w.config(), lc, v);
                 AdaptedModel merged = AdaptedModel.merge(be, w, ad, 1.0);
                 LlamaModel m = LlamaModel.create(be, merged.weights());
                 Tensor logits = m.forward(new int[][] {ids})) {
                if (device == Device.CPU || !Files.exists(out.resolve("adapter"))) ad.save(out.resolve("adapter"), modelDir.toString(), true);
                float[] z;
                if (logits.device() == Device.CPU) z = logits.toFloats();
                else try (Tensor h = be.download(logits)) {
                    z = h.toFloats();
                }
                int vocab = w.config().vocabSize();
                float[][] rows = new float[ids.length][];
                for (int t = 0; t < ids.length; t++) rows[t] = java.util.Arrays.copyOfRange(z, t * vocab, (t + 1) * vocab);
                JsonObject o = new JsonObject();
                o.addProperty("device", device.name().toLowerCase(java.util.Locale.ROOT));
                o.addProperty("backend", be.description());
                o.add("ids", new Gson().toJsonTree(ids));
                o.add("logits", new Gson().toJsonTree(rows));
                Files.writeString(out.resolve("logits-" + o.get("device").getAsString() + ".json"), o.toString(), StandardCharsets.UTF_8);
                System.out.println("logits of " + ids.length + " positions on " + be.description());
            }
        }
    }
}
