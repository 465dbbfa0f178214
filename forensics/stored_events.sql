-- MCP events of a time window, as stored (the raw column is the event's JSON without its CEF),
-- for `mcpwatch sigma test --from-clickhouse` (forensics.StoredEvents). {database} is the validated database name; the window,
-- tenant, principal and row limit are bound by the driver. FINAL: a replayed record is one event.
SELECT raw
FROM {database}.events FINAL
WHERE source = 'mcp'
  AND time >= ? AND time < ?
  AND (? = '' OR tenant = ?)
  AND (? = '' OR principal = ?)
ORDER BY time, id
LIMIT ?
