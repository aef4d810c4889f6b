#!/usr/bin/env bash
# Installs lora4j into the local Maven repository and runs examples/consumer, a project that
# depends only on io.lora4j:lora4j: it must load the native kernels from the jar and quantize.
set -euo pipefail
cd "$(dirname "$0")/.."
mvn -B -q -DskipTests install
cd examples/consumer
mvn -B -q package
java -cp "target/consumer-1.0.jar:target/lib/*" example.Consumer
