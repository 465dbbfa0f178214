#!/usr/bin/env bash
# Run the benchmarks side by side in one run (real services needed for the storage ones).
set -euo pipefail
cd "$(dirname "$0")/.."
stack=deploy/local/stack.sh
"$stack" start
eval "$("$stack" env)"
go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1s}" -count "${COUNT:-1}" ./...
