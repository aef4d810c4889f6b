#!/usr/bin/env bash
# The Java half of the GPU check (DESIGN.md §7): the GPU machine has CUDA, CMake and PyTorch
# (+ transformers, peft) but no Java and no network, so the Java side travels prepared.
#
#   bash scripts/device-check-java.sh prepare   here (JDK 17, Maven): writes target/device-java/ (a jlink
#                                               runtime + the jars + the Java GPU tests, 55 MiB) and
#                                               target/device-java.tgz (36 MiB: carry this one)
#   bash scripts/device-check-java.sh run       on the GPU machine, from the repository root (the last
#                                               line of scripts/device-check.sh); unpacks the .tgz
#
# run: (1) the JUnit suites of tests/io/lora4j/emu (every op on CUDA vs the CPU, memory by category,
# the offload stream, chunked cross-entropy, training steps of a tiny model, LoRA and QLoRA, equal to
# the CPU) on the real GPU, (2) `lora4j train --device cuda` and `--device cpu` for 8 steps of a tiny
# llama2.c model (io.lora4j.train.TinyRun), (3) our seeded LoRA adapter for
# tests/resources/model/synthetic-gqa-untied, loaded by PEFT onto the HF model of the same weights,
# logits compared with ours on cpu and cuda (scripts/reference/peft_logits_check.py), (4) issue 15's
# training step of an 8B-shaped stack against PyTorch + PEFT (train_step below; alone:
# `bash scripts/device-check-java.sh train-step`). A short table last.
#
# The jars run on the library that device-check.sh just built for sm_90 ($BUILD/liblora4j.so, given to
# the JVM as LORA4J_NATIVE: it stands in for the CPU-only library inside the jar). OpenBLAS (the
# JavaCPP preset jar, 19 MiB) is left out to stay under the device tool's 64 MiB: the CPU side then
# uses lora4j's builtin sgemm (slower, same results within the tests' tolerances). stories15M is not
# carried (58 MiB): its end-to-end tests skip there, saying so.
#
# Environment: OUT (default ./device-out), LORA4J_DEVICE_BUILD (default ./build-device),
# LORA4J_DEVICE_LIB (default $LORA4J_DEVICE_BUILD/liblora4j.so; the emulated library works too, for
# trying the script without a GPU), DEVICE_JAVA (default ./target/device-java), JUNIT_SELECT (default
# "--select-package io.lora4j.emu": JUnit console selectors, e.g. one --select-class for a quick try),
# PYTHON (default python3), JAVA (default the carried jlink runtime); train-step: BENCH_LAYERS, BENCH_SEQ,
# BENCH_BATCH, BENCH_STEPS, BENCH_DEVICE (default cuda), BENCH_CP (default the carried jars) and BENCH_TINY
# (--tiny: tiny shapes, lora4j on BENCH_DEVICE and the peer on the CPU, for trying it without a GPU, e.g. after
# `mvn -B -DskipTests -Dlora4j.emu.skip=false package`, on the emulated library:
#   BENCH_TINY=--tiny BENCH_SEQ=64 JAVA=java PYTHON=/usr/bin/python3 LORA4J_DEVICE_LIB=target/native-emu/liblora4j.so \
#     BENCH_CP="target/test-classes:target/classes:$(ls target/lib/*.jar | tr '\n' :)" bash scripts/device-check-java.sh train-step).
set -u -o pipefail

ROOT="$(pwd)"
DJ="${DEVICE_JAVA:-$ROOT/target/device-java}"
JUNIT_VERSION=1.14.1  # the JUnit Platform of junit-jupiter 5.14.1 (pom.xml)
JUNIT_JAR="junit-platform-console-standalone-$JUNIT_VERSION.jar"

prepare() {
  set -e
  command -v jlink >/dev/null || { echo "prepare needs a JDK 17 with jlink" >&2; exit 1; }
  # the jar and the test classes as the sources are now (CPU-only library: the device builds its own)
  (cd "$ROOT" && mvn -B -q -DskipTests -Dlora4j.cuda=OFF package)
  local m2="${HOME}/.m2/repository/org/junit/platform/junit-platform-console-standalone/$JUNIT_VERSION/$JUNIT_JAR"
  [ -f "$m2" ] || (cd "$ROOT" && mvn -B -q dependency:get -Dartifact="org.junit.platform:junit-platform-console-standalone:$JUNIT_VERSION")
  rm -rf "$DJ"
  mkdir -p "$DJ/lib" "$DJ/test-classes/io/lora4j/train" "$DJ/test-classes/io/lora4j/model"
  # java.desktop: `lora4j train` does not start without it (NoClassDefFoundError java/awt/Paint, although
  # the README promises a warning instead of charts). java.management: JUnit's console launcher;
  # java.sql: gson; jdk.zipfs: jar file systems.
  jlink --add-modules java.base,java.desktop,java.logging,java.management,java.sql,jdk.unsupported,jdk.zipfs \
    --strip-debug --no-man-pages --no-header-files --compress=2 --output "$DJ/jre"
  cp "$ROOT"/target/lora4j-*.jar "$DJ/lib/"
  for j in "$ROOT"/target/lib/*.jar; do
    case "$(basename "$j")" in openblas-*) ;; *) cp "$j" "$DJ/lib/" ;; esac
  done
  cp "$m2" "$DJ/"
  cp -r "$ROOT/target/test-classes/io/lora4j/emu" "$DJ/test-classes/io/lora4j/"
  cp "$ROOT"/target/test-classes/io/lora4j/train/TinyRun*.class "$DJ/test-classes/io/lora4j/train/"
  cp "$ROOT"/target/test-classes/io/lora4j/model/TestModels*.class "$DJ/test-classes/io/lora4j/model/"
  cp "$ROOT/target/test-classes/junit-platform.properties" "$DJ/test-classes/"
  tar czf "$DJ.tgz" -C "$(dirname "$DJ")" "$(basename "$DJ")"
  echo "device-java: $(du -sh "$DJ" | cut -f1) in $DJ (jlink runtime $(du -sh "$DJ/jre" | cut -f1)), $(du -sh "$DJ.tgz" | cut -f1) packed: carry ${DJ#$ROOT/}.tgz"
}

run() {
  local OUT="${OUT:-$ROOT/device-out}" BUILD="${LORA4J_DEVICE_BUILD:-$ROOT/build-device}"
  local LIB="${LORA4J_DEVICE_LIB:-$BUILD/liblora4j.so}" J="$DJ/jre/bin/java" status=0
  mkdir -p "$OUT"
  [ -x "$J" ] || [ ! -f "$DJ.tgz" ] || tar xzf "$DJ.tgz" -C "$(dirname "$DJ")"
  if [ ! -x "$J" ]; then
    echo "java on the device: skipped (no $DJ: run 'bash scripts/device-check-java.sh prepare' here and carry target/device-java.tgz)"
    return 0
  fi
  [ -f "$LIB" ] || cmake --build "$BUILD" --target lora4j -j "$(nproc)" > "$OUT/java-lib-build.log" 2>&1
  export LORA4J_NATIVE="$LIB" LORA4J_REQUIRE_CUDA=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
  local CP="$DJ/test-classes:$(ls "$DJ"/lib/*.jar | tr '\n' ':')"
  local t

  t=$(date +%s)
  timeout 420 "$J" -Xmx8g -Djava.awt.headless=true -jar "$DJ/$JUNIT_JAR" execute --class-path "$CP" \
    ${JUNIT_SELECT:---select-package io.lora4j.emu} --disable-banner --details=summary --reports-dir "$OUT/java-junit" \
    > "$OUT/java-junit.log" 2>&1 || status=1
  local junit_s=$(( $(date +%s) - t ))

  local tiny="$OUT/java-tiny" train_ok=1
  rm -rf "$tiny" && mkdir -p "$tiny"
  local yaml; yaml="$("$J" -cp "$CP" io.lora4j.emu.DeviceCheckMain tiny-run "$tiny/data" 2>>"$OUT/java-train.log")" || train_ok=0
  for dev in cuda cpu; do
    [ $train_ok = 1 ] || break
    t=$(date +%s)
    timeout 180 "$J" -cp "$CP" io.lora4j.cli.Main train --config "$yaml" --out "$tiny/$dev" --device "$dev" \
      --max_steps 8 --save_steps 0 --eval_steps 0 >> "$OUT/java-train.log" 2>&1 || train_ok=0
    echo "train $dev: $(( $(date +%s) - t )) s" >> "$OUT/java-train.log"
  done
  [ $train_ok = 1 ] || status=1

  local peft="$OUT/java-peft" peft_ok=1
  rm -rf "$peft"
  for dev in cpu cuda; do
    timeout 120 "$J" -cp "$CP" io.lora4j.emu.DeviceCheckMain adapter-logits \
      "$ROOT/tests/resources/model/synthetic-gqa-untied" "$peft" "$dev" >> "$OUT/java-peft.log" 2>&1 || peft_ok=0
  done
  timeout 300 "${PYTHON:-python3}" "$ROOT/scripts/reference/peft_logits_check.py" "$ROOT/tests/resources/model/synthetic-gqa-untied" "$peft" \
    >> "$OUT/java-peft.log" 2>&1 || peft_ok=0
  [ $peft_ok = 1 ] || status=1

  train_step || status=1

  {
    echo
    echo "== lora4j Java on the device ($LIB)"
    echo "-- JUnit tests/io/lora4j/emu on CUDA ($junit_s s) --"
    grep -E "tests (successful|failed|skipped|aborted)" "$OUT/java-junit.log" | sed 's/^ *\[ */  /; s/ *\]$//'
    grep -E "^  (JUnit Jupiter|MethodSource|=>)" "$OUT/java-junit.log" | head -n 20
    echo "-- lora4j train, tiny llama2.c model, 8 steps: loss per step --"
    for dev in cuda cpu; do
      [ -f "$tiny/$dev/metrics.jsonl" ] || { echo "  $dev: no metrics (see $OUT/java-train.log)"; continue; }
      printf '  %-4s %s\n' "$dev" "$(grep -o '"loss":[^,]*' "$tiny/$dev/metrics.jsonl" | cut -d: -f2 | head -n 8 | cut -c1-7 | tr '\n' ' ')"
    done
    grep -h "backend" "$OUT/java-train.log" | head -n 2 | sed 's/^/  /'
    grep -h "^mixed precision" "$OUT/java-train.log" | head -n 1 | sed 's/^/  cuda: /'
    echo "-- PEFT loads our adapter (scripts/reference/peft_logits_check.py) --"
    sed -n '/^== PEFT/,$p' "$OUT/java-peft.log" | sed 's/^/  /'
    grep -h "^problem\|not importable" "$OUT/java-peft.log" | sed 's/^/  /'
    train_step_table
    echo "java result: $([ $status -eq 0 ] && echo PASS || echo FAIL)  (logs: $OUT/java-*.log)"
  } | tee "$OUT/java-table.txt"
  return $status
}

# Issue 15's training-step benchmark: lora4j QLoRA and LoRA (tests/io/lora4j/emu/TrainStepBench.java) against
# PyTorch + PEFT bf16 LoRA (scripts/reference/peft_train_step_peer.py), the same Llama-3.1-8B-shaped stack of
# BENCH_LAYERS layers (default 4 of the 32, to fit the device budget; the full model's embedding and lm_head
# are kept, so the head's share of a step is about 8x the full model's), seq BENCH_SEQ (2048) x BENCH_BATCH (2),
# random weights made in each process (no checkpoint file), BENCH_STEPS (5) timed steps after 2 warm-up steps.
# lora4j uses its default unsloth checkpointing, the peer HF's gradient checkpointing. One JSON line each in
# $OUT/train-step-*.json. About 3 minutes on an H200 (most of it making 2.6e9 random weights on the host, twice,
# and importing torch).
train_step() {
  local OUT="${OUT:-$ROOT/device-out}" BUILD="${LORA4J_DEVICE_BUILD:-$ROOT/build-device}"
  local LIB="${LORA4J_DEVICE_LIB:-$BUILD/liblora4j.so}" J="${JAVA:-$DJ/jre/bin/java}" ok=0
  local CFG="$ROOT/examples/configs/Llama-3.1-8B.json" L="${BENCH_LAYERS:-4}" S="${BENCH_SEQ:-2048}" B="${BENCH_BATCH:-2}"
  local N="${BENCH_STEPS:-5}" DEV="${BENCH_DEVICE:-cuda}" TINY="${BENCH_TINY:-}"
  mkdir -p "$OUT"
  [ -x "$DJ/jre/bin/java" ] || [ ! -f "$DJ.tgz" ] || tar xzf "$DJ.tgz" -C "$(dirname "$DJ")"
  local CP="${BENCH_CP:-$DJ/test-classes:$(ls "$DJ"/lib/*.jar 2>/dev/null | tr '\n' ':')}"
  : > "$OUT/train-step.log"
  for mode in qlora lora; do
    # the host fp32 weights (7.7 GB for 4 layers) are JavaCPP memory, which is capped at -Xmx unless told otherwise
    LORA4J_NATIVE="$LIB" timeout 240 "$J" -Xmx4g -Dorg.bytedeco.javacpp.maxBytes=0 -Dorg.bytedeco.javacpp.maxPhysicalBytes=0 \
      -cp "$CP" io.lora4j.emu.TrainStepBench "$CFG" "$mode" "$L" "$S" "$B" "$N" "$DEV" \
      unsloth $TINY > "$OUT/train-step-lora4j-$mode.json" 2>> "$OUT/train-step.log" || ok=1
  done
  local peer_args=(--config "$CFG" --layers "$L" --seq "$S" --batch "$B" --steps "$N")
  [ -n "$TINY" ] && peer_args+=(--tiny --cpu)  # tiny: trying the script; the peer on the CPU
  timeout 240 "${PYTHON:-python3}" "$ROOT/scripts/reference/peft_train_step_peer.py" "${peer_args[@]}" \
    > "$OUT/train-step-peft.json" 2>> "$OUT/train-step.log" || ok=1
  [ $ok = 0 ] || tail -n 20 "$OUT/train-step.log" >&2
  return $ok
}

# The table rows of the training-step benchmark (ratios to the peer measured in the same run).
train_step_table() {
  local OUT="${OUT:-$ROOT/device-out}"
  echo "-- training step, Llama-3.1-8B-shaped stack, random weights (issue 15: QLoRA >= 1.5x tokens/s at <= 0.6x peak; LoRA >= 1.2x) --"
  "${PYTHON:-python3}" - "$OUT" <<'EOF' || echo "  (no figures: see $OUT/train-step.log)"
import json, sys
out = sys.argv[1]
def load(n):
    try:
        with open(f"{out}/train-step-{n}.json") as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None
p = load("peft")
if p:
    print(f"  shape: {p['layers']} layers, hidden {p['hidden']}, vocab {p['vocab']}, seq {p['seq']} x batch {p['batch']}"
          + (" (TINY: trying the script, not figures)" if p["tiny"] else ""))
    print(f"  peft  bf16 LoRA  {p['tokens_per_second']:10.0f} tok/s  peak {p['peak_bytes'] / 1e9:7.3f} GB  ({p['peer']}; checkpointing {p['checkpointing']})")
else:
    print("  peft: no result")
for mode, goal in (("qlora", "goal >= 1.5x at <= 0.6x"), ("lora", "goal >= 1.2x")):
    m = load(f"lora4j-{mode}")
    if not m:
        print(f"  lora4j {mode}: no result")
        continue
    ratio = f"{m['tokens_per_second'] / p['tokens_per_second']:.2f}x tokens/s" if p else "no peer"
    mem = f", {m['peak_bytes'] / p['peak_bytes']:.2f}x peak" if p and p["peak_bytes"] > 0 else ""
    print(f"  lora4j {mode:5s}    {m['tokens_per_second']:10.0f} tok/s  peak {m['peak_bytes'] / 1e9:7.3f} GB  -> {ratio}{mem} ({goal}; "
          f"{m['backend']}, {m['checkpointing']}, bf16 {m['bf16']}, loss {m['first_loss']:.3f} -> {m['last_loss']:.3f})")
EOF
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  train-step) train_step; train_step_table ;;
  *) echo "usage: bash scripts/device-check-java.sh prepare|run|train-step" >&2; exit 2 ;;
esac
