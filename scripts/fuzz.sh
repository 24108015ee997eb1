#!/usr/bin/env bash
# Runs every Fuzz* target of the repository for a short budget: decoders of
# outside input must never panic. Usage: scripts/fuzz.sh [BUDGET]
# BUDGET is an execution count such as 30000x (the default). A duration
# (5s) works too, but go1.26 can then fail a target with a bare "context
# deadline exceeded" as the time runs out (golang/go#75804, fixed in 1.27),
# so CI uses a count, which has no deadline to race.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-30000x}
found=0
while IFS= read -r file; do
	dir=$(dirname "$file")
	for fn in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
		found=$((found + 1))
		echo "== fuzz $dir $fn ($t)"
		(cd "$dir" && go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$t" .)
	done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort)
echo "fuzz: $found targets ran"
