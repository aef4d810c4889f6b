package io.lora4j.cli;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import io.lora4j.model.LlamaModel;
import io.lora4j.model.Sampler;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.Locale;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/** {@code lora4j generate}: continue a prompt with KV-cache decoding. */
public final class GenerateCommand implements Command {
    @Override public String name() { return "generate"; }

    @Override public String summary() { return "continue a prompt (greedy or sampled, KV-cache decoding)"; }

    @Override public String synopsis() {
        return "generate --model M --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-p P] [--seed S] [--json]";
    }

    @Override public String description() {
        return "Encodes [BOS] + PROMPT and decodes up to --max-new-tokens tokens (default 128), stopping at EOS or at the\n"
                + "model's max_position_embeddings. --temperature 0 (the default) is greedy; otherwise tokens are sampled from\n"
                + "softmax(logits / T) within the top-p nucleus, with --seed (default 3407) fixing the draw.";
    }

    @Override
    public Options options() {
        return ModelArgs.addTo(new Options())
                .addOption(Option.builder().longOpt("prompt").hasArg().argName("TEXT").required().desc("text to continue").get())
                .addOption(Option.builder().longOpt("max-new-tokens").hasArg().argName("N").desc("tokens to generate at most (default 128)").get())
                .addOption(Option.builder().longOpt("temperature").hasArg().argName("T").desc("0 = greedy (default); > 0 samples").get())
                .addOption(Option.builder().longOpt("top-p").hasArg().argName("P").desc("nucleus mass in (0, 1] (default 1)").get())
                .addOption(Option.builder().longOpt("seed").hasArg().argName("S").desc("sampling seed (default 3407)").get())
                .addOption(Option.builder().longOpt("json").desc("print {prompt, text, ids, new_tokens, tokens_per_second} as JSON").get());
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        if (!cl.getArgList().isEmpty()) throw new UsageException("unexpected argument '" + cl.getArgList().get(0) + "'");
        int maxNew = Cli.parseInt(cl, "max-new-tokens", 128);
        if (maxNew < 0) throw new UsageException("--max-new-tokens must be >= 0, got " + maxNew);
        float temperature = Cli.parseFloat(cl, "temperature", 0f);
        float topP = Cli.parseFloat(cl, "top-p", 1f);
        long seed = Cli.parseLong(cl, "seed", 3407);
        Sampler sampler;
        try {
            sampler = new Sampler(temperature, topP, seed);
        } catch (IllegalArgumentException e) {
            throw new UsageException(e.getMessage());
        }
        boolean json = cl.hasOption("json");
        String prompt = cl.getOptionValue("prompt");
        try (ModelArgs m = ModelArgs.open(cl)) {
            int[] promptIds = m.tokenizer.encode(prompt, true, false);
            int capacity = Math.min(m.model.config().maxPositionEmbeddings(), promptIds.length + maxNew);
            if (promptIds.length > capacity)
                throw new IllegalArgumentException("the prompt has " + promptIds.length + " tokens, more than the model's "
                        + m.model.config().maxPositionEmbeddings() + " positions");
            int[] ids = Arrays.copyOf(promptIds, capacity);
            int n = promptIds.length, tokens = m.tokenizer.vocabSize();
            if (!json) ctx.out().print(prompt);
            long t0 = System.nanoTime(), tFirst = 0;
            try (LlamaModel.KvCache cache = m.model.newCache(Math.max(1, capacity))) {
                FloatBuffer logits = cache.session().prefill(promptIds);
                tFirst = System.nanoTime();
                while (n < capacity) {
                    // padded embedding rows past the tokenizer's ids are never chosen
                    int next = sampler.sample(logits.remaining() > tokens ? logits.slice(logits.position(), tokens) : logits);
                    if (next == m.tokenizer.eosId()) break;
                    ids[n] = next;
                    if (!json) {
                        ctx.out().write(m.tokenizer.decodePieceBytes(ids[n - 1], next));
                        ctx.out().flush();
                    }
                    n++;
                    if (n < capacity) logits = cache.session().step(next);
                }
            }
            long t1 = System.nanoTime();
            int generated = n - promptIds.length;
            double tps = generated > 0 ? generated / ((t1 - tFirst) / 1e9) : 0;
            int[] out = Arrays.copyOf(ids, n);
            if (json) {
                JsonObject j = new JsonObject();
                j.addProperty("prompt", prompt);
                j.addProperty("text", m.tokenizer.decode(out));
                JsonArray a = new JsonArray();
                for (int id : out) a.add(id);
                j.add("ids", a);
                j.addProperty("prompt_tokens", promptIds.length);
                j.addProperty("new_tokens", generated);
                j.addProperty("prefill_seconds", (tFirst - t0) / 1e9);
                j.addProperty("tokens_per_second", tps);
                ctx.out().println(new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(j));
            } else {
                ctx.out().println();
                ctx.err().printf(Locale.ROOT, "%d new tokens, %.1f tokens/s (%s)%n", generated, tps, m.model.backend().description());
            }
        }
        return OK;
    }
}
