#!/usr/bin/env bash
# The soak, two minutes of it (docs/soak.md): three real `pipeline run`
# processes in one consumer group on the broker of setup-kafka.sh, killed
# (SIGKILL and SIGTERM) and restarted every few seconds, a farm proxy
# killed and revived, a domain moving between 200, 429 and timeouts, the
# sink slowed by a broker produce quota. It fails (exit 1) when an input
# produced has no result, error result or dead letter, when duplicates
# pass their bound, when a member crashes, or when the goroutines or open
# fds of the member that runs throughout grow past their bounds over the
# second minute. About 3 to 4 minutes in all.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SLUICE_KAFKA_BROKERS:-}" ]; then
  CI_PIDS=()
  trap 'for pid in "${CI_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done' EXIT
  # shellcheck disable=SC1091
  source .ci/setup-kafka.sh
fi
go build -o "${TMPDIR:-/tmp}/sluice-soak-pipeline" ./cmd/pipeline
"${TMPDIR:-/tmp}/sluice-soak-pipeline" soak --duration 2m --sample 5s --churn 8s --drain 3m
