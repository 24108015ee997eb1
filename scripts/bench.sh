#!/usr/bin/env bash
# Go benchmarks of every module (hot paths). The whole-pipeline report
# (ingest → rules → alerts, one JSON object) is printed by `churnwatch bench`
# when built; see docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
for m in proto/gen/go services/platform services/ingester services/rules services/alerts services/churnctl; do
	(cd "$m" && go test -run='^$' -bench=. -benchmem -benchtime=${BENCHTIME:-1s} ./... 2>&1 | grep -E '^(Benchmark|ok|FAIL|---)' || true)
done
