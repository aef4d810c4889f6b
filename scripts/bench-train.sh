#!/usr/bin/env bash
# lora4j's training step side by side with the PyTorch peer, one thread, on the same batches:
# stories15M fp32, LoRA r 16 on all seven projections, batch 4 x seq 256, AdamW + clipping.
#   capitals   the demo chat set (alpaca template), response-only: rows packed back to back (~18% trained)
#   text       Moby-Dick chapters as plain text (every token trained)
#   random     random tokens, every token trained (TrainBench's batch)
# Rounds alternate lora4j and the peer so that both see the same machine load; each side's median
# step is taken per round, and the ratio of the two medians of a round is the figure to quote.
# Usage: scripts/bench-train.sh [ROUNDS] [STEPS]     (default 3 rounds of 6 steps after 2 warm-up)
# Output: a table on stdout and the raw JSON lines in bench/results/train-side-by-side-<date>.jsonl.
#   OPENBLAS_DIR  directory of libopenblas0-pthread's libblas.so.3 for the peer (default: the
#                 system's /usr/lib/x86_64-linux-gnu/openblas-pthread), as scripts/bench.sh expects.
#   PEER=0        lora4j alone (its step FLOP rate against sgemm; no ratio to the peer)
#   SETS          the sets to run (default "capitals text random")
#   LORA4J_JAVA_OPTS  extra JVM options for lora4j's side, e.g. -Dlora4j.host_cache_bytes=0
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}" steps="${2:-6}"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 LORA4J_NUM_THREADS=1
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}"
ob="${OPENBLAS_DIR:-/usr/lib/x86_64-linux-gnu/openblas-pthread}"
[ "${PEER:-1}" = 0 ] || [ -f "$ob/libblas.so.3" ] || { echo "no OpenBLAS libblas.so.3 in $ob: apt-get install libopenblas0-pthread (or set OPENBLAS_DIR)" >&2; exit 1; }
cache="${LORA4J_CACHE:-$HOME/.cache/lora4j}"
model="$cache/stories15M.bin" tok="$cache/tokenizer.bin"
mvn -B -q -DskipTests -Dlora4j.cuda=OFF test-compile
cp_file=target/bench.classpath
mvn -B -q dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$cp_file"
cp="target/test-classes:target/classes:$(cat "$cp_file")"
lora4j() { java -cp "$cp" io.lora4j.cli.Main "$@"; }
work="target/bench-train"
mkdir -p "$work"
lora4j data --demo-sets "$work" >/dev/null
printf 'model: %s\ntokenizer: %s\npacking: true\nmax_seq_length: 256\ndataset: %s\nchat_template: alpaca\ntrain_on_responses_only: true\n' \
  "$model" "$tok" "$work/capitals-train.jsonl" > "$work/capitals.yaml"
printf 'model: %s\ntokenizer: %s\npacking: true\nmax_seq_length: 256\ndataset: %s\n' \
  "$model" "$tok" "$work/moby-dick-train.jsonl" > "$work/text.yaml"
for set in capitals text; do
  lora4j data --config "$work/$set.yaml" --dump "$work/$set.jsonl" --limit 60 >/dev/null
done
/usr/bin/python3 - "$work" <<'PY'
import json, random, sys
work = sys.argv[1]
S = 256
for name in ("capitals", "text"):
    # Pack the tokenized rows back to back into 4 rows of S (labels as dumped: -100 where untrained).
    flat_ids, flat_lab = [], []
    for l in open(f"{work}/{name}.jsonl"):
        r = json.loads(l)
        flat_ids += r["input_ids"]
        flat_lab += r["labels"]
    assert len(flat_ids) >= 4 * S, f"{name}: only {len(flat_ids)} tokens"
    ids = [flat_ids[b * S:(b + 1) * S] for b in range(4)]
    lab = [flat_lab[b * S:(b + 1) * S] for b in range(4)]
    json.dump({"input_ids": ids, "labels": lab}, open(f"{work}/{name}-batch.json", "w"))
rnd = random.Random(7)
ids = [[1] + [3 + rnd.randrange(31997) for _ in range(S - 1)] for _ in range(4)]
json.dump({"input_ids": ids, "labels": ids}, open(f"{work}/random-batch.json", "w"))
PY
out="bench/results/train-side-by-side-$(date +%Y-%m-%d).jsonl"
[ "${PEER:-1}" = 0 ] && out="bench/results/train-lora4j-$(date +%Y-%m-%d).jsonl"
: > "$out"
for set in ${SETS:-capitals text random}; do
  for r in $(seq "$rounds"); do
    j="$(java ${LORA4J_JAVA_OPTS:-} -cp "$cp" io.lora4j.bench.TrainSideBySide "$model" "$work/$set-batch.json" "$steps" 2>/dev/null)"
    p=null
    [ "${PEER:-1}" = 0 ] || p="$(LD_LIBRARY_PATH="$ob" /usr/bin/python3 scripts/reference/torch_train_peer.py --model "$model" \
          --data "$work/$set-batch.json" --steps "$steps")"
    echo "{\"set\": \"$set\", \"round\": $r, \"lora4j\": $j, \"peer\": $p}" >> "$out"
  done
done
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
peer = any(r["peer"] for r in rows)
if peer:
    print("| set | labelled targets | lora4j median step (min..max over rounds) | peer | ratio per round | median ratio | step GFLOP/s / sgemm GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
else:
    print("| set | labelled targets | lora4j median step (min..max over rounds) | step GFLOP/s | sgemm GFLOP/s | step / sgemm per round | median | the same per CPU second: step, sgemm, ratio per round |")
    print("|---|---|---|---|---|---|---|---|")
for s in ("capitals", "text", "random"):
    rs = [r for r in rows if r["set"] == s]
    if not rs: continue
    lm = [r["lora4j"]["train_step"]["median_ms"] for r in rs]
    eff = [r["lora4j"]["step_gflops_per_s"] / r["lora4j"]["sgemm_gflops_per_s"] for r in rs]
    head = f"| {s} | {rs[0]['lora4j']['labelled']} of {rs[0]['lora4j']['batch'] * rs[0]['lora4j']['seq']} | " \
           f"{statistics.median(lm):.0f} ms ({min(lm):.0f}..{max(lm):.0f}) | "
    if not peer:
        sg = [r["lora4j"]["step_gflops_per_s"] for r in rs]
        gg = [r["lora4j"]["sgemm_gflops_per_s"] for r in rs]
        cpu = [r["lora4j"]["cpu"] for r in rs]
        ce = [x["step_gflops_per_cpu_s"] / x["sgemm_gflops_per_cpu_s"] for x in cpu]
        print(head + f"{statistics.median(sg):.1f} | {statistics.median(gg):.1f} | {', '.join(f'{x:.2f}' for x in eff)} | "
              f"**{statistics.median(eff):.2f}** | {statistics.median([x['step_gflops_per_cpu_s'] for x in cpu]):.1f}, "
              f"{statistics.median([x['sgemm_gflops_per_cpu_s'] for x in cpu]):.1f}, {', '.join(f'{x:.2f}' for x in ce)} |")
        continue
    pm = [r["peer"]["train_step"]["median_ms"] for r in rs]
    ratios = [p / l for l, p in zip(lm, pm)]
    print(head + f"{statistics.median(pm):.0f} ms ({min(pm):.0f}..{max(pm):.0f}) | "
          f"{', '.join(f'{x:.2f}' for x in ratios)} | **{statistics.median(ratios):.2f}x** | "
          f"{statistics.median(eff):.2f} ({', '.join(f'{x:.2f}' for x in eff)}) |")
PY
