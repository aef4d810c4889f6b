#!/usr/bin/env bash
# Data-parallel scaling on stories15M, one thread per rank: 1 rank x accumulation 8 against
# 2 ranks x accumulation 4 (the same global batch of 8 rows, the same steps), through
# `lora4j train --nproc 2`. Prints and writes bench/results/dp-scaling-<date>.md: the median time
# per optimizer step of each (over REPEATS runs), the tokens/s ratio (2 ranks / 1 rank; the
# ceiling is 2.0), and rank 0's time per step inside the collectives (waiting for the slower rank
# included). Needs Open MPI (openmpi-bin libopenmpi-dev) and a built tree (mvn -DskipTests package).
#   STEPS=6 REPEATS=3 bash bench/dist/dp_scaling.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS="${STEPS:-6}"; REPEATS="${REPEATS:-3}"
model="${LORA4J_CACHE:-$HOME/.cache/lora4j}/stories15M.bin"
[ -f "$model" ] || { echo "missing $model (bash scripts/fetch-assets.sh)"; exit 1; }
command -v mpirun >/dev/null || { echo "mpirun missing: apt-get install openmpi-bin libopenmpi-dev"; exit 1; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
# 64 rows of 48..64 tokens, every label trained
python3 - "$work/rows.jsonl" <<'PY'
import json, random, sys
r = random.Random(18)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        n = r.randint(48, 64)
        f.write(json.dumps({"input_ids": [1] + [r.randint(3, 4000) for _ in range(n - 1)]}) + "\n")
PY
cat > "$work/run.yaml" <<YAML
model: $model
dataset: $work/rows.jsonl
eval_split: 0
device: cpu
r: 16
lora_alpha: 32
max_steps: $STEPS
per_device_train_batch_size: 1
learning_rate: 1e-4
warmup_steps: 0
max_seq_length: 64
logging_steps: 1
YAML
cp="target/classes:$(ls target/lib/*.jar | tr '\n' ':')"
export OPENBLAS_NUM_THREADS=1 LORA4J_MPIRUN_ARGS="${LORA4J_MPIRUN_ARGS:---oversubscribe}"
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run() { # $1 = nproc, $2 = accumulation, $3 = out; prints the run's log
  local np=()
  [ "$1" -gt 1 ] && np=(--nproc "$1")
  java -Xmx1g -cp "$cp" io.lora4j.cli.Main train --config "$work/run.yaml" --out "$3" --overwrite --threads 1 \
    --gradient_accumulation_steps "$2" "${np[@]}" 2>&1
}
for i in $(seq "$REPEATS"); do
  run 1 8 "$work/one" > "$work/one-$i.log"
  run 2 4 "$work/two" > "$work/two-$i.log"
  cp "$work/one/metrics.jsonl" "$work/one-$i.jsonl"; cp "$work/two/metrics.jsonl" "$work/two-$i.jsonl"
done
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
out="bench/results/dp-scaling-$(date +%Y-%m-%d).md"
python3 - "$work" "$REPEATS" "$STEPS" "$cpu" > "$out" <<'PY'
import json, re, statistics, sys
work, reps, steps, cpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def per_step(kind):
    out = []
    for i in range(1, reps + 1):
        rows = [json.loads(l) for l in open(f"{work}/{kind}-{i}.jsonl")]
        fin = [r for r in rows if "train_runtime_seconds" in r][0]
        out.append(fin["train_runtime_seconds"] / fin["steps"])
    return out
one, two = per_step("one"), per_step("two")
coll = []
for i in range(1, reps + 1):
    m = re.search(r"spent ([0-9.]+) s in (\d+) collectives, ([0-9.]+) ms per step", open(f"{work}/two-{i}.log").read())
    coll.append(float(m.group(3)))
med = statistics.median
print(f"# Data-parallel scaling, stories15M, 1 thread per rank\n")
print(f"CPU: {cpu}. {steps} optimizer steps of a global batch of 8 rows (48..64 tokens, r 16), {reps} runs each; times are")
print("train_runtime_seconds / steps (eval off), medians with [min, max].\n")
print("| run | s per step | tokens/s ratio to 1 rank |")
print("|---|---|---|")
print(f"| 1 rank x accumulation 8 | {med(one):.3f} [{min(one):.3f}, {max(one):.3f}] | 1.00 |")
print(f"| 2 ranks x accumulation 4 (mpirun, loopback) | {med(two):.3f} [{min(two):.3f}, {max(two):.3f}] | {med(one)/med(two):.2f} (ceiling 2.00) |")
print(f"\nRank 0's time in collectives per step (the 8-byte count, the fp64 gradient+loss all-reduce, waiting for rank 1 included): "
      f"{med(coll):.2f} ms median [{min(coll):.2f}, {max(coll):.2f}], {100*med(coll)/1e3/med(two):.1f} % of a step.")
PY
cat "$out"
