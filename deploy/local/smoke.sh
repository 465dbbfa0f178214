#!/usr/bin/env bash
# Smoke test of a RUNNING local stack (deploy/local/stack.sh start), with the services' own
# tools: Kafka's TopicCommand / console producer / console consumer from the fetched jars,
# and clickhouse-client as each of the three users. Non-destructive: it uses a unique topic
# and table and removes them. Prints "N passed, N failed"; exits 1 on any failure.
set -euo pipefail

STACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/stack.sh"
eval "$("$STACK" env)"

pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'smoke: ok    %s\n' "$1" >&2; }
bad() { fail=$((fail + 1)); printf 'smoke: FAIL  %s\n' "$1" >&2; [[ -z ${2:-} ]] || printf '%s\n' "$2" | sed 's/^/smoke:       /' >&2; }

# check NAME CMD...: CMD must succeed.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$out"; fi
}
# refused NAME PATTERN CMD...: CMD must fail, with PATTERN in its error (server-side refusal).
refused() {
  local name=$1 pat=$2 out
  shift 2
  if out=$("$@" 2>&1); then
    bad "$name (was allowed)" "$out"
  elif grep -q -- "$pat" <<<"$out"; then
    ok "$name"
  else
    bad "$name (failed for another reason)" "$out"
  fi
}

id="smoke_$(date +%s)_$$"
topic="stack-$id"
bs=$MCPWATCH_KAFKA_BROKERS

check "stack status" "$STACK" status

# --- Kafka ----------------------------------------------------------------------
check "kafka: create topic $topic (3 partitions)" \
  "$STACK" kafka topics --bootstrap-server "$bs" --create --topic "$topic" --partitions 3 --replication-factor 1
check "kafka: topic listed" bash -c "'$STACK' kafka topics --bootstrap-server '$bs' --list | grep -qx '$topic'"
check "kafka: produce 3 keyed records" bash -c "printf 'k1:v1\nk2:v2\nk3:v3\n' | '$STACK' kafka console-producer \
  --bootstrap-server '$bs' --topic '$topic' --reader-property parse.key=true --reader-property key.separator=: \
  --command-property acks=all"
got=$("$STACK" kafka console-consumer --bootstrap-server "$bs" --topic "$topic" --from-beginning \
  --max-messages 3 --timeout-ms 30000 --group "$id" --formatter-property print.key=true 2>/dev/null | sort | tr '\t\n' ': ' || true)
if [[ $got == "k1:v1 k2:v2 k3:v3 " ]]; then ok "kafka: consume the 3 records back"; else bad "kafka: consume the 3 records back" "got: $got"; fi
# Producing to a missing topic must not create it (auto.create.topics.enable=false).
printf 'x\n' | "$STACK" kafka console-producer --bootstrap-server "$bs" --topic "missing-$id" \
  --command-property max.block.ms=2000 >/dev/null 2>&1 || true
if ! topics=$("$STACK" kafka topics --bootstrap-server "$bs" --list 2>&1); then
  bad "kafka: auto topic creation is off" "cannot list topics: $topics"
elif grep -qx -- "missing-$id" <<<"$topics"; then
  bad "kafka: auto topic creation is off" "producing to missing-$id created it"
else
  ok "kafka: auto topic creation is off"
fi
check "kafka: delete topic" "$STACK" kafka topics --bootstrap-server "$bs" --delete --topic "$topic"
check "kafka: delete consumer group" "$STACK" kafka consumer-groups --bootstrap-server "$bs" --delete --group "$id"

# --- ClickHouse ---------------------------------------------------------------------
ch() { "$STACK" clickhouse "$@"; }
t="$MCPWATCH_CLICKHOUSE_DATABASE.$id"
check "clickhouse: admin SELECT version()" ch admin -q "SELECT version()"
check "clickhouse: writer CREATE TABLE in $MCPWATCH_CLICKHOUSE_DATABASE" \
  ch writer -q "CREATE TABLE $t (ts DateTime, n UInt32) ENGINE = MergeTree ORDER BY ts"
check "clickhouse: writer INSERT" ch writer -q "INSERT INTO $t SELECT now(), number FROM system.numbers LIMIT 1000"
out=$(ch ro -q "SELECT count(), sum(n) FROM $t" 2>&1 || true)
if [[ $out == $'1000\t499500' ]]; then ok "clickhouse: ro SELECT sees the rows"; else bad "clickhouse: ro SELECT sees the rows" "$out"; fi
refused "clickhouse: ro INSERT refused" "readonly mode" ch ro -q "INSERT INTO $t SELECT now(), 1"
refused "clickhouse: ro CREATE TABLE refused" "readonly mode" ch ro -q "CREATE TABLE ${t}_ro (x UInt8) ENGINE = Memory"
refused "clickhouse: ro DROP TABLE refused" "readonly mode" ch ro -q "DROP TABLE $t"
refused "clickhouse: ro ALTER refused" "readonly mode" ch ro -q "ALTER TABLE $t DELETE WHERE n = 1"
refused "clickhouse: ro cannot SET readonly = 0" "readonly" ch ro -n -q "SET readonly = 0; INSERT INTO $t SELECT now(), 1"
refused "clickhouse: ro limited to its database" "Access denied" ch ro -q "SELECT count() FROM default.nonexistent"
refused "clickhouse: writer cannot CREATE DATABASE" "Access denied" ch writer -q "CREATE DATABASE ${id}_db"
refused "clickhouse: wrong password refused" "Wrong password" \
  clickhouse-client --host 127.0.0.1 --port "${MCPWATCH_CLICKHOUSE_ADDR##*:}" --user "$MCPWATCH_CLICKHOUSE_USER" \
  --password wrong -q "SELECT 1"
refused "clickhouse: admin needs its password" "Password required" \
  clickhouse-client --host 127.0.0.1 --port "${MCPWATCH_CLICKHOUSE_ADDR##*:}" -q "SELECT 1"
check "clickhouse: writer DROP TABLE" ch writer -q "DROP TABLE $t"

printf '%d passed, %d failed\n' "$pass" "$fail"
((fail == 0))
