#!/usr/bin/env bash
# Runs every Fuzz* target of the repository for a short time (default 5s
# each): decoders of outside input must never panic. Usage: scripts/fuzz.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-5s}
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
