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
echo "lint: ok"
