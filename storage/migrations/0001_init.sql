-- 0001 init: events, findings, actions.
--
-- Runs on ClickHouse 18.16 and newer. Rules for this and every later migration (see migrate.go):
--   * every statement is idempotent (IF NOT EXISTS / IF EXISTS): a migration interrupted halfway
--     is simply run again;
--   * within one event schema version, migrations only add (tables, columns with defaults), so
--     a writer built for an older migration keeps working against a newer database;
--   * ${database} is replaced by the validated database name; statements end with ';' at a line end.
--
-- Types chosen for 18.16:
--   * time is DateTime('UTC') (seconds) plus time_ms (Unix milliseconds); newer servers:
--     DateTime64(3, 'UTC');
--   * low-cardinality strings are String: LowCardinality is experimental on 18.16 (it needs
--     allow_experimental_low_cardinality_type=1) and evidence does not go into experimental
--     storage; newer servers: LowCardinality(String) for tenant, source, method, tool, server, ...;
--   * IPs are String (no IPv4/IPv6 types); newer servers: IPv6;
--   * string maps are parallel key/value arrays (no Map); newer servers: Map(String, String);
--   * no TTL, CODEC or skip indexes; newer servers: TTL by tenant retention, CODEC(Delta, ZSTD)
--     on times, bloom_filter indexes on id, trace_id and session_id.
--
-- Deduplication. Kafka delivery is at-least-once: a sink that crashes after INSERT and before its
-- offset commit writes the same records again, and a raw-topic replay re-normalizes them. Every
-- table is a ReplacingMergeTree whose sorting key ends with the record id and otherwise holds
-- only values taken from the record itself (tenant, principal, event time) and never from the
-- moment of writing (ingest_time, normalization time). A replayed record therefore has exactly
-- the same sorting key, and its partition, toYYYYMMDD(time), is the same too; ReplacingMergeTree
-- only collapses rows inside one partition, so the partition key must not use ingest time either.
-- Merges collapse duplicates eventually; forensic queries that must count exactly use FINAL (or
-- GROUP BY id). No version column: the copies are the same record, and which one survives does
-- not matter.
--
-- Sorting key (tenant, principal, time, id): forensic questions start with "what did this
-- principal of this tenant do between t1 and t2", which this key answers with a range scan.
-- principal is the subject, else the OAuth client id, else 'anonymous' (the Kafka record key).

CREATE TABLE IF NOT EXISTS ${database}.events
(
    id               String,
    time             DateTime('UTC'),
    time_ms          UInt64,
    ingest_time      DateTime('UTC'),
    normalized_time  DateTime('UTC'),
    schema           UInt16,
    tenant           String,
    principal        String,
    source           String,
    observer         String,
    subject          String,
    client_id        String,
    issuer           String,
    token_id         String,
    roles            Array(String),
    auth_methods     Array(String),
    session_id       String,
    request_id       String,
    trace_id         String,
    span_id          String,
    direction        String,
    method           String,
    tool             String,
    resource_uri     String,
    prompt           String,
    protocol_version String,
    transport        String,
    client_name      String,
    client_version   String,
    tools_hash       String,
    arguments_masked String,
    server           String,
    route            String,
    sandbox          String,
    src_ip           String,
    src_port         UInt16,
    dst_ip           String,
    dst_port         UInt16,
    result           Enum8('' = 0, 'allowed' = 1, 'denied' = 2, 'error' = 3, 'other' = 4),
    policy_rule      String,
    reason           String,
    error_code       Int32,
    http_status      UInt16,
    request_bytes    UInt64,
    response_bytes   UInt64,
    latency_ms       Float64,
    data_classes     Array(String),
    pii_kinds        Array(String),
    pii_counts       Array(UInt32),
    proc_pid         UInt32,
    proc_ppid        UInt32,
    proc_uid         UInt32,
    proc_comm        String,
    proc_exe         String,
    proc_args        Array(String),
    proc_cgroup_id   UInt64,
    proc_syscall     String,
    proc_path        String,
    span_name        String,
    span_kind        String,
    span_service     String,
    span_status      String,
    span_duration_ms Float64,
    attr_keys        Array(String),
    attr_values      Array(String),
    severity         UInt8,
    signature        String,
    name             String,
    sensitivity      Float32,
    cef              String,
    raw              String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (tenant, principal, time, id)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS ${database}.findings
(
    id             String,
    time           DateTime('UTC'),
    time_ms        UInt64,
    ingest_time    DateTime('UTC'),
    schema         UInt16,
    tenant         String,
    principal      String,
    subject        String,
    client_id      String,
    detector       String,
    score          Float64,
    severity       UInt8,
    summary        String,
    window_start   DateTime('UTC'),
    window_end     DateTime('UTC'),
    feature_names  Array(String),
    feature_values Array(Float64),
    event_ids      Array(String),
    raw            String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (tenant, principal, time, id)
SETTINGS index_granularity = 8192;

-- Actions are keyed by the subject acted upon ('' for actions on servers or sandboxes).
CREATE TABLE IF NOT EXISTS ${database}.actions
(
    id          String,
    time        DateTime('UTC'),
    time_ms     UInt64,
    ingest_time DateTime('UTC'),
    schema      UInt16,
    tenant      String,
    subject     String,
    finding_id  String,
    kind        String,
    target      String,
    status      String,
    detail      String,
    attempts    UInt32,
    latency_ms  Float64,
    raw         String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (tenant, subject, time, id)
SETTINGS index_granularity = 8192;
