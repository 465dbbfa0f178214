-- The migrations applied to a database, one row per migration. ReplacingMergeTree keyed by
-- version: if two migrators race, their rows for the same version collapse. features lists the
-- server features the migration was rendered with (render.go); empty means the 18.16 forms.
CREATE TABLE IF NOT EXISTS ${database}.schema_migrations
(
    version        UInt32,
    name           String,
    checksum       String,
    applied_at     DateTime('UTC'),
    server_version String,
    features       Array(String)
)
ENGINE = ReplacingMergeTree
ORDER BY version;
