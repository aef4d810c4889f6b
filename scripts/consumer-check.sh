#!/usr/bin/env bash
# Installs lora4j into the local Maven repository and runs examples/consumer, a project that
# depends only on io.lora4j:lora4j:
#  1. it loads the native kernels from the jar and quantizes/multiplies a weight with NF4;
#  2. it trains STEPS steps of QLoRA (stories15M, the capitals chat set, response-only, batch 4)
#     from plain Java, with no environment variable set, and `./lora4j train` runs the same
#     settings in the same invocation. The jar must train at >= 1/1.5 of the CLI's speed: the
#     median tokens_per_second of their metrics.jsonl rows (first step left out, it warms up).
# Usage: scripts/consumer-check.sh [STEPS]   (default 8; needs scripts/fetch-assets.sh's assets)
#   LORA4J_MVN_ARGS  extra Maven arguments for the install, e.g. -Dlora4j.cuda=OFF
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
steps="${1:-8}"
max_ratio=1.5
# shellcheck disable=SC2086
mvn -B -q -DskipTests ${LORA4J_MVN_ARGS:-} install
bash scripts/fetch-assets.sh >/dev/null
cache="${LORA4J_CACHE:-$HOME/.cache/lora4j}"
model="$cache/stories15M.bin" tok="$cache/tokenizer.bin"

cd examples/consumer
mvn -B -q package
cp="target/consumer-1.0.jar:target/lib/*"
java -cp "$cp" example.Consumer

work="$(mktemp -d "${TMPDIR:-/tmp}/lora4j-consumer.XXXXXX")"
trap 'rm -rf "$work"' EXIT
data="$(java -cp "$cp" example.Consumer dataset "$work/data")"
# A JVM application as a user writes it: none of the launcher's environment.
env -u OMP_WAIT_POLICY -u OMP_NUM_THREADS -u LORA4J_NUM_THREADS \
  java -cp "$cp" example.Consumer train "$model" "$tok" "$data" "$work/jar" "$steps"
# shellcheck disable=SC2046
"$root/lora4j" train $(java -cp "$cp" example.Consumer cli-args "$model" "$tok" "$data" "$steps") \
  --out "$work/cli" --overwrite 2>/dev/null

python3 - "$work/jar/metrics.jsonl" "$work/cli/metrics.jsonl" "$max_ratio" <<'PY'
import json, statistics, sys
def speeds(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    v = [r["tokens_per_second"] for r in rows if "tokens_per_second" in r and "loss" in r][1:]
    if not v:
        sys.exit(f"{path}: no logged steps with tokens_per_second")
    return v
jar, cli, limit = speeds(sys.argv[1]), speeds(sys.argv[2]), float(sys.argv[3])
mj, mc = statistics.median(jar), statistics.median(cli)
ratio = mc / mj
print(f"tokens/s, median (min-max) of {len(jar)} steps: jar {mj:.0f} ({min(jar):.0f}-{max(jar):.0f}), "
      f"CLI {mc:.0f} ({min(cli):.0f}-{max(cli):.0f}); CLI/jar = {ratio:.2f} (limit {limit})")
if ratio > limit:
    sys.exit(f"consumer check FAILED: the jar trains {ratio:.2f}x slower than the CLI")
print("consumer check ok")
PY
