-- Applied migrations, one row per version (duplicates from racing migrators collapse).
SELECT version, any(name), any(checksum)
FROM ${database}.schema_migrations
GROUP BY version
ORDER BY version;
