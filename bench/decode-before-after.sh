#!/usr/bin/env bash
# Decode of the synthetic 8-layer d=1024 model (fp32, 1 thread) with two builds of liblora4j and
# llama.cpp's F32, in turns, in one run: the before/after of a CPU kernel change measured against
# the same peer under the same load (the machine may be shared: the load average is printed with
# every line). Reuses scripts/decode-bench.sh's model, GGUF and peer (run that once first).
#   BEFORE=/path/to/old/liblora4j.so bench/decode-before-after.sh      # after = this checkout's
#   ROUNDS=3 REPS=2 NEW=64 WEIGHTS=fp32 BEFORE=... bench/decode-before-after.sh
# Prints one JSON line per rep (lora4j lines carry "build":"before"|"after") and then, per side,
# the median decode tok/s (min-max) and the ratios to llama.cpp.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BEFORE:?BEFORE=path of the liblora4j.so to compare against}"
ROUNDS="${ROUNDS:-3}" REPS="${REPS:-2}" NEW="${NEW:-64}" WEIGHTS="${WEIGHTS:-fp32}"
work=target/decode-bench
synth="$work/synth-d1024-l8.bin" gguf="$work/synth-$([ "$WEIGHTS" = nf4 ] && echo q4_0 || echo f32).gguf"
[ -f "$synth" ] && [ -f "$gguf" ] && [ -f "$work/classpath" ] || { echo "run scripts/decode-bench.sh first (SETS=synth)" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
cp="target/test-classes:target/classes:$(cat "$work/classpath")"
prompt=1,9038,2501,263,931
out="$work/before-after.jsonl"
: > "$out"
load() { cut -d' ' -f1 /proc/loadavg; }
for round in $(seq "$ROUNDS"); do
  for side in before after peer; do
    case $side in
      peer) node scripts/llamacpp/peer.mjs "$gguf" "$prompt" "$NEW" 256 "$REPS" 1 ;;
      before) LORA4J_NATIVE="$BEFORE" java -Xmx4g -cp "$cp" io.lora4j.bench.DecodeBench "$synth" "$WEIGHTS" "$prompt" "$NEW" 256 "$REPS" 1 ;;
      after) java -Xmx4g -cp "$cp" io.lora4j.bench.DecodeBench "$synth" "$WEIGHTS" "$prompt" "$NEW" 256 "$REPS" 1 ;;
    esac | grep '^{' | sed "s/^{/{\"side\":\"$side\",\"round\":$round,\"load1\":$(load),/" | tee -a "$out"
  done
done
node -e '
const runs = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse);
const med = (v) => { const s = [...v].sort((a, b) => a - b), n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const d = {}; for (const s of ["before", "after", "peer"]) d[s] = runs.filter((r) => r.side === s).map((r) => r.decode_tok_s);
for (const s of ["before", "after", "peer"]) console.log(`${s}: decode ${med(d[s]).toFixed(1)} tok/s (${Math.min(...d[s]).toFixed(1)}-${Math.max(...d[s]).toFixed(1)}), n=${d[s].length}`);
console.log(`before/llama.cpp ${(med(d.before) / med(d.peer)).toFixed(2)}x, after/llama.cpp ${(med(d.after) / med(d.peer)).toFixed(2)}x, after/before ${(med(d.after) / med(d.before)).toFixed(2)}x`);
console.log(`load average (1 min) during the runs: ${Math.min(...runs.map((r) => r.load1))}-${Math.max(...runs.map((r) => r.load1))}`);
' "$out"
