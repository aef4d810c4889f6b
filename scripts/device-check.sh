#!/usr/bin/env bash
# lora4j GPU check (DESIGN.md §7): run from the repository root on a CUDA machine (CUDA 13,
# CMake, optionally PyTorch; no Java, no network needed).
#
#   bash scripts/device-check.sh            logs and the table go to $OUT (default ./device-out)
#
# Builds liblora4j + lora4j_harness for sm_90 only, runs the CUDA-vs-CPU parity harness and the
# kernel timings, measures PyTorch's (cuBLAS) bf16 matmul in the same run as the dense ceiling
# when torch is importable, and prints a short table last. Exit status: non-zero when the build
# or a parity check failed. Budget: ~5 minutes (the build is most of it).
set -u -o pipefail

ROOT="$(pwd)"
OUT="${OUT:-$ROOT/device-out}"
BUILD="${LORA4J_DEVICE_BUILD:-$ROOT/build-device}"
mkdir -p "$OUT"
JOBS="$(nproc 2>/dev/null || echo 4)"
status=0

log() { printf '%s\n' "$*" | tee -a "$OUT/summary.log"; }
: > "$OUT/summary.log"

log "== lora4j device check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader \
    > "$OUT/gpu.txt" 2>&1 || true
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
fi
GPU="$(head -n1 "$OUT/gpu.txt" 2>/dev/null || echo unknown)"
log "gpu: $GPU"
log "nvcc: $( (nvcc --version 2>/dev/null || /usr/local/cuda/bin/nvcc --version 2>/dev/null) | tail -n1)"

# ---- build (sm_90 only) ----
t0=$(date +%s)
if cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLORA4J_CUDA=ON \
     -DLORA4J_CUDA_ARCHS=90 -DLORA4J_TESTS=ON > "$OUT/cmake-configure.log" 2>&1 &&
   cmake --build "$BUILD" -j "$JOBS" --target lora4j_harness lora4j_ops_harness > "$OUT/cmake-build.log" 2>&1; then
  log "build: ok ($(( $(date +%s) - t0 )) s)"
else
  log "build: FAILED (see $OUT/cmake-configure.log, $OUT/cmake-build.log)"
  tail -n 40 "$OUT/cmake-build.log" 2>/dev/null || tail -n 40 "$OUT/cmake-configure.log"
  exit 1
fi
H="$BUILD/lora4j_harness"
export LORA4J_REQUIRE_CUDA=1

# ---- parity: CPU ops vs reference, golden vectors, CUDA vs CPU ----
run() {  # name, timeout seconds, command...
  local name="$1" to="$2"; shift 2
  local t=$(date +%s)
  timeout "$to" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  log "$name: rc=$rc ($(( $(date +%s) - t )) s) -> $OUT/$name.log"
  return $rc
}
run harness-test 120 "$H" test || status=1
if [ -f "$ROOT/tests/resources/nf4/nf4_golden.txt" ]; then
  run harness-golden 60 "$H" golden "$ROOT/tests/resources/nf4/nf4_golden.txt" || status=1
fi
run harness-cuda 180 "$H" cuda || status=1
run harness-perf-cuda 180 "$H" perf cuda || status=1
# Transformer ops (RMSNorm, RoPE, flash attention, SwiGLU, CE incl. the vocabulary-chunked
# lora4j_ce_chunk_* ops, fused LoRA, AdamW): CPU vs double reference, then CUDA vs CPU, plus the
# asynchronous offload round trip (side stream, events, pinned host buffer) of unsloth checkpointing.
OH="$BUILD/lora4j_ops_harness"
run ops-test 120 "$OH" test || status=1
run ops-cuda 180 "$OH" cuda || status=1
run ops-perf 180 "$OH" perf || status=1

# ---- dense bf16 ceiling from PyTorch (cuBLAS), same shapes, same run ----
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" > /dev/null 2>&1; then
  timeout 120 python3 - > "$OUT/torch-ceiling.log" 2>&1 <<'EOF' || true
import torch
torch.backends.cuda.matmul.allow_tf32 = False
dev = "cuda"
def bench(f, reps=10):
    f(); torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = 1e30
    for _ in range(reps):
        s.record(); f(); e.record(); torch.cuda.synchronize()
        best = min(best, s.elapsed_time(e) / 1e3)
    return best
T = 4096
for (i, o) in [(4096, 14336), (14336, 4096)]:
    x = torch.randn(T, i, device=dev, dtype=torch.bfloat16)
    w = torch.randn(o, i, device=dev, dtype=torch.bfloat16)
    t = bench(lambda: x @ w.t())
    print(f"torch bf16 matmul T={T} {i}->{o}: {2*T*i*o/t/1e12:.1f} TFLOP/s")
src = torch.empty(1 << 28, device=dev, dtype=torch.float32); dst = torch.empty_like(src)
t = bench(lambda: dst.copy_(src))
print(f"torch D2D copy 1 GiB: {2*src.numel()*4/t/1e9:.0f} GB/s")
EOF
else
  echo "PyTorch with CUDA not importable: no cuBLAS ceiling this run" > "$OUT/torch-ceiling.log"
fi

# ---- the short table, last ----
{
  echo
  echo "== lora4j device check: $GPU"
  grep -h "^lora4j_harness cuda:" "$OUT/harness-cuda.log" 2>/dev/null | head -n1
  echo "-- parity (CUDA vs CPU twin; CPU vs reference; golden) --"
  for f in harness-test harness-golden harness-cuda; do
    [ -f "$OUT/$f.log" ] || continue
    grep -h "^== " "$OUT/$f.log" | sed "s/^/$f: /"
  done
  [ -f "$OUT/ops-test.log" ] && grep -h -E "^(PASSED|FAILED)" "$OUT/ops-test.log" | sed "s/^/ops-test: /"
  [ -f "$OUT/ops-cuda.log" ] && grep -h -E "^(PASSED|FAILED)" "$OUT/ops-cuda.log" | sed "s/^/ops-cuda: /"
  grep -h -E "^ +(ok|FAIL) +(ce vocab chunks|offload)" "$OUT/ops-cuda.log" 2>/dev/null | sed 's/^ */  /'
  grep -h -E "^ +FAIL" "$OUT/ops-test.log" 2>/dev/null | head -n 20
  grep -h -E "^  FAIL" "$OUT/ops-cuda.log" 2>/dev/null | head -n 20
  grep -h "^FAIL " "$OUT/harness-cuda.log" "$OUT/harness-test.log" "$OUT/harness-golden.log" 2>/dev/null | head -n 20
  grep -h -E "^(ok|FAIL) +cuda (matmul_fwd|matmul_bwd_input|bf16_matmul_fwd) T=300 in=1024" "$OUT/harness-cuda.log" 2>/dev/null
  grep -h "^SKIP" "$OUT/harness-cuda.log" 2>/dev/null
  echo "-- performance (ratios to ceilings measured in this run) --"
  grep -h "^\(ok\|FAIL\) *perf" "$OUT/harness-perf-cuda.log" 2>/dev/null | sed 's/^\(ok\|FAIL\) */  /'
  sed 's/^/  /' "$OUT/torch-ceiling.log" 2>/dev/null
  echo "result: $([ $status -eq 0 ] && echo PASS || echo FAIL)  (logs in $OUT)"
} | tee "$OUT/table.txt"
bash "$ROOT/scripts/device-check-java.sh" run || status=1  # Java GPU tests, train steps, PEFT logits; carry target/device-java.tgz
exit $status
