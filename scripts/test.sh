#!/usr/bin/env bash
# The test command (`make test`, and what .ci/run calls): installs and starts the real Kafka and
# ClickHouse if needed, lints, runs every test with -race against them, and stops the services it
# started. Under CI=true an integration test whose service is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stack=deploy/local/stack.sh

"$stack" install
started=0
if ! "$stack" status >/dev/null 2>&1; then
  "$stack" start
  started=1
fi
if [[ $started == 1 || "${CI:-}" == "true" ]]; then
  trap '"$stack" stop' EXIT
fi
eval "$("$stack" env)"

scripts/lint.sh
scripts/peers.sh # the MCP peers of ingest/mcp/interop_test.go
go test -race -count=1 -timeout 25m ${GOTESTFLAGS:-} ./...
# The Grafana backend plugin is its own module (grafana-plugin-sdk-go stays out of the main one).
(cd dashboards/plugin && go test -race -count=1 -timeout 10m ${GOTESTFLAGS:-} ./...)
echo "test: done in $(( $(date +%s) - start ))s"
