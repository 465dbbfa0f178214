-- 0009 audit: the response audit trail (issue 12), a copy of the audit topic for queries and for
-- `mcpwatch response verify --from-clickhouse`. The ledger stage is the only writer of the
-- topic; the sink copies it here.
--
-- One row per entry. raw is the entry exactly as on the topic, which is what verify reads: the
-- other columns are for queries and are never trusted by the verifier. Ordered by seq, the one
-- order of the chain; ReplacingMergeTree collapses a replayed copy of an entry (same seq, and the
-- same month of time: a replay carries the same time) after merges, and verify reads
-- LIMIT 1 BY seq, hash so that a replay before the merge is not mistaken for a fork, while two
-- different entries with one seq are both read and reported. No TTL and no retention: the trail
-- is kept like the topic (retention.ms -1).
--
-- Go text/template (see render.go).

CREATE TABLE IF NOT EXISTS ${database}.response_audit
(
    seq              UInt64,
    time             DateTime('UTC'),
    time_ms          UInt64,
    ingest_time      DateTime('UTC'),
    key_id           {{lc "String"}},
    prev_hash        String,
    hash             String,
    action_id        String,
    source_partition Int32,
    source_offset    Int64,
    tenant           {{lc "String"}},
    kind             {{lc "String"}},
    actor            String,
    action           String,
    raw              String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY seq;
