// llama.cpp as the peer of lora4j's decode benchmark (bench/io/lora4j/DecodeBench.java measures
// the same things): node-llama-cpp 3.21.1's prebuilt CPU binary, one thread, llama.cpp's default
// (F16) KV cache, its fastest setting here (F32 measured ~0.7x as fast); lora4j keeps an F32 cache.
//
//   node peer.mjs MODEL.gguf PROMPT_IDS NEW_TOKENS PREFILL_TOKENS REPS [THREADS (1)]
//
// PROMPT_IDS: comma-separated token ids (BOS first) fed as they are, so both sides see the same
// tokens. Per rep, prints one JSON line:
//   decode_tok_s    (NEW_TOKENS-1) / time from the first generated token to the last, greedy,
//                   no stop at EOS (so every rep runs NEW_TOKENS-1 single-token steps)
//   prefill_tok_s   PREFILL_TOKENS / time to evaluate a PREFILL_TOKENS-token prompt (synthetic ids)
//   ids             the generated ids (first rep only), to compare greedy outputs
import { getLlama } from "node-llama-cpp";

const [modelPath, promptArg, newArg, prefillArg, repsArg, threadsArg] = process.argv.slice(2);
if (!repsArg) {
  console.error("usage: node peer.mjs MODEL.gguf PROMPT_IDS NEW_TOKENS PREFILL_TOKENS REPS [THREADS]");
  process.exit(2);
}
const prompt = promptArg.split(",").map(Number);
const newTokens = Number(newArg), prefillTokens = Number(prefillArg), reps = Number(repsArg);
const threads = Number(threadsArg || 1);

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const contextSize = Math.max(prompt.length + newTokens, prefillTokens);
const context = await model.createContext({
  contextSize, batchSize: contextSize, threads, sequences: 1,
});

/** The prefill prompt: BOS then a fixed spread of ids (content does not change the cost); DecodeBench uses the same. */
function prefillIds(n, vocab) {
  const ids = [1];
  for (let i = 1; i < n; i++) ids.push(3 + ((i * 7919) % (vocab - 3)));
  return ids;
}

for (let r = 0; r < reps; r++) {
  const seq = context.getSequence();
  const ids = [];
  let tFirst = 0n, tLast = 0n;
  for await (const tok of seq.evaluate(prompt, { temperature: 0 })) {
    const now = process.hrtime.bigint();
    if (ids.length === 0) tFirst = now;
    ids.push(tok);
    tLast = now;
    if (ids.length === newTokens) break;
  }
  const decode = (newTokens - 1) / (Number(tLast - tFirst) / 1e9);
  seq.dispose();

  const seq2 = context.getSequence();
  const pids = prefillIds(prefillTokens, 32000);
  const t0 = process.hrtime.bigint();
  await seq2.evaluateWithoutGeneratingNewTokens(pids);
  const prefill = prefillTokens / (Number(process.hrtime.bigint() - t0) / 1e9);
  seq2.dispose();
  const line = { peer: "llama.cpp", model: modelPath, decode_tok_s: decode, prefill_tok_s: prefill };
  if (r === 0) line.ids = ids;
  console.log(JSON.stringify(line));
}
await context.dispose();
await model.dispose();
