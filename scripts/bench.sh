#!/usr/bin/env bash
# make bench: first the whole-pipeline report — `churnwatch bench` runs the
# broker in its own process and a real redis-server, streams a simulated
# bank through ingest → rules → alerts and prints one JSON object (saved to
# bench.json) — then the Go benchmarks of the hot paths of every module.
# See docs/performance.md. BENCH_KAFKA=real runs the report on a three-node
# Apache Kafka cluster (scripts/kafka.sh, started and stopped by the bench)
# instead of the embedded broker; BENCH_ARGS passes flags to churnwatch
# bench; BENCHTIME sets -benchtime for the Go benchmarks (default 1s).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/churnwatch ./services/churnctl/cmd/churnwatch
args="--kafka ${BENCH_KAFKA:-embedded} ${BENCH_ARGS:-}"
echo "== pipeline report (churnwatch bench $args)" >&2
# shellcheck disable=SC2086 # word splitting of the flags is intended
bin/churnwatch bench $args | tee bench.json
echo "== Go benchmarks" >&2
for m in services/platform services/ingester services/rules services/alerts services/churnctl; do
	(cd "$m" && go test -run='^$' -bench=. -benchmem -benchtime="${BENCHTIME:-1s}" ./... 2>&1 | grep -E '^(Benchmark|FAIL|---)' || true)
done
