#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME (default 30s) each. The
# targets are found with `go test -list`, so a new one is picked up without
# editing this file. Their seed corpora (f.Add and testdata/fuzz) already
# run in the plain test run; this looks for new failures. A failure leaves
# the input in the package's testdata/fuzz/<Target>/ directory: commit it
# with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-30s}"
n=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  grep -qs '^func Fuzz' "$dir"/*_test.go || continue
  for name in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "-- $name ($pkg, $fuzztime)"
    go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
    n=$((n + 1))
  done
done
echo "$n fuzz targets ran for $fuzztime each"
