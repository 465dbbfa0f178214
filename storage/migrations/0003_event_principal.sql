-- 0003 events: the principal attributes the event model carries since 0001 was written, plus
-- the faster lookups newer servers offer. (OCSF renderings are not stored: the normalizer
-- publishes them on their own topic for OCSF consumers.)
--
-- This file is a Go text/template (see render.go): its lc function and feature conditions choose
-- between the ClickHouse 18.16 form and the newer one; ${database} is the database.
--
-- ADD COLUMN is not idempotent on 18.16 (no IF NOT EXISTS): Migrate looks each column up in
-- system.columns first and skips the statement when it exists, so an interrupted run resumes.
-- One column per statement, always in this form: ALTER TABLE db.table ADD COLUMN name Type ...

-- The OAuth scopes the credential granted on this request, and its authentication context class.
ALTER TABLE ${database}.events ADD COLUMN scopes Array(String) DEFAULT [] AFTER auth_methods;
ALTER TABLE ${database}.events ADD COLUMN acr {{lc "String"}} DEFAULT '' AFTER scopes;
-- From the directory during enrichment, so analysts can compare a principal with its peers.
ALTER TABLE ${database}.events ADD COLUMN department {{lc "String"}} DEFAULT '' AFTER acr;
ALTER TABLE ${database}.events ADD COLUMN peer_group {{lc "String"}} DEFAULT '' AFTER department;

-- The same for findings, which name a principal too.
ALTER TABLE ${database}.findings ADD COLUMN department {{lc "String"}} DEFAULT '' AFTER client_id;
ALTER TABLE ${database}.findings ADD COLUMN peer_group {{lc "String"}} DEFAULT '' AFTER department;

{{if .DateTime64 -}}
-- Newer servers: the event time with its milliseconds as one value, computed from time_ms (the
-- 18.16 schema keeps seconds in `time` and milliseconds in `time_ms`).
ALTER TABLE ${database}.events ADD COLUMN time64 DateTime64(3, 'UTC') ALIAS toDateTime64(time_ms / 1000, 3, 'UTC');
{{- end}}

{{if .SkipIndexes -}}
-- Newer servers: "which events carry this id / trace / session" without a full scan. Parts
-- written before the index exists get it when they merge.
ALTER TABLE ${database}.events ADD INDEX IF NOT EXISTS idx_id id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE ${database}.events ADD INDEX IF NOT EXISTS idx_trace trace_id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE ${database}.events ADD INDEX IF NOT EXISTS idx_session session_id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE ${database}.findings ADD INDEX IF NOT EXISTS idx_id id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE ${database}.actions ADD INDEX IF NOT EXISTS idx_finding finding_id TYPE bloom_filter(0.01) GRANULARITY 4;
{{- end}}
