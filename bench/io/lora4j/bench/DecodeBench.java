package io.lora4j.bench;

import io.lora4j.model.DecodeSession;
import io.lora4j.model.LlamaModel;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.ModelLoader;
import io.lora4j.model.Sampler;
import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.ops.Backends;
import io.lora4j.ops.CpuBackend;
import java.nio.FloatBuffer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;

/**
 * Generation speed of {@link DecodeSession} measured exactly as its llama.cpp peer
 * (scripts/llamacpp/peer.mjs) measures llama.cpp; scripts/decode-bench.sh runs both, in
 * turns, on the same weights and ids and writes the comparison to bench/results/.
 *
 * <pre>
 *   DecodeBench MODEL fp32|nf4|nf4bf16 PROMPT_IDS NEW_TOKENS PREFILL_TOKENS REPS THREADS
 * (nf4bf16: NF4 with bnb_4bit_compute_dtype bfloat16)
 * </pre>
 * Per rep one JSON line: {@code decode_tok_s} = (NEW_TOKENS - 1) / time from the first generated
 * token to the last (greedy, no stop at EOS: NEW_TOKENS - 1 single-token steps, argmax included);
 * {@code prefill_tok_s} = PREFILL_TOKENS / time of {@link DecodeSession#prefill} of BOS and a fixed
 * spread of ids (the peer's), the last token's logits included. The first rep also prints the
 * generated ids, so greedy outputs can be compared with the peer's. {@code sample_top_p_us}: what
 * temperature 0.8 + top_p 0.9 sampling costs per token on the model's logits (not in the peer).
 */
public final class DecodeBench {
    private DecodeBench() {}

    /** BOS then 3 + (i·7919) mod (vocab - 3): the same ids as peer.mjs's prefillIds. */
    static int[] prefillIds(int n, int vocab) {
        int[] ids = new int[n];
        ids[0] = 1;
        for (int i = 1; i < n; i++) ids[i] = 3 + (int) ((long) i * 7919 % (vocab - 3));
        return ids;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 7) {
            System.err.println("usage: DecodeBench MODEL fp32|nf4|nf4bf16 PROMPT_IDS NEW_TOKENS PREFILL_TOKENS REPS THREADS");
            System.exit(2);
        }
        Path model = Path.of(args[0]);
        boolean nf4 = args[1].startsWith("nf4");
        ModelLoader.Options opts = nf4 ? ModelLoader.Options.in4bit() : ModelLoader.Options.defaults();
        if (args[1].equals("nf4bf16")) opts = opts.withComputeDtype(io.lora4j.tensor.DType.BF16);
        int[] prompt = Arrays.stream(args[2].split(",")).mapToInt(Integer::parseInt).toArray();
        int newTokens = Integer.parseInt(args[3]), prefillTokens = Integer.parseInt(args[4]);
        int reps = Integer.parseInt(args[5]), threads = Integer.parseInt(args[6]);
        NativeLibrary.setNumThreads(threads);
        try (LlamaWeights w = ModelLoader.load(model, opts);
             LlamaModel m = LlamaModel.create(Backends.cpu(), w)) {
            int[] pre = prefillIds(prefillTokens, m.config().vocabSize());
            for (int r = 0; r < reps; r++) {
                int[] ids = new int[newTokens];
                long tFirst, tLast;
                try (LlamaModel.KvCache c = m.newCache(prompt.length + newTokens)) {
                    DecodeSession s = c.session();
                    FloatBuffer logits = s.prefill(prompt);
                    ids[0] = Sampler.argmax(logits);
                    tFirst = System.nanoTime();
                    for (int i = 1; i < newTokens; i++) {
                        logits = s.step(ids[i - 1]);
                        ids[i] = Sampler.argmax(logits);
                    }
                    tLast = System.nanoTime();
                }
                double decode = (newTokens - 1) / ((tLast - tFirst) / 1e9);
                // What temperature + top-p sampling would add per token (T 0.8, top_p 0.9) on real logits.
                Sampler sampler = new Sampler(0.8f, 0.9f, r);
                double sampleUs;
                try (LlamaModel.KvCache c = m.newCache(prompt.length)) {
                    FloatBuffer logits = c.session().prefill(prompt);
                    for (int i = 0; i < 50; i++) sampler.sample(logits);
                    long t0 = System.nanoTime();
                    for (int i = 0; i < 200; i++) sampler.sample(logits);
                    sampleUs = (System.nanoTime() - t0) / 1e3 / 200;
                }
                double prefill;
                try (LlamaModel.KvCache c = m.newCache(prefillTokens)) { // allocated before the clock, as the peer's context
                    long t0 = System.nanoTime();
                    c.session().prefill(pre);
                    prefill = prefillTokens / ((System.nanoTime() - t0) / 1e9);
                }
                StringBuilder line = new StringBuilder(String.format(Locale.ROOT,
                        "{\"peer\":\"lora4j\",\"model\":\"%s\",\"weights\":\"%s\",\"threads\":%d,\"isa\":\"%s\","
                                + "\"decode_tok_s\":%.3f,\"prefill_tok_s\":%.3f,\"sample_top_p_us\":%.1f",
                        model, args[1], threads, CpuBackend.decodeIsa(), decode, prefill, sampleUs));
                if (r == 0) line.append(",\"ids\":").append(Arrays.toString(ids).replace(" ", ""));
                System.out.println(line.append('}'));
            }
        }
    }
}
