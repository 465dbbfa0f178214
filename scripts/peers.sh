#!/usr/bin/env bash
# Installs the independent MCP implementations the gateway's interop tests run against
# (ingest/mcp/interop_test.go): the TypeScript SDK and reference server from npm into
# test/peers/node_modules (exact versions from test/peers/package-lock.json), and the Python SDK
# from PyPI into .local/peers-venv (test/peers/requirements.txt), and the independent CEF and OCSF
# checkers into .local/formats-venv (test/peers/requirements-formats.txt), and scikit-learn for
# `mcpwatch eval` into .local/eval-venv (eval/requirements.txt), and pySigma for the Sigma
# cross-check into .local/sigma-venv (test/peers/requirements-sigma*.txt). Idempotent: a step whose inputs
# have not changed since it last succeeded is skipped, so a warm run takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
peers=test/peers
venv=.local/peers-venv
start=$(date +%s%N)
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# npm: reinstall only when the lockfile differs from the one the last install used.
t=$(date +%s%N)
if [[ -f $peers/node_modules/.package-lock.json ]] && cmp -s $peers/package-lock.json $peers/node_modules/.mcpwatch-lock; then
  echo "peers: npm up to date ($(ms "$t") ms)"
else
  command -v npm >/dev/null || { echo "peers: npm not found (Node.js 20+ needed)" >&2; exit 1; }
  npm ci --prefix $peers --no-audit --no-fund --loglevel=error
  cp $peers/package-lock.json $peers/node_modules/.mcpwatch-lock
  echo "peers: npm ci done ($(ms "$t") ms)"
fi

# Python: a venv, reinstalled only when requirements.txt changed.
t=$(date +%s%N)
if [[ -x $venv/bin/python ]] && cmp -s $peers/requirements.txt $venv/.mcpwatch-requirements; then
  echo "peers: python venv up to date ($(ms "$t") ms)"
else
  command -v python3 >/dev/null || { echo "peers: python3 not found (3.10+ needed)" >&2; exit 1; }
  python3 -m venv $venv
  $venv/bin/pip install --quiet --disable-pip-version-check --no-input -r $peers/requirements.txt
  cp $peers/requirements.txt $venv/.mcpwatch-requirements
  echo "peers: pip install done ($(ms "$t") ms)"
fi

# Independent checkers of mcpwatch's CEF and OCSF output (normalize/*_peer_test.go,
# normalize/ocsf_schema_test.go): their own venv, reinstalled only when their pins changed.
t=$(date +%s%N)
fvenv=.local/formats-venv
if [[ -x $fvenv/bin/python ]] && cmp -s $peers/requirements-formats.txt $fvenv/.mcpwatch-requirements; then
  echo "peers: format checkers up to date ($(ms "$t") ms)"
else
  command -v python3 >/dev/null || { echo "peers: python3 not found (3.10+ needed)" >&2; exit 1; }
  python3 -m venv $fvenv
  $fvenv/bin/pip install --quiet --disable-pip-version-check --no-input -r $peers/requirements-formats.txt
  cp $peers/requirements-formats.txt $fvenv/.mcpwatch-requirements
  echo "peers: format checkers installed ($(ms "$t") ms)"
fi

# The oracle and baseline of `mcpwatch eval` (scikit-learn: eval/metrics_test.go, eval/iforest.py):
# their own venv, reinstalled only when their pins changed.
t=$(date +%s%N)
evenv=.local/eval-venv
if [[ -x $evenv/bin/python ]] && cmp -s eval/requirements.txt $evenv/.mcpwatch-requirements; then
  echo "peers: eval oracle up to date ($(ms "$t") ms)"
else
  command -v python3 >/dev/null || { echo "peers: python3 not found (3.10+ needed)" >&2; exit 1; }
  python3 -m venv $evenv
  $evenv/bin/pip install --quiet --disable-pip-version-check --no-input -r eval/requirements.txt
  cp eval/requirements.txt $evenv/.mcpwatch-requirements
  echo "peers: eval oracle installed ($(ms "$t") ms)"
fi
# pySigma, its ClickHouse backend and SigmaHQ validators, and chdb: the independent Sigma
# implementation detectors/sigma/peer_test.go checks the engine against. Their own venv,
# reinstalled only when either pin file changed. The backend declares Python >= 3.13 but runs on
# 3.11 (test/peers/requirements-sigma-backend.txt), hence its separate, dependency-free install.
t=$(date +%s%N)
svenv=.local/sigma-venv
if [[ -x $svenv/bin/python ]] && cat $peers/requirements-sigma.txt $peers/requirements-sigma-backend.txt | cmp -s - $svenv/.mcpwatch-requirements; then
  echo "peers: pySigma up to date ($(ms "$t") ms)"
else
  command -v python3 >/dev/null || { echo "peers: python3 not found (3.10+ needed)" >&2; exit 1; }
  python3 -m venv $svenv
  $svenv/bin/pip install --quiet --disable-pip-version-check --no-input -r $peers/requirements-sigma.txt
  $svenv/bin/pip install --quiet --disable-pip-version-check --no-input --no-deps --ignore-requires-python -r $peers/requirements-sigma-backend.txt
  cat $peers/requirements-sigma.txt $peers/requirements-sigma-backend.txt > $svenv/.mcpwatch-requirements
  echo "peers: pySigma installed ($(ms "$t") ms)"
fi
# The Grafana plugin frontend's pinned toolchain (esbuild; react to render the editors in the load
# test): dashboards/plugin/frontend_test.go rebuilds dist/ with it and loads module.js.
t=$(date +%s%N)
fe=dashboards/plugin
if [[ -f $fe/node_modules/.package-lock.json ]] && cmp -s $fe/package-lock.json $fe/node_modules/.mcpwatch-lock; then
  echo "peers: plugin frontend toolchain up to date ($(ms "$t") ms)"
else
  command -v npm >/dev/null || { echo "peers: npm not found (Node.js 20+ needed)" >&2; exit 1; }
  npm ci --prefix $fe --no-audit --no-fund --loglevel=error
  cp $fe/package-lock.json $fe/node_modules/.mcpwatch-lock
  echo "peers: plugin frontend toolchain installed ($(ms "$t") ms)"
fi
echo "peers: ready in $(ms "$start") ms"
