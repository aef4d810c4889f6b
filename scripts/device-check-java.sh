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
# logits compared with ours on cpu and cuda (scripts/reference/peft_logits_check.py). A short table last.
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
# PYTHON (default python3).
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
    echo "java result: $([ $status -eq 0 ] && echo PASS || echo FAIL)  (logs: $OUT/java-*.log)"
  } | tee "$OUT/java-table.txt"
  return $status
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash scripts/device-check-java.sh prepare|run" >&2; exit 2 ;;
esac
