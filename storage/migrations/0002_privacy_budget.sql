-- 0002 privacy budget: the differential-privacy ledger behind `mcpwatch query --dp`.
--
-- One row per answered (or refused) noisy query: which analyst spent how much ε on what. The
-- remaining budget of an analyst is the configured total minus sum(epsilon) over the accounting
-- period. Rows are never updated; a ReplacingMergeTree on id makes a retried insert harmless.

CREATE TABLE IF NOT EXISTS ${database}.privacy_budget
(
    id        String,
    time      DateTime('UTC'),
    time_ms   UInt64,
    analyst   String,
    epsilon   Float64,
    mechanism String,
    query     String,
    status    String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (analyst, time, id)
SETTINGS index_granularity = 8192;
