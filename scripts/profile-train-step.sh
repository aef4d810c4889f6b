#!/usr/bin/env bash
# Where one LoRA training step's time goes, by op, and how the step scales from 1 to 2 threads:
# stories15M fp32, LoRA r 16 on all seven projections, batch 4 x seq 256 random tokens (all
# labelled), no activation checkpointing (bench/io/lora4j/bench/TrainStepProfile.java).
# Runs alternate 1 and 2 threads, ROUNDS times, so that both see the same machine load; the load
# average (/proc/loadavg) before and after each run goes into the report: on a shared machine
# quote it with the figures.
# Usage: scripts/profile-train-step.sh [ROUNDS] [STEPS]   (default 1 round of 3 steps after 2 warm-up)
# Output: bench/results/<date>-train-step-profile.md (the table) and .jsonl (the raw runs).
#   LORA4J_JAVA_OPTS  extra JVM options, e.g. -Dlora4j.host_cache_bytes=0 (no host cache)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-1}" steps="${2:-3}"
cache="${LORA4J_CACHE:-$HOME/.cache/lora4j}"
model="$cache/stories15M.bin"
[ -f "$model" ] || { echo "no $model: run scripts/fetch-assets.sh" >&2; exit 1; }
mvn -B -q -DskipTests -Dlora4j.cuda=OFF test-compile
cp_file=target/bench.classpath
mvn -B -q dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$cp_file"
cp="target/test-classes:target/classes:$(cat "$cp_file")"
stamp="$(date -u +%Y-%m-%d)"
raw="bench/results/$stamp-train-step-profile.jsonl"
: > "$raw"
for ((r = 1; r <= rounds; r++)); do
  for threads in 1 2; do
    before="$(cut -d' ' -f1-3 /proc/loadavg)"
    line="$(LORA4J_NUM_THREADS=$threads java ${LORA4J_JAVA_OPTS:-} -cp "$cp" io.lora4j.bench.TrainStepProfile "$model" "$steps" 4 256)"
    after="$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "${line%\}}, \"round\": $r, \"loadavg_before\": \"$before\", \"loadavg_after\": \"$after\"}" >> "$raw"
    echo "round $r, $threads thread(s): done (load $before -> $after)" >&2
  done
done
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1), family $(lscpu | sed -n 's/^CPU family: *//p' | head -1) model $(lscpu | sed -n 's/^Model: *//p' | head -1), $(grep -qw avx512f /proc/cpuinfo && echo AVX-512 || echo 'AVX2, no AVX-512')"
python3 scripts/profile_report.py "$raw" "$cpu" "$(nproc)" > "bench/results/$stamp-train-step-profile.md"
echo "wrote bench/results/$stamp-train-step-profile.md and $raw" >&2
