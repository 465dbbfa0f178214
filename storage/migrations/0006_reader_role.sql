-- 0006 the read-only role for forensic SQL and dashboards.
--
-- Servers with SQL access control (20.5 and newer) get a role that may only SELECT from this
-- database; `mcpwatch migrate --ro-user NAME` creates the user with readonly = 2 and grants it
-- the role (the password comes from the environment, never from a migration file). On 18.16
-- there is no SQL access control: the read-only user lives in users.xml (deploy/local/stack.sh
-- writes it), and this migration renders to nothing.
{{if .RBAC -}}
CREATE ROLE IF NOT EXISTS ${database}_reader;
GRANT SELECT ON ${database}.* TO ${database}_reader;
{{- end}}
