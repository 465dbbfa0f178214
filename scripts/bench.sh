#!/usr/bin/env bash
# Run the benchmarks side by side in one run (real services needed for the storage ones and the
# gateway latency bench). BENCH/BENCHTIME/COUNT select Go benchmarks; GATEWAY_RATES the bench
# command's rates (empty skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
stack=deploy/local/stack.sh
"$stack" start
eval "$("$stack" env)"
go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1s}" -count "${COUNT:-1}" ./...
if [[ -n "${GATEWAY_RATES-500,2000}" ]]; then
  go build -o bin/mcpwatch ./cmd/mcpwatch
  bin/mcpwatch bench gateway --rates "${GATEWAY_RATES-500,2000}" --duration 10s --modes json,sse --log-level error
fi
