-- The ClickHouse user of the plugin's differential-privacy path (dpUser), for servers with SQL
-- access control (ClickHouse 20.5 and newer). It may read and append to the ε ledger and nothing
-- else: the aggregate itself runs as the read-only user, so this user needs no SELECT on events.
-- Render it by replacing ${database}, ${user} and ${password_sha256} (the hex SHA-256 of the
-- password, so the password is in no query log) and run it as the admin, e.g.
--
--   sed -e "s/\${database}/mcpwatch/g" -e "s/\${user}/mcpwatch_dp/g" \
--       -e "s/\${password_sha256}/$(printf %s "$PW" | sha256sum | cut -d' ' -f1)/g" dp_user.sql |
--     clickhouse-client --multiquery
--
-- ClickHouse 18.16 has no SQL users or table grants: there dpUser can only be the writer user
-- from users.xml, and CheckHealth says so (dashboards/README.md).
CREATE ROLE IF NOT EXISTS ${database}_ledger;
GRANT SELECT, INSERT ON ${database}.privacy_budget TO ${database}_ledger;
CREATE USER IF NOT EXISTS ${user} IDENTIFIED WITH sha256_hash BY '${password_sha256}' DEFAULT DATABASE ${database};
GRANT ${database}_ledger TO ${user};
ALTER USER ${user} DEFAULT ROLE ${database}_ledger;
