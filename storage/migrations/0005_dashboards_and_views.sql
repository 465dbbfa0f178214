-- 0005 per-minute aggregates for dashboards, and the deduplicated read path.
--
-- Go text/template (see render.go).
--
-- events_minute holds one row per (tenant, minute, principal, tool, server, method, source,
-- result) with aggregate states; events_minute_mv fills it from every INSERT into events.
-- AggregatingMergeTree merges rows of the same key in the background, so readers always merge
-- the states themselves (the -Merge functions, or the events_per_minute view).
--
-- Replays. A materialized view sees INSERTs, not the table: rows written twice are counted
-- twice, and ReplacingMergeTree's later collapse of events does not reach the aggregates. The
-- sink therefore never writes an event twice in the first place: before each INSERT it looks up
-- which of the batch's ids the table already holds and leaves those out (see sink.go,
-- "write-once"), so a replayed Kafka range adds nothing here. docs/storage.md lists the narrow
-- cases that can still double a row and how to rebuild a day from events FINAL.
CREATE TABLE IF NOT EXISTS ${database}.events_minute
(
    tenant               {{lc "String"}},
    minute               DateTime('UTC'),
    principal            String,
    tool                 {{lc "String"}},
    server               {{lc "String"}},
    method               {{lc "String"}},
    source               {{lc "String"}},
    result               Enum8('' = 0, 'allowed' = 1, 'denied' = 2, 'error' = 3, 'other' = 4),
    calls_state          AggregateFunction(count),
    pii_hits_state       AggregateFunction(sum, UInt64),
    request_bytes_state  AggregateFunction(sum, UInt64),
    response_bytes_state AggregateFunction(sum, UInt64),
    latency_ms_state     AggregateFunction(quantilesTDigestIf(0.5, 0.9, 0.99), Float64, UInt8),
    max_severity_state   AggregateFunction(max, UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (tenant, minute, principal, tool, server, method, source, result)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.events_minute_mv TO ${database}.events_minute
AS SELECT
    tenant,
    toStartOfMinute(time) AS minute,
    principal,
    tool,
    server,
    method,
    source,
    result,
    countState() AS calls_state,
    sumState(toUInt64(arraySum(pii_counts))) AS pii_hits_state,
    sumState(request_bytes) AS request_bytes_state,
    sumState(response_bytes) AS response_bytes_state,
    quantilesTDigestIfState(0.5, 0.9, 0.99)(latency_ms, toUInt8(latency_ms > 0)) AS latency_ms_state,
    maxState(severity) AS max_severity_state
FROM ${database}.events
GROUP BY tenant, minute, principal, tool, server, method, source, result;

-- The dashboard read path: the aggregates merged per key. Sum calls/denied/errors over any
-- grouping; latency quantiles are per row (to combine rows, query events_minute with
-- quantilesTDigestIfMerge(0.5, 0.9, 0.99)(latency_ms_state) instead).
CREATE VIEW IF NOT EXISTS ${database}.events_per_minute AS
SELECT
    tenant,
    minute,
    principal,
    tool,
    server,
    method,
    source,
    result,
    countMerge(calls_state) AS calls,
    if(result = 'denied', calls, 0) AS denied,
    if(result = 'error', calls, 0) AS errors,
    sumMerge(pii_hits_state) AS pii_hits,
    sumMerge(request_bytes_state) AS request_bytes,
    sumMerge(response_bytes_state) AS response_bytes,
    quantilesTDigestIfMerge(0.5, 0.9, 0.99)(latency_ms_state) AS latency_ms_p50_p90_p99,
    maxMerge(max_severity_state) AS max_severity
FROM ${database}.events_minute
GROUP BY tenant, minute, principal, tool, server, method, source, result;

-- Deduplicated views of the base tables: FINAL collapses copies of a record that merges have not
-- collapsed yet. Filters on the sorting-key columns (tenant, principal, time) keep them cheap;
-- on 18.16 set enable_optimize_predicate_expression = 1 so the WHERE reaches the table.
CREATE VIEW IF NOT EXISTS ${database}.events_dedup AS SELECT * FROM ${database}.events FINAL;
CREATE VIEW IF NOT EXISTS ${database}.findings_dedup AS SELECT * FROM ${database}.findings FINAL;
CREATE VIEW IF NOT EXISTS ${database}.actions_dedup AS SELECT * FROM ${database}.actions FINAL;
CREATE VIEW IF NOT EXISTS ${database}.scores_dedup AS SELECT * FROM ${database}.scores FINAL;
-- The current version of every profile.
CREATE VIEW IF NOT EXISTS ${database}.profiles_latest AS SELECT * FROM ${database}.profiles FINAL;
