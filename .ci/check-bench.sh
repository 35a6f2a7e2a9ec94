#!/usr/bin/env bash
# The fetch governor's measurement: 5,000 pages through 20 local proxies
# against a site that allows 180 requests per client IP per minute (60
# pages/s in all). `pipeline bench` fails when a page is missing or wrong,
# when more than 1% of requests are answered 429, or when the rate falls
# below 85% of the allowed one. It takes about 90 s.
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./cmd/pipeline bench
