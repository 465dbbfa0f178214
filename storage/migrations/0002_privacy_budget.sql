-- 0002 privacy budget: the differential-privacy ledger behind `mcpwatch query --dp` and the
-- privacy package's API (docs/privacy.md).
--
-- Append-only. Every noisy query first inserts a reservation (+ε), then either an 'answered'
-- row (ε 0, the released value in detail) or, when it is refused after reserving (budget
-- exceeded, pool under 10,000 records, query failed), a release (-ε) of its reservation. What an
-- analyst has spent in the accounting window is sum(epsilon) over their rows with
-- time >= now - period; a reservation whose process died before answering stays spent (fail
-- closed). Release and answered rows carry their reservation's time, so they fall in the same
-- window and partition as it.
--
-- The ledger is written by the writer user; the read-only user can read it (analysts may look at
-- their own spending) but not change it. ReplacingMergeTree on id makes a retried insert
-- harmless; readers also GROUP BY id so an unmerged duplicate is never counted twice.

CREATE TABLE IF NOT EXISTS ${database}.privacy_budget
(
    id          String,
    reservation String,
    time        DateTime('UTC'),
    time_ms     UInt64,
    analyst     String,
    epsilon     Float64,
    status      String,
    mechanism   String,
    query       String,
    detail      String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (analyst, time, id)
SETTINGS index_granularity = 8192;
