#!/usr/bin/env bash
# mcpwatch local stack: Apache Kafka (KRaft, single combined node) and ClickHouse,
# on 127.0.0.1 only, with all state under one project-local directory.
#
#   deploy/local/stack.sh install|start|stop|restart|status|env|reset
#   deploy/local/stack.sh kafka TOOL [ARGS...]        run a Kafka CLI tool from the fetched jars
#   deploy/local/stack.sh clickhouse [admin|writer|ro] [CLIENT ARGS...]
#
# See deploy/local/README.md. Messages go to stderr prefixed with "stack:";
# only `env` (and the pass-through tools) write to stdout.
set -euo pipefail

# ---------------------------------------------------------------- settings --

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
SELF="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
KAFKA_POM="$SCRIPT_DIR/kafka/pom.xml"

STATE_DIR=${MCPWATCH_STATE_DIR:-$REPO_ROOT/.local}
case $STATE_DIR in /*) ;; *) STATE_DIR="$PWD/$STATE_DIR" ;; esac
STATE_DIR=${STATE_DIR%/}
if [[ -z $STATE_DIR || $STATE_DIR == / ]]; then
  echo "stack: refusing to use '/' as MCPWATCH_STATE_DIR" >&2
  exit 2
fi

HOST=127.0.0.1
DEFAULT_KAFKA_PORT=19092
DEFAULT_KAFKA_CONTROLLER_PORT=19093
DEFAULT_CH_TCP_PORT=19000
DEFAULT_CH_HTTP_PORT=18123

START_TIMEOUT=${MCPWATCH_STACK_START_TIMEOUT:-120}
STOP_TIMEOUT=${MCPWATCH_STACK_STOP_TIMEOUT:-30}
KAFKA_HEAP=${MCPWATCH_STACK_KAFKA_HEAP:--Xms256m -Xmx768m}

KAFKA_DIR="$STATE_DIR/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOGS="$KAFKA_DIR/logs"
KAFKA_CONF="$KAFKA_DIR/config"
KAFKA_MARKER="$KAFKA_LIBS/.installed"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"

CH_DIR="$STATE_DIR/clickhouse"
CH_DATA="$CH_DIR/data"
CH_TMP="$CH_DIR/tmp"
CH_LOGS="$CH_DIR/logs"
CH_CONF="$CH_DIR/config"
CH_PIDFILE="$CH_DIR/clickhouse.pid"

SECRETS_DIR="$STATE_DIR/secrets"
CH_SECRETS="$SECRETS_DIR/clickhouse.env"
RUN_PORTS="$STATE_DIR/ports.env"
LOCK_FILE="$STATE_DIR/.stack.lock"

CH_DB=mcpwatch
CH_ADMIN_USER=default
CH_WRITER_USER=mcpwatch
CH_RO_USER=mcpwatch_ro

# ----------------------------------------------------------------- helpers --

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

now() { printf '%s' "$EPOCHREALTIME"; }
# since T0 -> "6.2s"
since() { LC_ALL=C awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

# Ports: defaults < ports used by the last `start` (ports.env) < explicit env vars.
load_ports() {
  local f_kafka="" f_ctrl="" f_ch="" f_http=""
  if [[ -f $RUN_PORTS ]]; then
    # shellcheck disable=SC1090
    f_kafka=$(. "$RUN_PORTS"; printf '%s' "${KAFKA_PORT:-}")
    # shellcheck disable=SC1090
    f_ctrl=$(. "$RUN_PORTS"; printf '%s' "${KAFKA_CONTROLLER_PORT:-}")
    # shellcheck disable=SC1090
    f_ch=$(. "$RUN_PORTS"; printf '%s' "${CH_TCP_PORT:-}")
    # shellcheck disable=SC1090
    f_http=$(. "$RUN_PORTS"; printf '%s' "${CH_HTTP_PORT:-}")
  fi
  KAFKA_PORT=${MCPWATCH_STACK_KAFKA_PORT:-${f_kafka:-$DEFAULT_KAFKA_PORT}}
  KAFKA_CONTROLLER_PORT=${MCPWATCH_STACK_KAFKA_CONTROLLER_PORT:-${f_ctrl:-$DEFAULT_KAFKA_CONTROLLER_PORT}}
  CH_TCP_PORT=${MCPWATCH_STACK_CLICKHOUSE_PORT:-${f_ch:-$DEFAULT_CH_TCP_PORT}}
  CH_HTTP_PORT=${MCPWATCH_STACK_CLICKHOUSE_HTTP_PORT:-${f_http:-$DEFAULT_CH_HTTP_PORT}}
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$CH_TCP_PORT" "$CH_HTTP_PORT"; do
    if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then die "invalid port '$p'"; fi
  done
}

save_ports() {
  cat >"$RUN_PORTS.tmp" <<EOF
# ports used by the last \`stack.sh start\`; read by env/status/stop
KAFKA_PORT=$KAFKA_PORT
KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT
CH_TCP_PORT=$CH_TCP_PORT
CH_HTTP_PORT=$CH_HTTP_PORT
EOF
  mv -f "$RUN_PORTS.tmp" "$RUN_PORTS"
}

# Serialise install/start/stop/reset between concurrent callers (parallel test runs).
take_lock() {
  mkdir -p "$STATE_DIR"
  exec 9>"$LOCK_FILE"
  if ! flock -w 600 9; then
    die "timed out waiting for $LOCK_FILE (another stack.sh running?)"
  fi
}

as_root() {
  if ((EUID == 0)); then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    die "need root (or passwordless sudo) to run: $*"
  fi
}

tcp_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# cmdline PID: the process's command line, arguments space-separated (one short read, so a
# `cmdline | grep -q` pipeline cannot die of SIGPIPE).
cmdline() {
  local c
  c=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  printf '%s\n' "$c"
}

# pid_of PIDFILE NEEDLE -> prints the pid if it is alive and its command line contains NEEDLE.
pid_of() {
  local pidfile=$1 needle=$2 pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  cmdline "$pid" | grep -qF -- "$needle" || return 1
  printf '%s\n' "$pid"
}

# Exact-argument search, for a server whose pid file was lost. Matches only
# processes started with THIS state directory's config file.
find_pid_by_arg() {
  local arg=$1 f pid
  while IFS= read -r f; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    printf '%s\n' "$pid"
    return 0
  done < <(grep -lzxF -- "$arg" /proc/[0-9]*/cmdline 2>/dev/null || true)
  return 1
}

# settle_pid FN: FN's pid, allowing up to 3s for a server that was just launched to show up.
# setsid forks when its caller leads a process group (shells with job control), so the pid the
# launcher saw may be gone before the real server has exec'd.
settle_pid() {
  local fn=$1 i
  for ((i = 0; i < 60; i++)); do
    "$fn" && return 0
    sleep 0.05
  done
  return 1
}

# await_exec PID NEEDLE: wait (max 5s) until a just-forked launcher has exec'd the server.
await_exec() {
  local pid=$1 needle=$2 i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    if cmdline "$pid" | grep -qF -- "$needle"; then return 0; fi
    sleep 0.05
  done
}

# port_busy_msg PORT...: "" if all free, else who holds the first busy one.
port_busy_msg() {
  local port line pid cmd
  for port in "$@"; do
    tcp_open "$port" || continue
    line=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
    pid=$(sed -n 's/.*pid=\([0-9][0-9]*\).*/\1/p' <<<"$line")
    pid=${pid%%$'\n'*}
    cmd=""
    if [[ -n $pid ]]; then cmd=$(cmdline "$pid" || true); fi
    if [[ $cmd =~ (/[^ ]*)/(kafka/config/server\.properties|clickhouse/config/config\.xml) ]]; then
      printf '%s:%s is held by another mcpwatch stack (pid %s, state dir %s): stop it with MCPWATCH_STATE_DIR=%s %s stop, or pick other ports (MCPWATCH_STACK_*_PORT)' \
        "$HOST" "$port" "$pid" "${BASH_REMATCH[1]}" "${BASH_REMATCH[1]}" "$SELF"
    else
      printf '%s:%s is already in use (%s); pick other ports (MCPWATCH_STACK_*_PORT)' \
        "$HOST" "$port" "${pid:+pid $pid: ${cmd:0:120}}"
    fi
    return 0
  done
}

# pick_ports NAME VAR1 VAR2 ENV1 ENV2: make sure the two ports in VAR1/VAR2 are free. If they are
# taken and neither was set explicitly (ENV1/ENV2), move both up by 100 until a free pair is
# found (e.g. a developer's stack from another checkout holds the defaults while CI runs);
# ports.env then tells env/status/stop where they went. Explicit ports are never moved.
pick_ports() {
  local name=$1 v1=$2 v2=$3 e1=$4 e2=$5 busy p1 p2 off
  busy=$(port_busy_msg "${!v1}" "${!v2}")
  [[ -n $busy ]] || return 0
  if [[ -n ${!e1:-} || -n ${!e2:-} ]]; then die "$name: $busy"; fi
  for ((off = 100; off <= 1000; off += 100)); do
    p1=$((${!v1} + off))
    p2=$((${!v2} + off))
    if ((p1 < 65536 && p2 < 65536)) && [[ -z $(port_busy_msg "$p1" "$p2") ]]; then
      log "$name: $busy"
      log "$name: using free ports $p1/$p2 instead (\`env\` reports them; set $e1/$e2 to pin ports)"
      printf -v "$v1" '%s' "$p1"
      printf -v "$v2" '%s' "$p2"
      return 0
    fi
  done
  die "$name: $busy (and no free ports up to +1000)"
}

show_tail() {
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    printf 'stack: ---- last lines of %s ----\n' "$f" >&2
    tail -n 40 "$f" >&2 || true
  done
  printf 'stack: ----\n' >&2
}

# stop_pid NAME PID: SIGTERM, wait STOP_TIMEOUT, then SIGKILL.
stop_pid() {
  local name=$1 pid=$2 t0 deadline
  t0=$(now)
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$name (pid $pid) still running after ${STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  log "$name stopped (pid $pid) in $(since "$t0")"
}

gen_password() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }
sha256_hex() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# --------------------------------------------------------------- discovery --

java_bin() {
  if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  else
    command -v java 2>/dev/null
  fi
}

java_major() {
  "$1" -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print (v[1] == 1 ? v[2] : v[1]); exit }'
}

ch_server_bin() {
  command -v clickhouse-server 2>/dev/null ||
    { [[ -x /usr/sbin/clickhouse-server ]] && echo /usr/sbin/clickhouse-server; } ||
    return 1
}
ch_client_bin() { command -v clickhouse-client 2>/dev/null; }

kafka_version() { sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM"; }
kafka_marker_want() { printf 'kafka=%s pom_sha256=%s\n' "$(kafka_version)" "$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)"; }
kafka_installed() { [[ -f $KAFKA_MARKER && "$(<"$KAFKA_MARKER")" == "$(kafka_marker_want)" ]]; }
ch_installed() {
  ch_server_bin >/dev/null && ch_client_bin >/dev/null &&
    [[ $(dpkg-query -W -f='${Status}' clickhouse-server 2>/dev/null) == *"install ok installed"* ]]
}

# ----------------------------------------------------------------- install --

apt_install() {
  # apt_install PKG... ; refreshes package lists if a package has no candidate or install fails.
  # apt's output goes to $STATE_DIR/apt.log and is shown only on failure.
  local pkg need_update=0 guard="" rc=0 aptlog="$STATE_DIR/apt.log"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
  mkdir -p "$STATE_DIR"
  : >"$aptlog"
  for pkg in "$@"; do
    # (no `| grep -q` here: with pipefail, grep exiting early fails the pipeline)
    if [[ $(apt-cache policy "$pkg" 2>/dev/null) != *"Candidate: "[0-9]* ]]; then need_update=1; fi
  done
  if ((need_update)); then
    log "apt-get update (no install candidate for: $*)"
    as_root "${apt[@]}" update >>"$aptlog" 2>&1 || { show_tail "$aptlog"; return 1; }
  fi
  # Debian's clickhouse-server postinst runs `invoke-rc.d clickhouse-server start`, which would
  # start a second server with the package's /etc config on ports 9000/8123. Forbid it for the
  # duration of the install if the machine has no policy-rc.d of its own.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# temporary, written by mcpwatch deploy/local/stack.sh\nexit 101\n' |
      as_root tee "$guard" >/dev/null
    as_root chmod 0755 "$guard"
  fi
  as_root "${apt[@]}" install -y --no-install-recommends "$@" >>"$aptlog" 2>&1 || rc=$?
  if ((rc != 0)); then
    log "apt-get install failed (rc=$rc); refreshing package lists and retrying"
    rc=0
    { as_root "${apt[@]}" update && as_root "${apt[@]}" install -y --no-install-recommends "$@"; } >>"$aptlog" 2>&1 || rc=$?
  fi
  if [[ -n $guard ]]; then as_root rm -f "$guard"; fi
  if ((rc != 0)); then show_tail "$aptlog"; fi
  return "$rc"
}

install_java_maven() {
  local j need=()
  j=$(java_bin || true)
  if [[ -z $j ]] || (($(java_major "$j") < 17)); then need+=(openjdk-17-jre-headless); fi
  command -v mvn >/dev/null 2>&1 || need+=(maven)
  if ((${#need[@]})); then
    log "installing ${need[*]} from apt"
    apt_install "${need[@]}"
  fi
  j=$(java_bin) || die "java not found after install"
  (($(java_major "$j") >= 17)) || die "Kafka $(kafka_version) needs Java 17+; $j is $(java_major "$j")"
}

install_kafka() {
  local t0 ver tmp
  if kafka_installed; then
    log "kafka $(kafka_version) already installed ($KAFKA_LIBS)"
    return 0
  fi
  t0=$(now)
  ver=$(kafka_version)
  [[ -n $ver ]] || die "cannot read <kafka.version> from $KAFKA_POM"
  command -v mvn >/dev/null 2>&1 || install_java_maven
  log "fetching Apache Kafka $ver jars from Maven Central (mvn dependency:copy-dependencies)"
  mkdir -p "$KAFKA_DIR"
  tmp="$KAFKA_DIR/libs.tmp"
  rm -rf -- "$tmp"
  local mvn_args=(-B -q -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies
    -DincludeScope=runtime -DoutputDirectory="$tmp")
  if [[ -n ${MCPWATCH_STACK_MAVEN_REPO:-} ]]; then mvn_args+=("-Dmaven.repo.local=$MCPWATCH_STACK_MAVEN_REPO"); fi
  # Offline first: with a warm ~/.m2 this needs no network at all; else fetch.
  if ! mvn -o "${mvn_args[@]}" >"$KAFKA_DIR/maven.log" 2>&1 </dev/null; then
    rm -rf -- "$tmp"
    if ! mvn "${mvn_args[@]}" >"$KAFKA_DIR/maven.log" 2>&1 </dev/null; then
      rm -rf -- "$tmp"
      show_tail "$KAFKA_DIR/maven.log"
      die "maven could not fetch Kafka $ver from Maven Central"
    fi
  fi
  [[ -f $tmp/kafka_2.13-$ver.jar && -f $tmp/kafka-tools-$ver.jar ]] ||
    die "kafka_2.13-$ver.jar / kafka-tools-$ver.jar missing after maven copy"
  rm -rf -- "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  kafka_marker_want >"$KAFKA_MARKER"
  log "kafka $ver installed: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars, $(du -sh "$KAFKA_LIBS" | cut -f1) in $(since "$t0")"
}

install_clickhouse() {
  local t0
  if ch_installed && command -v kcat >/dev/null 2>&1; then
    log "clickhouse $(dpkg-query -W -f='${Version}' clickhouse-server) already installed"
    return 0
  fi
  t0=$(now)
  # kcat: tiny Kafka CLI (its librdkafka is a clickhouse-common dependency anyway); used for
  # the fast readiness probe and handy for poking at topics.
  log "installing clickhouse-server clickhouse-client kcat from apt"
  apt_install clickhouse-server clickhouse-client kcat || die "apt-get install clickhouse-server clickhouse-client kcat failed"
  ch_installed || die "clickhouse binaries missing after apt-get install"
  log "clickhouse $(dpkg-query -W -f='${Version}' clickhouse-server) installed in $(since "$t0")"
}

# rsyslogd with its OpenSSL TLS stream driver: the real syslog collector the SIEM forwarder's
# tests start (each test runs its own rsyslogd on a loopback port; the system syslog is never
# configured or started: apt_install's policy-rc.d guard keeps the package from starting it).
rsyslog_installed() {
  { [[ -x /usr/sbin/rsyslogd ]] || command -v rsyslogd >/dev/null 2>&1; } &&
    [[ $(dpkg-query -W -f='${Status}' rsyslog-openssl 2>/dev/null) == *"install ok installed"* ]]
}

install_rsyslog() {
  if rsyslog_installed; then
    log "rsyslog $(dpkg-query -W -f='${Version}' rsyslog) already installed"
    return 0
  fi
  log "installing rsyslog rsyslog-openssl from apt"
  apt_install rsyslog rsyslog-openssl || die "apt-get install rsyslog rsyslog-openssl failed"
  rsyslog_installed || die "rsyslogd missing after apt-get install"
  log "rsyslog $(dpkg-query -W -f='${Version}' rsyslog) installed"
}

# The eBPF toolchain: bpf2go (`make generate`, ingest/ebpf's TestGeneratedUpToDate) compiles
# bpf/ with Debian's clang-19 and strips with llvm-19's llvm-strip; libbpf-dev gives the BPF
# helper headers, bpftool inspects what is loaded.
bpf_toolchain_installed() {
  command -v clang-19 >/dev/null 2>&1 && command -v llvm-strip-19 >/dev/null 2>&1 &&
    [[ -f /usr/include/bpf/bpf_helpers.h ]] && { command -v bpftool >/dev/null 2>&1 || [[ -x /usr/sbin/bpftool ]]; }
}

install_bpf_toolchain() {
  if bpf_toolchain_installed; then
    return 0
  fi
  log "installing clang-19 llvm-19 libbpf-dev bpftool from apt"
  apt_install clang-19 llvm-19 libbpf-dev bpftool || die "apt-get install clang-19 llvm-19 libbpf-dev bpftool failed"
  bpf_toolchain_installed || die "eBPF toolchain missing after apt-get install"
}

# Both installs in parallel (Maven download vs apt), after any apt work Maven itself needs.
install_all() {
  local chjob rc=0
  if ! kafka_installed; then install_java_maven; fi
  install_clickhouse &
  chjob=$!
  install_kafka || rc=$?
  wait "$chjob" || rc=$?
  ((rc == 0)) || die "install failed"
  install_rsyslog # after the ClickHouse apt run: both write apt.log
  install_bpf_toolchain
}

cmd_install() {
  local t0
  t0=$(now)
  take_lock
  install_all
  log "install done in $(since "$t0")"
}

# ----------------------------------------------------------------- secrets --

ensure_secrets() {
  mkdir -p "$SECRETS_DIR"
  chmod 0700 "$SECRETS_DIR"
  if [[ ! -s $CH_SECRETS ]]; then
    (
      umask 077
      {
        echo "# generated by deploy/local/stack.sh; plaintext ClickHouse passwords for the local stack"
        echo "MCPWATCH_CLICKHOUSE_ADMIN_PASSWORD=$(gen_password)"
        echo "MCPWATCH_CLICKHOUSE_PASSWORD=$(gen_password)"
        echo "MCPWATCH_CLICKHOUSE_RO_PASSWORD=$(gen_password)"
      } >"$CH_SECRETS.tmp"
      mv -f "$CH_SECRETS.tmp" "$CH_SECRETS"
    )
    log "generated ClickHouse passwords in $CH_SECRETS"
  fi
  chmod 0600 "$CH_SECRETS"
  CH_ADMIN_PASSWORD=$(sed -n 's/^MCPWATCH_CLICKHOUSE_ADMIN_PASSWORD=//p' "$CH_SECRETS")
  CH_WRITER_PASSWORD=$(sed -n 's/^MCPWATCH_CLICKHOUSE_PASSWORD=//p' "$CH_SECRETS")
  CH_RO_PASSWORD=$(sed -n 's/^MCPWATCH_CLICKHOUSE_RO_PASSWORD=//p' "$CH_SECRETS")
  [[ -n $CH_ADMIN_PASSWORD && -n $CH_WRITER_PASSWORD && -n $CH_RO_PASSWORD ]] ||
    die "$CH_SECRETS is incomplete; delete it (or run reset) to regenerate"
  write_client_configs
}

# clickhouse-client reads user/password from --config-file, keeping passwords out of `ps`.
write_client_configs() {
  local role user pw f
  for role in admin writer ro; do
    case $role in
      admin) user=$CH_ADMIN_USER pw=$CH_ADMIN_PASSWORD ;;
      writer) user=$CH_WRITER_USER pw=$CH_WRITER_PASSWORD ;;
      ro) user=$CH_RO_USER pw=$CH_RO_PASSWORD ;;
    esac
    f="$SECRETS_DIR/clickhouse-client-$role.xml"
    (
      umask 077
      cat >"$f.tmp" <<EOF
<config>
    <host>$HOST</host>
    <port>$CH_TCP_PORT</port>
    <user>$user</user>
    <password>$pw</password>
</config>
EOF
      mv -f "$f.tmp" "$f"
    )
  done
}

# ------------------------------------------------------------------- kafka --

# server_pid PIDFILE ARG: the server started with ARG, from its pid file, else (pid file
# lost) by an exact command-line search, which also rewrites the pid file.
server_pid() {
  local pidfile=$1 arg=$2 pid
  pid_of "$pidfile" "$arg" && return 0
  pid=$(find_pid_by_arg "$arg") || return 1
  if [[ -d ${pidfile%/*} ]]; then printf '%s\n' "$pid" >"$pidfile"; fi
  printf '%s\n' "$pid"
}

kafka_pid() { server_pid "$KAFKA_PIDFILE" "$KAFKA_CONF/server.properties"; }

write_kafka_config() {
  mkdir -p "$KAFKA_CONF" "$KAFKA_DATA" "$KAFKA_LOGS"
  cat >"$KAFKA_CONF/server.properties" <<EOF
# Generated by deploy/local/stack.sh on each start; edit the script, not this file.
# Single-node KRaft: this process is both broker and (sole) controller.
process.roles=broker,controller
node.id=1
# Static quorum: the voter set lives in this file, not in the formatted log, so the
# controller port can change between runs without reformatting.
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT

log.dirs=$KAFKA_DATA
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
log.retention.hours=168
log.segment.bytes=268435456

offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# Dev-node sizing (2 cores): a smaller compaction dedupe buffer also starts ~1 s faster.
log.cleaner.dedupe.buffer.size=33554432
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
  cat >"$KAFKA_CONF/log4j2.properties" <<EOF
# Broker logging (log4j2 through log4j-slf4j-impl). Generated by deploy/local/stack.sh.
status = warn
name = mcpwatch-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $KAFKA_LOGS/server.log
appender.file.filePattern = $KAFKA_LOGS/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 5
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
  cat >"$KAFKA_CONF/tools-log4j2.properties" <<'EOF'
# CLI tools: warnings and errors only, to stderr.
status = warn
name = mcpwatch-kafka-tools
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
EOF
}

# kafka_tool CLASS ARGS... : run a Kafka CLI class from the fetched jars.
kafka_tool() {
  local java cls=$1
  shift
  java=$(java_bin) || die "java not found"
  [[ -f $KAFKA_CONF/tools-log4j2.properties ]] || write_kafka_config
  "$java" -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_CONF/tools-log4j2.properties" \
    -cp "$KAFKA_LIBS/*" "$cls" "$@"
}

kafka_format_if_needed() {
  local cid t0
  if [[ -f $KAFKA_DATA/meta.properties ]]; then return 0; fi
  t0=$(now)
  # A Kafka cluster id is 16 random bytes, base64url without padding.
  cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  printf '%s\n' "$cid" >"$KAFKA_CONF/cluster.id"
  if ! kafka_tool kafka.tools.StorageTool format --config "$KAFKA_CONF/server.properties" \
    --cluster-id "$cid" --ignore-formatted >"$KAFKA_LOGS/format.log" 2>&1; then
    show_tail "$KAFKA_LOGS/format.log"
    die "kafka storage format failed"
  fi
  log "kafka storage formatted (cluster id $cid) in $(since "$t0")"
}

KAFKA_STARTED_AT=""
KAFKA_LOG_OFFSET=0

kafka_launch() {
  local java pid heap
  java=$(java_bin) || die "java not found"
  write_kafka_config
  kafka_format_if_needed
  KAFKA_LOG_OFFSET=$(stat -c %s "$KAFKA_LOGS/server.log" 2>/dev/null || echo 0)
  KAFKA_STARTED_AT=$(now)
  read -r -a heap <<<"$KAFKA_HEAP"
  printf '\n==== %s start ====\n' "$(date -u +%FT%TZ)" >>"$KAFKA_LOGS/kafka.out"
  # setsid: own session, so the broker outlives this script and its terminal; fd 9 (our
  # lock) is closed so the broker does not hold it.
  (
    cd "$KAFKA_DIR"
    exec setsid nohup "$java" "${heap[@]}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
      -Djava.awt.headless=true -Dkafka.logs.dir="$KAFKA_LOGS" \
      -Dlog4j2.configurationFile="$KAFKA_CONF/log4j2.properties" \
      -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF/server.properties" \
      >>"$KAFKA_LOGS/kafka.out" 2>&1 </dev/null 9>&-
  ) &
  pid=$!
  await_exec "$pid" "$KAFKA_CONF/server.properties"
  printf '%s\n' "$pid" >"$KAFKA_PIDFILE"
  log "kafka starting (pid $pid, $HOST:$KAFKA_PORT)"
}

kafka_log_since_start() {
  local size
  size=$(stat -c %s "$KAFKA_LOGS/server.log" 2>/dev/null || echo 0)
  if ((size < KAFKA_LOG_OFFSET)); then KAFKA_LOG_OFFSET=0; fi # rolled over
  tail -c +"$((KAFKA_LOG_OFFSET + 1))" "$KAFKA_LOGS/server.log" 2>/dev/null || true
}

kafka_show_failure() {
  if [[ -n $KAFKA_STARTED_AT ]]; then
    printf 'stack: ---- %s (this start, last 40 lines) ----\n' "$KAFKA_LOGS/server.log" >&2
    kafka_log_since_start | tail -n 40 >&2 || true
  else
    show_tail "$KAFKA_LOGS/server.log"
  fi
  printf 'stack: ---- %s (last 15 lines) ----\n' "$KAFKA_LOGS/kafka.out" >&2
  tail -n 15 "$KAFKA_LOGS/kafka.out" >&2 2>/dev/null || true
  if [[ -s $KAFKA_LOGS/probe.err ]]; then
    printf 'stack: ---- last metadata probe error ----\n' >&2
    tail -n 10 "$KAFKA_LOGS/probe.err" >&2 || true
  fi
  printf 'stack: ----\n' >&2
}

# Metadata round trip through the broker: kcat when installed (milliseconds), else
# Kafka's own TopicCommand (a JVM start, ~1.5 s). Prints the number of topics.
kafka_probe() {
  local out
  if command -v kcat >/dev/null 2>&1; then
    out=$(timeout 20 kcat -b "$HOST:$KAFKA_PORT" -L -m 5 2>"$KAFKA_LOGS/probe.err") || return 1
    grep -q "broker 1 at $HOST:$KAFKA_PORT" <<<"$out" || return 1
    sed -n 's/^ \([0-9][0-9]*\) topics:$/\1/p' <<<"$out"
  else
    out=$(timeout 60 "$BASH" "$SELF" kafka topics --bootstrap-server "$HOST:$KAFKA_PORT" --list 2>"$KAFKA_LOGS/probe.err") || return 1
    grep -c . <<<"$out" || true
  fi
}

kafka_wait_ready() {
  local t0=${KAFKA_STARTED_AT:-$(now)} deadline=$((SECONDS + START_TIMEOUT)) pid topics
  : >"$KAFKA_LOGS/probe.err"
  while :; do
    if ! pid=$(settle_pid kafka_pid); then
      kafka_show_failure
      die "kafka exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      kafka_show_failure
      die "kafka not ready after ${START_TIMEOUT}s (pid $pid)"
    fi
    if tcp_open "$KAFKA_PORT" &&
      { [[ -z $KAFKA_STARTED_AT ]] || grep -q 'Kafka Server started' < <(kafka_log_since_start); } &&
      topics=$(kafka_probe); then
      log "kafka ready in $(since "$t0") ($HOST:$KAFKA_PORT, pid $pid, ${topics:-0} topics)"
      return 0
    fi
    sleep 0.2
  done
}

# -------------------------------------------------------------- clickhouse --

ch_pid() { server_pid "$CH_PIDFILE" "--config-file=$CH_CONF/config.xml"; }

# chq ROLE [clickhouse-client args...]
chq() {
  local role=$1
  shift
  "$(ch_client_bin)" --config-file="$SECRETS_DIR/clickhouse-client-$role.xml" \
    --host "$HOST" --port "$CH_TCP_PORT" "$@"
}

write_ch_config() {
  mkdir -p "$CH_CONF" "$CH_DATA" "$CH_TMP" "$CH_LOGS" "$CH_DIR/user_files" "$CH_DIR/format_schemas"
  cat >"$CH_CONF/config.xml.tmp" <<EOF
<?xml version="1.0"?>
<!-- Generated by deploy/local/stack.sh on each start; edit the script, not this file.
     Written for ClickHouse 18.16 (Debian bookworm), valid for newer servers too. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$CH_LOGS/clickhouse-server.log</log>
        <errorlog>$CH_LOGS/clickhouse-server.err.log</errorlog>
        <size>50M</size>
        <count>5</count>
    </logger>

    <!-- Loopback only. No https/secure-tcp/interserver/mysql ports: they are not opened
         unless configured. -->
    <listen_host>$HOST</listen_host>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <http_port>$CH_HTTP_PORT</http_port>

    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>64</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>

    <path>$CH_DATA/</path>
    <tmp_path>$CH_TMP/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>
    <users_config>$CH_CONF/users.xml</users_config>
    <dictionaries_config>$CH_CONF/*_dictionary.xml</dictionaries_config>

    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <umask>027</umask>
    <mlock_executable>false</mlock_executable>

    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>

    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>7500</flush_interval_milliseconds>
    </query_log>

    <!-- Dev node: let tests drop tables of any size. -->
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
</yandex>
EOF
  mv -f "$CH_CONF/config.xml.tmp" "$CH_CONF/config.xml"

  # users.xml holds only sha256 hashes; the server re-reads it when it changes.
  (
    umask 027
    cat >"$CH_CONF/users.xml.tmp" <<EOF
<?xml version="1.0"?>
<!-- Generated by deploy/local/stack.sh from secrets/clickhouse.env. ClickHouse 18.16 has no
     SQL access management (no GRANT): access is per user here. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
        <!-- readonly=2: the server refuses INSERT/CREATE/ALTER/DROP, but clients may still
             send query settings (clickhouse-go does). -->
        <readonly>
            <readonly>2</readonly>
            <max_execution_time>60</max_execution_time>
            <timeout_overflow_mode>throw</timeout_overflow_mode>
            <max_result_rows>1000000</max_result_rows>
            <max_result_bytes>1000000000</max_result_bytes>
            <result_overflow_mode>throw</result_overflow_mode>
            <max_memory_usage>2000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
        </readonly>
    </profiles>

    <users>
        <!-- admin / migrations -->
        <$CH_ADMIN_USER>
            <password_sha256_hex>$(sha256_hex "$CH_ADMIN_PASSWORD")</password_sha256_hex>
            <networks replace="replace">
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </$CH_ADMIN_USER>

        <!-- pipeline writer: DDL + INSERT, only in database $CH_DB -->
        <$CH_WRITER_USER>
            <password_sha256_hex>$(sha256_hex "$CH_WRITER_PASSWORD")</password_sha256_hex>
            <networks replace="replace">
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
            <allow_databases>
                <database>$CH_DB</database>
            </allow_databases>
        </$CH_WRITER_USER>

        <!-- dashboards / queries: server-enforced read only, only database $CH_DB -->
        <$CH_RO_USER>
            <password_sha256_hex>$(sha256_hex "$CH_RO_PASSWORD")</password_sha256_hex>
            <networks replace="replace">
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>readonly</profile>
            <quota>default</quota>
            <allow_databases>
                <database>$CH_DB</database>
            </allow_databases>
        </$CH_RO_USER>
    </users>

    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
    mv -f "$CH_CONF/users.xml.tmp" "$CH_CONF/users.xml"
  )
}

CH_STARTED_AT=""

ch_launch() {
  local bin pid
  bin=$(ch_server_bin) || die "clickhouse-server not installed (run: $0 install)"
  write_ch_config
  CH_STARTED_AT=$(now)
  printf '\n==== %s start ====\n' "$(date -u +%FT%TZ)" >>"$CH_LOGS/clickhouse.out"
  (
    cd "$CH_DIR"
    exec setsid nohup "$bin" --config-file="$CH_CONF/config.xml" \
      >>"$CH_LOGS/clickhouse.out" 2>&1 </dev/null 9>&-
  ) &
  pid=$!
  await_exec "$pid" "$CH_CONF/config.xml"
  printf '%s\n' "$pid" >"$CH_PIDFILE"
  log "clickhouse starting (pid $pid, $HOST:$CH_TCP_PORT)"
}

ch_wait_ready() {
  local t0=${CH_STARTED_AT:-$(now)} deadline=$((SECONDS + START_TIMEOUT)) pid ver
  while :; do
    if ! pid=$(settle_pid ch_pid); then
      show_tail "$CH_LOGS/clickhouse-server.err.log" "$CH_LOGS/clickhouse.out"
      die "clickhouse exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      show_tail "$CH_LOGS/clickhouse-server.err.log" "$CH_LOGS/clickhouse.out"
      die "clickhouse not ready after ${START_TIMEOUT}s (pid $pid)"
    fi
    if ver=$(chq admin -q 'SELECT version()' 2>/dev/null); then
      log "clickhouse $ver ready in $(since "$t0") ($HOST:$CH_TCP_PORT, pid $pid)"
      return 0
    fi
    sleep 0.2
  done
}

# Create the app database and prove, server side, that the users are what they claim.
ch_bootstrap() {
  local t0 out probe="$CH_DB.__stack_probe"
  t0=$(now)
  chq admin -q "CREATE DATABASE IF NOT EXISTS $CH_DB" || die "CREATE DATABASE $CH_DB failed"
  chq writer -d "$CH_DB" -q "DROP TABLE IF EXISTS $probe" || die "writer user cannot DROP in $CH_DB"
  chq writer -d "$CH_DB" -q "CREATE TABLE $probe (x UInt8) ENGINE = Memory" ||
    die "writer user $CH_WRITER_USER cannot CREATE TABLE in $CH_DB"
  chq writer -d "$CH_DB" -q "INSERT INTO $probe SELECT 1" || die "writer user cannot INSERT"
  [[ $(chq ro -d "$CH_DB" -q "SELECT count() FROM $probe") == 1 ]] || die "read-only user cannot SELECT"
  if out=$(chq ro -d "$CH_DB" -q "INSERT INTO $probe SELECT 2" 2>&1); then
    die "SECURITY: $CH_RO_USER could INSERT"
  fi
  grep -q 'readonly' <<<"$out" || die "unexpected error for read-only INSERT: $out"
  if out=$(chq ro -d "$CH_DB" -q "CREATE TABLE $CH_DB.__stack_probe_ro (x UInt8) ENGINE = Memory" 2>&1); then
    die "SECURITY: $CH_RO_USER could CREATE TABLE"
  fi
  grep -q 'readonly' <<<"$out" || die "unexpected error for read-only CREATE TABLE: $out"
  if out=$(chq ro -d "$CH_DB" -n -q "SET readonly = 0; INSERT INTO $probe SELECT 3" 2>&1); then
    die "SECURITY: $CH_RO_USER could lift readonly with SET"
  fi
  grep -q 'readonly' <<<"$out" || die "unexpected error for read-only SET readonly = 0: $out"
  if out=$(chq writer -d "$CH_DB" -q "CREATE DATABASE __stack_probe_db" 2>&1); then
    chq admin -q "DROP DATABASE IF EXISTS __stack_probe_db" || true
    die "SECURITY: $CH_WRITER_USER could create a database outside $CH_DB"
  fi
  grep -q 'Access denied' <<<"$out" || die "unexpected error for writer CREATE DATABASE: $out"
  chq writer -d "$CH_DB" -q "DROP TABLE $probe" || die "writer user cannot DROP TABLE"
  log "clickhouse users verified in $(since "$t0"): $CH_WRITER_USER writes $CH_DB; $CH_RO_USER refused INSERT/CREATE/SET readonly; writer refused CREATE DATABASE"
}

# -------------------------------------------------------------- subcommands --

cmd_start() {
  local t0 kpid cpid k_new=0 c_new=0
  t0=$(now)
  take_lock
  if ! kafka_installed || ! ch_installed || ! command -v kcat >/dev/null 2>&1 || ! rsyslog_installed; then
    install_all
  fi
  ensure_secrets

  if kpid=$(kafka_pid); then
    if [[ -n ${MCPWATCH_STACK_KAFKA_PORT:-} && -f $RUN_PORTS ]] &&
      ! grep -qx "KAFKA_PORT=$KAFKA_PORT" "$RUN_PORTS"; then
      die "kafka is running with other ports ($RUN_PORTS); run '$0 stop' first"
    fi
  fi
  if cpid=$(ch_pid); then
    if [[ -n ${MCPWATCH_STACK_CLICKHOUSE_PORT:-} && -f $RUN_PORTS ]] &&
      ! grep -qx "CH_TCP_PORT=$CH_TCP_PORT" "$RUN_PORTS"; then
      die "clickhouse is running with other ports ($RUN_PORTS); run '$0 stop' first"
    fi
  fi

  # Fast path: both up and answering.
  if [[ -n $kpid && -n $cpid ]] && tcp_open "$KAFKA_PORT" && chq admin -q 'SELECT 1' >/dev/null 2>&1; then
    log "already running: kafka pid $kpid ($HOST:$KAFKA_PORT), clickhouse pid $cpid ($HOST:$CH_TCP_PORT); checked in $(since "$t0")"
    return 0
  fi

  # A service that is not running starts on the requested ports (explicit or default), not on
  # wherever ports.env says it ran last time.
  if [[ -z $kpid ]]; then
    KAFKA_PORT=${MCPWATCH_STACK_KAFKA_PORT:-$DEFAULT_KAFKA_PORT}
    KAFKA_CONTROLLER_PORT=${MCPWATCH_STACK_KAFKA_CONTROLLER_PORT:-$DEFAULT_KAFKA_CONTROLLER_PORT}
  fi
  if [[ -z $cpid ]]; then
    CH_TCP_PORT=${MCPWATCH_STACK_CLICKHOUSE_PORT:-$DEFAULT_CH_TCP_PORT}
    CH_HTTP_PORT=${MCPWATCH_STACK_CLICKHOUSE_HTTP_PORT:-$DEFAULT_CH_HTTP_PORT}
  fi

  # Preflight: every port we are about to bind must be free, before launching anything.
  if [[ -z $kpid ]]; then
    pick_ports kafka KAFKA_PORT KAFKA_CONTROLLER_PORT MCPWATCH_STACK_KAFKA_PORT MCPWATCH_STACK_KAFKA_CONTROLLER_PORT
  fi
  if [[ -z $cpid ]]; then
    pick_ports clickhouse CH_TCP_PORT CH_HTTP_PORT MCPWATCH_STACK_CLICKHOUSE_PORT MCPWATCH_STACK_CLICKHOUSE_HTTP_PORT
  fi
  save_ports
  ensure_secrets # client configs carry the port

  # Launch both before waiting on either (the JVM takes longest).
  if [[ -z $kpid ]]; then
    rm -f "$KAFKA_PIDFILE"
    kafka_launch
    k_new=1
  fi
  if [[ -z $cpid ]]; then
    rm -f "$CH_PIDFILE"
    ch_launch
    c_new=1
  else
    write_ch_config # users.xml is hot-reloaded
  fi

  ch_wait_ready
  if ((c_new)) || [[ $(chq admin -q "EXISTS DATABASE $CH_DB" 2>/dev/null || echo 0) != 1 ]]; then
    ch_bootstrap
  fi
  ((k_new)) || log "kafka already running (pid $kpid); waiting for it to answer"
  kafka_wait_ready
  log "stack up in $(since "$t0"): kafka $HOST:$KAFKA_PORT, clickhouse $HOST:$CH_TCP_PORT (eval \"\$($0 env)\")"
}

cmd_stop() {
  local kpid="" cpid=""
  take_lock
  kpid=$(kafka_pid) || true
  cpid=$(ch_pid) || true
  if [[ -z $kpid && -z $cpid ]]; then
    log "not running"
  fi
  # Both shut down in parallel; each gets STOP_TIMEOUT before SIGKILL.
  if [[ -n $kpid ]]; then stop_pid kafka "$kpid" & fi
  if [[ -n $cpid ]]; then stop_pid clickhouse "$cpid" & fi
  wait
  rm -f "$KAFKA_PIDFILE" "$CH_PIDFILE"
}

cmd_status() {
  local pid rc=0 ver
  if pid=$(kafka_pid); then
    if tcp_open "$KAFKA_PORT"; then
      printf 'kafka       running  pid=%-8s addr=%s:%s  version=%s\n' "$pid" "$HOST" "$KAFKA_PORT" "$(kafka_version)"
    else
      printf 'kafka       starting pid=%-8s addr=%s:%s  version=%s (port not open)\n' "$pid" "$HOST" "$KAFKA_PORT" "$(kafka_version)"
      rc=3
    fi
  else
    printf 'kafka       stopped  addr=%s:%s  version=%s\n' "$HOST" "$KAFKA_PORT" \
      "$(kafka_installed && kafka_version || echo 'not installed')"
    rc=3
  fi
  if pid=$(ch_pid); then
    if [[ -s $CH_SECRETS ]] && ensure_secrets 2>/dev/null && ver=$(chq admin -q 'SELECT version()' 2>/dev/null); then
      printf 'clickhouse  running  pid=%-8s addr=%s:%s  http=%s:%s  version=%s\n' "$pid" "$HOST" "$CH_TCP_PORT" "$HOST" "$CH_HTTP_PORT" "$ver"
    else
      printf 'clickhouse  starting pid=%-8s addr=%s:%s  (not answering)\n' "$pid" "$HOST" "$CH_TCP_PORT"
      rc=3
    fi
  else
    printf 'clickhouse  stopped  addr=%s:%s  version=%s\n' "$HOST" "$CH_TCP_PORT" \
      "$(dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null || echo 'not installed')"
    rc=3
  fi
  printf 'state       %s\n' "$STATE_DIR"
  return "$rc"
}

cmd_env() {
  ensure_secrets
  local k v
  while IFS='=' read -r k v; do
    printf 'export %s=%q\n' "$k" "$v"
  done <<EOF
MCPWATCH_KAFKA_BROKERS=$HOST:$KAFKA_PORT
MCPWATCH_CLICKHOUSE_ADDR=$HOST:$CH_TCP_PORT
MCPWATCH_CLICKHOUSE_HTTP_ADDR=$HOST:$CH_HTTP_PORT
MCPWATCH_CLICKHOUSE_DATABASE=$CH_DB
MCPWATCH_CLICKHOUSE_USER=$CH_WRITER_USER
MCPWATCH_CLICKHOUSE_PASSWORD=$CH_WRITER_PASSWORD
MCPWATCH_CLICKHOUSE_RO_USER=$CH_RO_USER
MCPWATCH_CLICKHOUSE_RO_PASSWORD=$CH_RO_PASSWORD
MCPWATCH_CLICKHOUSE_ADMIN_USER=$CH_ADMIN_USER
MCPWATCH_CLICKHOUSE_ADMIN_PASSWORD=$CH_ADMIN_PASSWORD
EOF
}

cmd_reset() {
  local what=${1:-}
  case $what in "" | --secrets) ;; *) die "usage: $0 reset [--secrets]" ;; esac
  cmd_stop
  # Keep $KAFKA_LIBS (downloaded jars) and installed packages, and (unless --secrets) the
  # generated passwords, so an `eval "$(stack.sh env)"` done before the reset stays valid.
  rm -rf -- "$KAFKA_DATA" "$KAFKA_LOGS" "$KAFKA_CONF" "$KAFKA_PIDFILE" "$KAFKA_DIR/libs.tmp" \
    "$CH_DIR" "$RUN_PORTS"
  if [[ $what == --secrets ]]; then
    rm -rf -- "$SECRETS_DIR"
    log "reset: removed kafka data/logs/config, clickhouse/ and secrets/ under $STATE_DIR (kept $KAFKA_LIBS)"
  else
    log "reset: removed kafka data/logs/config and clickhouse/ under $STATE_DIR (kept $KAFKA_LIBS and secrets/)"
  fi
}

cmd_kafka() {
  (($#)) || die "usage: $0 kafka TOOL [ARGS...]   TOOL: topics|console-producer|console-consumer|consumer-groups|metadata-quorum|features|storage|CLASS"
  kafka_installed || die "kafka not installed (run: $0 install)"
  local tool=$1 cls
  shift
  case $tool in
    topics) cls=org.apache.kafka.tools.TopicCommand ;;
    console-producer) cls=org.apache.kafka.tools.ConsoleProducer ;;
    console-consumer) cls=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    consumer-groups) cls=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    metadata-quorum) cls=org.apache.kafka.tools.MetadataQuorumCommand ;;
    features) cls=org.apache.kafka.tools.FeatureCommand ;;
    storage) cls=kafka.tools.StorageTool ;;
    *.*) cls=$tool ;;
    *) die "unknown kafka tool '$tool'" ;;
  esac
  kafka_tool "$cls" "$@"
}

cmd_clickhouse() {
  local role=writer
  case ${1:-} in admin | writer | ro) role=$1; shift ;; esac
  ch_installed || die "clickhouse not installed (run: $0 install)"
  ensure_secrets
  if [[ $role == admin ]]; then
    chq "$role" "$@"
  else
    chq "$role" -d "$CH_DB" "$@"
  fi
}

usage() {
  cat >&2 <<EOF
usage: $0 COMMAND
  install    fetch Kafka jars (Maven Central), apt-install ClickHouse and rsyslog; instant when present
  start      start Kafka (KRaft) and ClickHouse on $HOST, wait until ready; idempotent
  stop       stop both (SIGTERM, SIGKILL after ${STOP_TIMEOUT}s); idempotent
  restart    stop then start
  status     show both; exit 0 if both running, 3 otherwise
  env        print export lines for clients: eval "\$($0 env)"
  reset [--secrets]  stop and delete all data (Kafka logs, ClickHouse tables); keeps downloaded
             jars and the generated passwords (--secrets: regenerate those too)
  kafka TOOL [ARGS]                     e.g. kafka topics --bootstrap-server $HOST:$DEFAULT_KAFKA_PORT --list
  clickhouse [admin|writer|ro] [ARGS]   clickhouse-client as that user (writer by default)
  smoke      end-to-end check of the running stack with Kafka's and ClickHouse's own tools
state dir: $STATE_DIR (MCPWATCH_STATE_DIR)
EOF
}

main() {
  local cmd=${1:-}
  (($#)) && shift
  load_ports
  case $cmd in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    env) cmd_env ;;
    reset) cmd_reset "$@" ;;
    kafka) cmd_kafka "$@" ;;
    clickhouse) cmd_clickhouse "$@" ;;
    smoke) exec "$BASH" "$SCRIPT_DIR/smoke.sh" ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"
