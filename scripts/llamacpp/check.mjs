// llama.cpp (node-llama-cpp's prebuilt CPU binary) as the consumer of lora4j's GGUF exports.
// Usage: node check.mjs JOBS.json > RESULT.json
// JOBS.json: {"threads": 1, "jobs": [
//   {"kind": "loss", "model": "m.gguf", "lora": "a.gguf" | null, "kv": "F32", "rows": [[ids...], ...], "greedy": {"prompt": [ids], "n": 20}},
//   {"kind": "tokenize", "model": "m.gguf", "texts": ["...", ...]}]}
// A loss job evaluates every row from an empty sequence and returns, per row, the sum of -log p(next token) over
// positions 1..n-1 (the next-token distribution comes from controlledEvaluate's probabilities) and, with
// "greedy", the argmax continuation of the prompt. A tokenize job returns model.tokenize(text) for each text
// (no BOS, special-token strings read as text), using the vocabulary and pre-tokenizer from the GGUF metadata.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
import {readFileSync} from "node:fs";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: spec.threads ?? 1});

async function lossJob(job) {
    const model = await llama.loadModel({modelPath: job.model, gpuLayers: 0});
    const longest = Math.max(...job.rows.map((r) => r.length), job.greedy ? job.greedy.prompt.length + job.greedy.n : 0);
    const contextOptions = {
        contextSize: Math.max(64, longest + 8),
        batchSize: Math.max(64, longest + 8),
        sequences: 1,
        threads: spec.threads ?? 1,
        flashAttention: false,
        experimentalKvCacheKeyType: job.kv ?? "F32",
        experimentalKvCacheValueType: job.kv ?? "F32"
    };
    if (job.lora) contextOptions.lora = {adapters: [{filePath: job.lora, scale: job.loraScale ?? 1}]};
    const context = await model.createContext(contextOptions);
    const seq = context.getSequence();
    const rows = [];
    for (const ids of job.rows) {
        await seq.clearHistory();
        const input = ids.slice(0, -1).map((t) => [t, {generateNext: {probabilities: true}}]);
        const out = await seq.controlledEvaluate(input);
        let sum = 0;
        let argmaxHits = 0;
        for (let i = 0; i + 1 < ids.length; i++) {
            const probs = out[i].next.probabilities;
            const p = probs.get(ids[i + 1]) ?? 0;
            sum += -Math.log(p);
            if (probs.keys().next().value === ids[i + 1]) argmaxHits++;
        }
        rows.push({lossSum: sum, tokens: ids.length - 1, argmaxHits});
    }
    let greedy = null;
    if (job.greedy) {
        await seq.clearHistory();
        const generated = [];
        const margins = [];
        let input = job.greedy.prompt.slice(0, -1).concat([[job.greedy.prompt.at(-1), {generateNext: {probabilities: true}}]]);
        for (let k = 0; k < job.greedy.n; k++) {
            const out = await seq.controlledEvaluate(input);
            const probs = out.at(-1).next.probabilities;
            const it = probs.entries();
            const [top, p1] = it.next().value;
            const [, p2] = it.next().value;
            generated.push(top);
            margins.push(Math.log(p1) - Math.log(p2));
            input = [[top, {generateNext: {probabilities: true}}]];
        }
        greedy = {ids: generated, logitMargins: margins};
    }
    await context.dispose();
    await model.dispose();
    return {rows, greedy};
}

async function tokenizeJob(job) {
    const model = await llama.loadModel({modelPath: job.model, vocabOnly: true});
    const ids = job.texts.map((t) => Array.from(model.tokenize(t, false)));
    await model.dispose();
    return {ids};
}

const results = [];
for (const job of spec.jobs) {
    if (job.kind === "loss") results.push(await lossJob(job));
    else if (job.kind === "tokenize") results.push(await tokenizeJob(job));
    else throw new Error("unknown job kind " + job.kind);
}
process.stdout.write(JSON.stringify({llamaCpp: "node-llama-cpp 3.21.1", results}) + "\n");
await llama.dispose();
