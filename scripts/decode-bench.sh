#!/usr/bin/env bash
# Generation speed of lora4j against llama.cpp (node-llama-cpp 3.21.1, prebuilt CPU binary) on the
# same weights, in turns, in one run: stories15M fp32 vs llama.cpp F32, NF4 (fp32 compute, and
# bf16 compute: bnb_4bit_compute_dtype bfloat16, "nf4bf16") vs llama.cpp Q4_0,
# decode of NEW tokens after BOS + "Once upon a time" and prefill of a 256-token prompt; then a
# synthetic 8-layer d=1024 model (weights far beyond L2/L3). lora4j on THREADS (1 and 2) threads,
# llama.cpp on PEER_THREADS (1); ratios compare equal thread counts.
#   scripts/decode-bench.sh                 # writes bench/results/decode-<date>.md
#   ROUNDS=3 REPS=5 PEER_THREADS="1 2" scripts/decode-bench.sh
#   SETS=stories THREADS=1 RESULT=bench/results/x.md scripts/decode-bench.sh   # stories15M only
#   PAIRS="nf4,nf4bf16:q4_0" ...                                             # NF4 only
# Needs: the assets (scripts/fetch-assets.sh), node + npm (installs scripts/llamacpp once, as .ci/run does).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-2}" REPS="${REPS:-3}" THREADS="${THREADS:-1 2}" PEER_THREADS="${PEER_THREADS:-1}"
NEW="${NEW:-200}" SYNTH_NEW="${SYNTH_NEW:-64}" SETS="${SETS:-stories synth}"
PAIRS="${PAIRS:-fp32:f32 nf4,nf4bf16:q4_0}"   # lora4j weights (comma-separated):llama.cpp weights
result="${RESULT:-bench/results/decode-$(date +%Y-%m-%d).md}"
cache="${LORA4J_CACHE:-$HOME/.cache/lora4j}"
work=target/decode-bench
mkdir -p "$work"
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
peer=scripts/llamacpp
[ -d "$peer/node_modules/node-llama-cpp" ] || (cd "$peer" && npm ci --ignore-scripts --no-audit --no-fund)

mvn -B -q -DskipTests -Dlora4j.cuda=OFF test-compile
mvn -B -q dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$work/classpath" >/dev/null
cp="target/test-classes:target/classes:$(cat "$work/classpath")"

stories="$cache/stories15M.bin" tok="$cache/tokenizer.bin"
synth="$work/synth-d1024-l8.bin"
[ -f "$synth" ] || node "$peer/gguf.mjs" synth "$synth" 1024 2816 8 16 32000 512 3407
for m in stories:"$stories" synth:"$synth"; do
  name="${m%%:*}" bin="${m#*:}"
  for f in f32 q4_0; do
    [ -f "$work/$name-$f.gguf" ] || node "$peer/gguf.mjs" convert "$bin" "$tok" "$work/$name-$f.gguf" "$f" > "$work/$name-$f.json"
  done
done

prompt=1,9038,2501,263,931   # BOS + "Once upon a time" (DESIGN.md §5)
out="$work/runs.jsonl"
: > "$out"
for round in $(seq "$ROUNDS"); do
  for m in stories:"$stories":"$NEW" synth:"$synth":"$SYNTH_NEW"; do
    IFS=: read -r name bin new <<< "$m"
    [[ " $SETS " == *" $name "* ]] || continue
    for pair in $PAIRS; do
      ws="${pair%%:*}" g="${pair#*:}"
      for w in ${ws//,/ }; do
        for t in $THREADS; do
          OMP_NUM_THREADS=$t java -Xmx4g -cp "$cp" io.lora4j.bench.DecodeBench "$bin" "$w" "$prompt" "$new" 256 "$REPS" "$t" \
            | sed "s/^{/{\"set\":\"$name\",\"round\":$round,/" >> "$out"
        done
      done
      # llama.cpp: same ids, tokens and prompt, PEER_THREADS threads (its spinning barriers make a
      # 2-thread run on a shared 2-core machine take minutes, so by default only 1)
      for t in $PEER_THREADS; do
        node "$peer/peer.mjs" "$work/$name-$g.gguf" "$prompt" "$new" 256 "$REPS" "$t" \
          | sed "s/^{/{\"set\":\"$name\",\"round\":$round,\"weights\":\"$g\",\"threads\":$t,/" >> "$out"
      done
    done
  done
done
node "$peer/report.mjs" "$out" "$work" > "$result"
cat "$result"
