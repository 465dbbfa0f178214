#!/usr/bin/env bash
# The main job (`make up`): install and start Kafka and ClickHouse if needed, build mcpwatch, and
# run the whole pipeline with demo MCP traffic. Leaves the services running for queries.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stack=deploy/local/stack.sh
"$stack" install
"$stack" start
eval "$("$stack" env)"
echo "up: building bin/mcpwatch" >&2
go build -o bin/mcpwatch ./cmd/mcpwatch
bin/mcpwatch demo --log-level "${MCPWATCH_LOG_LEVEL:-warn}" "$@"
echo
echo "up: done in $(( $(date +%s) - start ))s; services still running (deploy/local/stack.sh status | stop)"
