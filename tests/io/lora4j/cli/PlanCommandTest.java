package io.lora4j.cli;

import static io.lora4j.cli.CliRun.run;
import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.lora4j.cli.CliRun.Result;
import io.lora4j.model.Assets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code lora4j plan} on the example shapes, an HF directory and the real llama2.c file. */
class PlanCommandTest {

    @Test
    void plansTheExampleShapesAsTextAndJson() {
        for (String m : new String[] {"examples/configs/Llama-3.1-8B.json", "examples/configs/Llama-3.3-70B.json"}) {
            Result r = run("plan", "--model", m, "--checkpointing", "unsloth", "--batch", "1", "--vram", "80GiB");
            assertEquals(0, r.code(), r.err());
            for (String want : new String[] {"LoRA (bf16 base)", "QLoRA (NF4 base)", "peak total (device)", "largest batch at seq 2048",
                "batch x GA for effective 16", "longest seq at batch 1", "offloaded inputs (host)"})
                assertTrue(r.out().contains(want), want + " in\n" + r.out());
            Result j = run("plan", "--model", m, "--checkpointing", "chunked", "--checkpoint-every", "4", "--load-in-4bit", "--json", "--vram", "48GB");
            assertEquals(0, j.code(), j.err());
            JsonObject o = JsonParser.parseString(j.out()).getAsJsonObject();
            assertEquals("qlora", o.get("selected").getAsString());
            assertEquals(4, o.getAsJsonObject("settings").get("checkpoint_every").getAsInt());
            assertEquals(48_000_000_000L, o.getAsJsonObject("settings").get("vram_bytes").getAsLong());
            JsonObject q = o.getAsJsonObject("qlora"), l = o.getAsJsonObject("lora");
            assertTrue(q.get("peak_total_bytes").getAsLong() < l.get("peak_total_bytes").getAsLong());
            long ga = q.get("gradient_accumulation_steps").getAsLong(), b = q.get("advised_batch").getAsLong();
            if (q.get("max_batch").getAsInt() > 0) assertEquals(16, b * ga, "batch x GA keeps the effective batch");
        }
        Result f = run("plan", "--model", "examples/configs/Llama-3.1-8B.json", "--dtype", "float32", "--json");
        assertEquals(0, f.code(), f.err());
        JsonObject o = JsonParser.parseString(f.out()).getAsJsonObject();
        assertEquals("float32", o.getAsJsonObject("settings").get("dtype").getAsString());
        Result bf = run("plan", "--model", "examples/configs/Llama-3.1-8B.json", "--json");
        JsonObject ob = JsonParser.parseString(bf.out()).getAsJsonObject();
        assertEquals("bfloat16", ob.getAsJsonObject("settings").get("dtype").getAsString(), "CUDA's default storage");
        // the dense 8B base: 4 B/param in fp32, 2 B/param in bf16 (16.06 GB, PEFT's)
        assertTrue(o.getAsJsonObject("lora").get("peak_total_bytes").getAsLong() - ob.getAsJsonObject("lora").get("peak_total_bytes").getAsLong()
                > 15_000_000_000L);
        // bf16 auto is mixed precision on CUDA; --bf16 false keeps fp32 activations, whose stored layer inputs take twice the bytes
        assertTrue(ob.getAsJsonObject("settings").get("bf16").getAsBoolean(), "CUDA's default: bf16 kept activations");
        Result nb = run("plan", "--model", "examples/configs/Llama-3.1-8B.json", "--checkpointing", "true", "--bf16", "false", "--json");
        Result mb = run("plan", "--model", "examples/configs/Llama-3.1-8B.json", "--checkpointing", "true", "--json");
        assertEquals(0, nb.code(), nb.err());
        JsonObject on = JsonParser.parseString(nb.out()).getAsJsonObject(), om = JsonParser.parseString(mb.out()).getAsJsonObject();
        assertFalse(on.getAsJsonObject("settings").get("bf16").getAsBoolean());
        assertTrue(on.getAsJsonObject("qlora").get("peak_total_bytes").getAsLong() > om.getAsJsonObject("qlora").get("peak_total_bytes").getAsLong());
        Result cpu = run("plan", "--model", "examples/configs/Llama-3.1-8B.json", "--device", "cpu", "--json");
        assertFalse(JsonParser.parseString(cpu.out()).getAsJsonObject().getAsJsonObject("settings").get("bf16").getAsBoolean(), "the CPU's default: fp32");
        assertEquals(2, run("plan", "--model", "examples/configs/Llama-3.1-8B.json", "--bf16", "maybe").code());
    }

    @Test
    void readsHfDirectoriesAndLlama2cHeaders(@TempDir Path dir) throws Exception {
        Files.copy(Path.of("examples/configs/Llama-3.1-8B.json"), dir.resolve("config.json"));
        Result r = run("plan", "--model", dir.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        assertEquals(32, JsonParser.parseString(r.out()).getAsJsonObject().getAsJsonObject("config").get("num_hidden_layers").getAsInt());
        String cfg = Files.readString(dir.resolve("config.json"));
        Path q = Files.createDirectories(dir.resolve("bnb"));
        Files.writeString(q.resolve("config.json"), cfg.replaceFirst("\\{", "{\"quantization_config\": {\"quant_method\": \"bitsandbytes\", \"load_in_4bit\": true},"));
        Result qr = run("plan", "--model", q.toString(), "--json");
        assertEquals(0, qr.code(), qr.err());
        assertEquals("qlora", JsonParser.parseString(qr.out()).getAsJsonObject().get("selected").getAsString(), "a bnb-4bit checkpoint plans QLoRA");
        Path bin = Assets.require("stories15M.bin");
        Result s = run("plan", "--model", bin.toString(), "--seq-len", "256", "--device", "cpu", "--vram", "1GiB");
        assertEquals(0, s.code(), s.err());
        assertTrue(s.out().contains("6 layers, hidden 288"), s.out());
    }

    @Test
    void badUsageAndBadInputGetTheirExitCodes(@TempDir Path dir) throws Exception {
        assertEquals(2, run("plan", "--model", "examples/configs/Llama-3.1-8B.json", "--vram", "lots").code());
        assertEquals(2, run("plan", "--model", "examples/configs/Llama-3.1-8B.json", "--dtype", "float16").code(), "lora4j stores bf16 or fp32");
        assertEquals(2, run("plan", "--model", "examples/configs/Llama-3.1-8B.json", "--checkpointing", "sometimes").code());
        assertEquals(2, run("plan", "--model", "examples/configs/Llama-3.1-8B.json", "--checkpoint-every", "3").code());
        assertEquals(2, run("plan", "--model", "examples/configs/Llama-3.1-8B.json", "--checkpointing", "chunked", "--checkpoint-every", "0").code());
        Path bad = dir.resolve("config.json");
        Files.writeString(bad, "{\"model_type\": \"llama\", \"hidden_size\": 0}");
        Result r = run("plan", "--model", bad.toString());
        assertEquals(1, r.code());
        assertTrue(r.err().strip().startsWith("lora4j plan:") && !r.err().strip().contains("\n"), r.err());
        assertEquals(1, run("plan", "--model", dir.resolve("missing.json").toString()).code());
    }
}
