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
cat <<EOT

Dashboards (Grafana; none is installed here): point a Grafana 10+ at dashboards/provisioning with
the official ClickHouse datasource and the mcpwatch plugin, and open the "mcpwatch" folder:
  (cd dashboards/plugin && go build -o dist/gpx_mcpwatch_linux_amd64 .)
  export MCPWATCH_GRAFANA_PROVISIONING=$PWD/dashboards/provisioning
  export MCPWATCH_CLICKHOUSE_HOST=${MCPWATCH_CLICKHOUSE_ADDR%:*} MCPWATCH_CLICKHOUSE_PORT=${MCPWATCH_CLICKHOUSE_ADDR##*:}
  export MCPWATCH_PROMETHEUS_URL=http://127.0.0.1:9090   # the Prometheus scraping the stages' /metrics
  (and the MCPWATCH_CLICKHOUSE_* / MCPWATCH_KAFKA_BROKERS variables of: deploy/local/stack.sh env)
  grafana server with GF_PATHS_PROVISIONING=\$MCPWATCH_GRAFANA_PROVISIONING,
    GF_INSTALL_PLUGINS=grafana-clickhouse-datasource, GF_PLUGINS_ALLOW_LOADING_UNSIGNED_PLUGINS=mcpwatch-soc-datasource
    and dashboards/plugin/dist (plugin.json, module.js, the binary) copied into its plugins directory
  then open http://localhost:3000/d/mcpwatch-soc  (SOC overview; links lead to the other boards)
EOT
echo
echo "up: done in $(( $(date +%s) - start ))s; services still running (deploy/local/stack.sh status | stop)"
