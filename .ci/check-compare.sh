#!/usr/bin/env bash
# The side-by-side comparison (bench/compare: sluice vs Colly vs a bare
# net/http floor on the local testbed), short: 1,000 URLs at c=50 and 200,
# plus the Kafka end-to-end run when SLUICE_KAFKA_BROKERS is set. It prints
# the table and fails only when a peer crashes or writes a wrong, missing
# or duplicated record; rates are reported, never asserted (speed is a
# measurement on a shared machine, not a pass/fail line). bench/compare is
# a module of its own, so the root's go vet and go test do not reach it:
# they run here. About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/../bench/compare"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then echo "gofmt would change:"; echo "$unformatted"; exit 1; fi
go vet ./...
go test -race -count=1 ./...
go run . -n 1000 -c 50,200 -profiles ""
