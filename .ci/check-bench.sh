#!/usr/bin/env bash
# The fetch governor's measurement: 5,000 pages through 20 local proxies
# against a site that allows 180 requests per client IP per minute (60
# pages/s in all). It fails when a page is missing or wrong or when more
# than 1% of requests are answered 429; the achieved rate is reported, not
# asserted (--min-share 0): speed is a measurement on a shared 2-core
# machine, not a pass/fail line. It takes about 90 s.
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./cmd/pipeline bench --min-share 0
