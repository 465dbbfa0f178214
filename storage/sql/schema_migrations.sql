-- The migrations applied to a database, one row per migration. ReplacingMergeTree keyed by
-- version: if two migrators race, their rows for the same version collapse.
CREATE TABLE IF NOT EXISTS ${database}.schema_migrations
(
    version        UInt32,
    name           String,
    checksum       String,
    applied_at     DateTime('UTC'),
    server_version String
)
ENGINE = ReplacingMergeTree
ORDER BY version;
