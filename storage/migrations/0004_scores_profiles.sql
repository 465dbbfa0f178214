-- 0004 scores and profiles.
--
-- Go text/template (see render.go): time, lc, codec and index pick the ClickHouse 18.16 form or
-- the newer one. Deduplication follows 0001: ReplacingMergeTree, sorting key and partition taken
-- only from the record itself, so a replayed record collapses with its first copy.

-- scores: every threat score the detectors published on the scores topic (that topic is
-- compacted to the latest score per principal; this table keeps the history). A score record has
-- no id of its own: id is tenant/subject/time_ms, which is what makes a score unique.
CREATE TABLE IF NOT EXISTS ${database}.scores
(
    id               String,
    time             {{time}},
    time_ms          UInt64{{codec "Delta, ZSTD(1)"}},
    ingest_time      DateTime('UTC'),
    schema           UInt16,
    tenant           {{lc "String"}},
    subject          String,
    score            Float64,
    component_names  Array({{lc "String"}}),
    component_values Array(Float64),
    raw              String{{codec "ZSTD(3)"}}
    {{- index "idx_score score TYPE minmax GRANULARITY 4"}}
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (tenant, subject, time, id)
SETTINGS index_granularity = 8192;

-- profiles: UEBA behaviour baselines, one row per (tenant, principal, profile, period) and
-- version. A detector rewrites a profile by inserting a row with a higher version (its update
-- time in milliseconds); ReplacingMergeTree(version) keeps the highest, and profiles_latest (0005)
-- reads it with FINAL before merges have run.
--
--   profile  which model the baseline belongs to ("calls", "tools", "hours", ...)
--   period   the span the baseline summarises ("1h", "1d", "7d", "28d")
--   feature_* per-feature statistics as parallel arrays (mean, standard deviation, quantiles),
--            sorted by feature name, so equal profiles give equal rows
--   tool_*   how often each tool was called in the period
--   hour_counts calls per hour of day (24 values, UTC), for "works at unusual hours"
--
-- Not partitioned: ReplacingMergeTree only replaces rows within one partition, and a profile's
-- next version must replace the previous one whenever it is written.
CREATE TABLE IF NOT EXISTS ${database}.profiles
(
    tenant         {{lc "String"}},
    principal      String,
    profile        {{lc "String"}},
    period         {{lc "String"}},
    version        UInt64,
    updated_time   {{time}},
    window_start   {{time}},
    window_end     {{time}},
    observations   UInt64,
    department     {{lc "String"}},
    peer_group     {{lc "String"}},
    feature_names  Array({{lc "String"}}),
    feature_mean   Array(Float64),
    feature_stddev Array(Float64),
    feature_p50    Array(Float64),
    feature_p95    Array(Float64),
    tool_names     Array(String),
    tool_counts    Array(UInt64),
    hour_counts    Array(UInt64),
    detail         String{{codec "ZSTD(3)"}}
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, principal, profile, period)
SETTINGS index_granularity = 8192;
