#!/usr/bin/env bash
# Lint gate: formatting, vet and staticcheck (pinned in go.mod's tool block).
set -euo pipefail
cd "$(dirname "$0")/.."
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [[ -n "$unformatted" ]]; then
  echo "lint: gofmt would change:" >&2; echo "$unformatted" >&2; exit 1
fi
go vet ./...
go tool staticcheck ./...
# dashboards/plugin is its own module: vet it, and run the main module's pinned staticcheck on it.
go generate ./dashboards && git diff --exit-code -- dashboards/provisioning/dashboards \
  || { echo "lint: dashboards JSON is stale: run go generate ./dashboards and commit" >&2; exit 1; }
staticcheck=$(go tool -n staticcheck)
(cd dashboards/plugin && go vet ./... && "$staticcheck" ./...)
echo "lint: ok"
