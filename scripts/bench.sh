#!/usr/bin/env bash
# Runs the JMH benchmarks (bench/) on one thread and prints each result as a ratio to the
# ceiling or peer measured in the same run. Usage: scripts/bench.sh [JMH regex] [extra JMH args]
#   scripts/bench.sh Nf4Bench          # NF4 kernels
# Results: bench/results/jmh-<date>-<name>.json and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
pattern="${1:-.*}"; shift || true
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
mvn -B -q -DskipTests test-compile
cp_file=target/bench.classpath
mvn -B -q dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$cp_file"
out="bench/results/jmh-$(date +%Y-%m-%d)-$(echo "$pattern" | tr -c 'A-Za-z0-9' '_' | head -c 40).json"
java -cp "target/test-classes:target/classes:$(cat "$cp_file")" org.openjdk.jmh.Main "$pattern" \
  -rf json -rff "$out" "$@"
# The PyTorch peer: Debian's python3-torch is built against the generic libblas.so.3; install
# libopenblas0-pthread so that it resolves to OpenBLAS, and pin the AVX2 kernels (Debian's OpenBLAS
# 0.3.21 does not recognise newer Xeons and falls back to its Prescott/SSE3 kernels: 2-20 GFLOP/s
# instead of ~60). Both sides then run AVX2+FMA sgemm on one thread.
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}"
peer=""
if [[ "$pattern" == *Inference* ]] && /usr/bin/python3 -c "import torch" 2>/dev/null; then
  # The PyTorch peer, same model, prompt and token counts, one thread, in the same invocation.
  peer="${out%.json}-torch.json"
  /usr/bin/python3 scripts/reference/torch_peer.py --out "$peer" >/dev/null
fi
python3 scripts/bench_report.py "$out" $peer
