#!/usr/bin/env bash
# The CPU attention kernel of REF (default: main) against the working tree's, inside the same
# training step: stories15M fp32, LoRA r 16 on all seven projections, batch 4 x seq 256 random
# tokens (all labelled), no checkpointing, 1 thread. Two liblora4j.so differ only in
# native/cpu/attention.cpp: the working tree's (target/native-build) and one relinked from the same
# objects with REF's attention.cpp compiled by the same flags. Rounds alternate the two, each round
# running TrainSideBySide (step FLOP rate / sgemm rate measured in the same process) and
# TrainStepProfile (time by op) through -Dlora4j.native.
# Usage: scripts/attention-before-after.sh [REF] [ROUNDS] [STEPS]   (default main 3 4)
# Output: the raw JSON lines in target/attention-before-after/runs.jsonl and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ref="${1:-main}" rounds="${2:-3}" steps="${3:-4}"
export LORA4J_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
model="${LORA4J_CACHE:-$HOME/.cache/lora4j}/stories15M.bin"
[ -f "$model" ] || { echo "no $model: run scripts/fetch-assets.sh" >&2; exit 1; }
mvn -B -q -DskipTests -Dlora4j.cuda=OFF test-compile
cp_file=target/bench.classpath
mvn -B -q dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$cp_file"
cp="target/test-classes:target/classes:$(cat "$cp_file")"
build=target/native-build dir=target/attention-before-after
mkdir -p "$dir/before" "$dir/after"
cp "$build/liblora4j.so" "$dir/after/liblora4j.so"
git show "$ref:native/cpu/attention.cpp" > "$dir/attention-$ref.cpp"
objs="$build/CMakeFiles/lora4j.dir"
flags="$(sed -n 's/^CXX_FLAGS = //p' "$objs/flags.make")"
defs="$(sed -n 's/^CXX_DEFINES = //p' "$objs/flags.make")"
incs="$(sed -n 's/^CXX_INCLUDES = //p' "$objs/flags.make")"
eval "c++ $defs $incs -I$PWD/native/cpu $flags -c $dir/attention-$ref.cpp -o $dir/attention-$ref.o"
link="$(cat "$objs/link.txt")"
link="${link//CMakeFiles\/lora4j.dir\/native\/cpu\/attention.cpp.o/$PWD/$dir/attention-$ref.o}"
link="${link//-o liblora4j.so/-o $PWD/$dir/before/liblora4j.so}"
(cd "$build" && eval "$link")
/usr/bin/python3 - "$dir/random-batch.json" <<'PY'
import json, random, sys
rnd = random.Random(7)
ids = [[1] + [3 + rnd.randrange(31997) for _ in range(255)] for _ in range(4)]
json.dump({"input_ids": ids, "labels": ids}, open(sys.argv[1], "w"))
PY
raw="$dir/runs.jsonl"
: > "$raw"
for ((r = 1; r <= rounds; r++)); do
  for side in before after; do
    opt="-Dlora4j.native=$PWD/$dir/$side/liblora4j.so"
    step="$(java "$opt" -cp "$cp" io.lora4j.bench.TrainSideBySide "$model" "$dir/random-batch.json" "$steps" 2>/dev/null)"
    prof="$(java "$opt" -cp "$cp" io.lora4j.bench.TrainStepProfile "$model" "$steps" 4 256)"
    echo "{\"side\": \"$side\", \"round\": $r, \"load\": \"$(cut -d' ' -f1 /proc/loadavg)\", \"step\": $step, \"profile\": $prof}" >> "$raw"
    echo "round $r $side done" >&2
  done
done
/usr/bin/python3 - "$raw" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
# useful attention FLOPs of one step: 6 layers x B4 x 6 heads x S(S+1)/2 pairs x D48, fwd 2 + bwd 5 products
flops = 6 * 4 * 6 * (256 * 257 / 2) * 48 * 2 * 7
def med(xs): return f"{st.median(xs):.2f} ({min(xs):.2f}..{max(xs):.2f})"
print("| | attention fwd+bwd ms / step (wall) | same, CPU ms | attention GFLOP/s / sgemm GFLOP/s (CPU time) | step GFLOP/s / sgemm GFLOP/s (wall) | same (CPU time) | load |")
print("|---|---|---|---|---|---|---|")
for side in ("before", "after"):
    rs = [r for r in rows if r["side"] == side]
    ops = [r["profile"]["ops"] for r in rs]
    att = [o["attentionFwd"]["ms"] + o["attentionBwd"]["ms"] for o in ops]
    attc = [o["attentionFwd"]["cpu_ms"] + o["attentionBwd"]["cpu_ms"] for o in ops]
    sg = [r["step"]["cpu"]["sgemm_gflops_per_cpu_s"] for r in rs]
    arate = [flops / (a / 1e3) / 1e9 / s for a, s in zip(attc, sg)]
    wall = [r["step"]["step_gflops_per_s"] / r["step"]["sgemm_gflops_per_s"] for r in rs]
    cpu = [r["step"]["cpu"]["step_gflops_per_cpu_s"] / r["step"]["cpu"]["sgemm_gflops_per_cpu_s"] for r in rs]
    print(f"| {side} | {med(att)} | {med(attc)} | {med(arate)} | {med(wall)} | {med(cpu)} | {', '.join(r['load'] for r in rs)} |")
PY
