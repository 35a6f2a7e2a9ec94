#!/usr/bin/env bash
# Runs the Kafka tests again against Apache Kafka 4.1.1 (kafka-go works with
# both 3.9 and 4.1; the main test run uses 3.9.1 from setup-kafka.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
CI_PIDS=()
trap 'for pid in "${CI_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done' EXIT
export SLUICE_KAFKA_VERSION=4.1.1
unset SLUICE_KAFKA_BROKERS
# shellcheck disable=SC1091
source .ci/setup-kafka.sh
go test -count=1 -run 'Kafka' ./stages/source/ ./stages/sink/ ./app/ ./kafka/
