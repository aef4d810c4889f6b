// Turns scripts/decode-bench.sh's runs.jsonl into the markdown of bench/results/decode-<date>.md:
// per model, weights and thread count, lora4j's and llama.cpp's medians with min-max spreads and
// the ratio of the medians; the CPU named from /proc/cpuinfo.
//   node report.mjs RUNS.jsonl WORKDIR
import fs from "node:fs";
import os from "node:os";

const [runsPath, work] = process.argv.slice(2);
const runs = fs.readFileSync(runsPath, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
const cpuinfo = fs.readFileSync("/proc/cpuinfo", "utf8");
const model = (cpuinfo.match(/model name\s*:\s*(.*)/) || [, os.cpus()[0].model])[1];
const flags = (cpuinfo.match(/flags\s*:\s*(.*)/) || [, ""])[1].split(" ");
const simd = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"].filter((f) => flags.includes(f)).join(" ");

const median = (v) => { const s = [...v].sort((a, b) => a - b), n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const fmt = (v) => `${median(v).toFixed(1)} (${Math.min(...v).toFixed(1)}-${Math.max(...v).toFixed(1)})`;
const peerOf = { fp32: "f32", nf4: "q4_0", nf4bf16: "q4_0" }; // nf4bf16: bnb_4bit_compute_dtype bfloat16
const bpw = (set, g) => { try { return JSON.parse(fs.readFileSync(`${work}/${set}-${g}.json`, "utf8")).projection_bytes_per_weight; } catch { return NaN; } };

const lines = [];
lines.push(`# Decode and prefill: lora4j vs llama.cpp (${new Date().toISOString().slice(0, 10)})`, "");
lines.push(`CPU: ${model} (${os.cpus().length} logical CPUs; ${simd}); load average at the end ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}.`);
lines.push("Peer: llama.cpp through node-llama-cpp 3.21.1's prebuilt CPU binary, default (F16) KV cache; lora4j: F32 KV cache.");
lines.push("Both sides: the same weights (GGUF written from the llama2.c file by scripts/llamacpp/gguf.mjs), the same ids,");
lines.push("greedy, no stop at EOS; decode = (N-1)/(time from the first generated token to the N-th); prefill = 256 tokens/time");
lines.push("of one prompt evaluation. Runs alternate between the two programs; medians (min-max) over every rep of every round.", "");
lines.push("| model | weights (B/weight of projections) | threads | tokens | lora4j decode tok/s | llama.cpp decode tok/s | ratio | lora4j prefill tok/s | llama.cpp prefill tok/s | ratio |");
lines.push("|---|---|---|---|---|---|---|---|---|---|");
const keys = [...new Set(runs.filter((r) => r.peer === "lora4j").map((r) => `${r.set}|${r.weights}|${r.threads}`))];
const notes = [];
for (const k of keys) {
  const [set, w, t] = k.split("|");
  const ours = runs.filter((r) => r.peer === "lora4j" && r.set === set && r.weights === w && String(r.threads) === t);
  const theirs = runs.filter((r) => r.peer === "llama.cpp" && r.set === set && r.weights === peerOf[w] && String(r.threads) === t);
  const od = ours.map((r) => r.decode_tok_s), op = ours.map((r) => r.prefill_tok_s);
  const n = (ours.find((r) => r.ids) || {}).ids?.length ?? "?";
  const ourBpw = w === "fp32" ? 4 : 0.5625; // NF4 codes 0.5 + fp32 absmax per 64 = 0.0625 as the GEMV reads them
  if (!theirs.length) { // no peer at this thread count: lora4j's speed-up over its own 1-thread run
    const one = runs.filter((r) => r.peer === "lora4j" && r.set === set && r.weights === w && r.threads === 1);
    const su = (a, b) => one.length ? `${(median(a) / median(b)).toFixed(2)}x of 1 thread` : "—";
    lines.push(`| ${set} | ${w} (${ourBpw}) | ${t} | ${n} | ${fmt(od)} | — | ${su(od, one.map((r) => r.decode_tok_s))} | ${fmt(op)} | — | ${su(op, one.map((r) => r.prefill_tok_s))} |`);
    continue;
  }
  const td = theirs.map((r) => r.decode_tok_s), tp = theirs.map((r) => r.prefill_tok_s);
  lines.push(`| ${set} | ${w} (${ourBpw}) vs ${peerOf[w]} (${bpw(set, peerOf[w])}) | ${t} | ${n} | ${fmt(od)} | ${fmt(td)} | **${(median(od) / median(td)).toFixed(2)}x** | ${fmt(op)} | ${fmt(tp)} | **${(median(op) / median(tp)).toFixed(2)}x** |`);
  const oi = (ours.find((r) => r.ids) || {}).ids, ti = (theirs.find((r) => r.ids) || {}).ids;
  if (oi && ti) {
    let same = 0;
    while (same < Math.min(oi.length, ti.length) && oi[same] === ti[same]) same++;
    notes.push(`- ${set} ${w} vs ${peerOf[w]}, ${t} thread(s): greedy ids agree for the first ${same} of ${oi.length} tokens.`);
  }
  const su = ours.map((r) => r.sample_top_p_us).filter((x) => x !== undefined);
  if (su.length && t === "1") notes.push(`- ${set} ${w}: temperature 0.8 + top_p 0.9 sampling costs ${median(su).toFixed(0)} µs per token (median), ${(median(su) / (1e6 / median(od)) * 100).toFixed(1)} % of a decode step.`);
}
lines.push("", ...notes, "");
console.log(lines.join("\n"));
