-- 0007 explanations: why a score or a finding is what it is, the client's user agent and proxy.
--
-- Go text/template (see render.go). Columns are added one per statement in the guarded form of
-- 0003 (Migrate skips a column system.columns already lists), so an interrupted run resumes.
--
-- Evidence is stored as a Nested column, `evidence`: one array per field, all of a row's arrays
-- of equal length, element i of each being evidence i. 18.16 has no Map or tuple-typed JSON, and
-- Nested reads naturally: `ARRAY JOIN evidence AS e` gives one row per evidence with e.feature,
-- e.observed, e.baseline, .... Each sub-column is added on its own (`evidence.feature`), which
-- ClickHouse treats as the same Nested; Nested sub-columns take no DEFAULT (an old part reads
-- them as empty arrays). Fields:
--   detector, check, component, feature  which signal (component: the score component it feeds)
--   value, contribution                   the signal 0–100, and the points it added to the score
--   observed, baseline, baseline_source   the value seen, the normal one and whose ("self",
--                                         "peers", "rule")
--   peer_percentile                       where observed ranks among peers, 0–100; NaN when the
--                                         peer group is unknown or too small (test isNaN())
--   detail                                in words
--   window_start, window_end, event_ids   the event time and the events it rests on

-- scores: the one-line explanation, each component's contribution (weight × value; parallel
-- arrays sorted by component name, like component_names/component_values), and the evidence.
ALTER TABLE ${database}.scores ADD COLUMN explanation String DEFAULT '' AFTER component_values;
ALTER TABLE ${database}.scores ADD COLUMN contribution_names Array({{lc "String"}}) DEFAULT [] AFTER explanation;
ALTER TABLE ${database}.scores ADD COLUMN contribution_values Array(Float64) DEFAULT [] AFTER contribution_names;
ALTER TABLE ${database}.scores ADD COLUMN evidence.detector Array({{lc "String"}}) AFTER contribution_values;
ALTER TABLE ${database}.scores ADD COLUMN evidence.check Array({{lc "String"}}) AFTER evidence.detector;
ALTER TABLE ${database}.scores ADD COLUMN evidence.component Array({{lc "String"}}) AFTER evidence.check;
ALTER TABLE ${database}.scores ADD COLUMN evidence.feature Array({{lc "String"}}) AFTER evidence.component;
ALTER TABLE ${database}.scores ADD COLUMN evidence.value Array(Float64) AFTER evidence.feature;
ALTER TABLE ${database}.scores ADD COLUMN evidence.contribution Array(Float64) AFTER evidence.value;
ALTER TABLE ${database}.scores ADD COLUMN evidence.observed Array(Float64) AFTER evidence.contribution;
ALTER TABLE ${database}.scores ADD COLUMN evidence.baseline Array(Float64) AFTER evidence.observed;
ALTER TABLE ${database}.scores ADD COLUMN evidence.baseline_source Array({{lc "String"}}) AFTER evidence.baseline;
ALTER TABLE ${database}.scores ADD COLUMN evidence.peer_percentile Array(Float64) AFTER evidence.baseline_source;
ALTER TABLE ${database}.scores ADD COLUMN evidence.detail Array(String) AFTER evidence.peer_percentile;
ALTER TABLE ${database}.scores ADD COLUMN evidence.window_start Array({{time}}) AFTER evidence.detail;
ALTER TABLE ${database}.scores ADD COLUMN evidence.window_end Array({{time}}) AFTER evidence.window_start;
ALTER TABLE ${database}.scores ADD COLUMN evidence.event_ids Array(Array(String)) AFTER evidence.window_end;

-- findings: the check that concluded, its tags (ATT&CK / ATLAS ids, ...), its one-line
-- explanation and the same evidence.
ALTER TABLE ${database}.findings ADD COLUMN check {{lc "String"}} DEFAULT '' AFTER detector;
ALTER TABLE ${database}.findings ADD COLUMN tags Array({{lc "String"}}) DEFAULT [] AFTER check;
ALTER TABLE ${database}.findings ADD COLUMN explanation String DEFAULT '' AFTER summary;
ALTER TABLE ${database}.findings ADD COLUMN evidence.detector Array({{lc "String"}}) AFTER event_ids;
ALTER TABLE ${database}.findings ADD COLUMN evidence.check Array({{lc "String"}}) AFTER evidence.detector;
ALTER TABLE ${database}.findings ADD COLUMN evidence.component Array({{lc "String"}}) AFTER evidence.check;
ALTER TABLE ${database}.findings ADD COLUMN evidence.feature Array({{lc "String"}}) AFTER evidence.component;
ALTER TABLE ${database}.findings ADD COLUMN evidence.value Array(Float64) AFTER evidence.feature;
ALTER TABLE ${database}.findings ADD COLUMN evidence.contribution Array(Float64) AFTER evidence.value;
ALTER TABLE ${database}.findings ADD COLUMN evidence.observed Array(Float64) AFTER evidence.contribution;
ALTER TABLE ${database}.findings ADD COLUMN evidence.baseline Array(Float64) AFTER evidence.observed;
ALTER TABLE ${database}.findings ADD COLUMN evidence.baseline_source Array({{lc "String"}}) AFTER evidence.baseline;
ALTER TABLE ${database}.findings ADD COLUMN evidence.peer_percentile Array(Float64) AFTER evidence.baseline_source;
ALTER TABLE ${database}.findings ADD COLUMN evidence.detail Array(String) AFTER evidence.peer_percentile;
ALTER TABLE ${database}.findings ADD COLUMN evidence.window_start Array({{time}}) AFTER evidence.detail;
ALTER TABLE ${database}.findings ADD COLUMN evidence.window_end Array({{time}}) AFTER evidence.window_start;
ALTER TABLE ${database}.findings ADD COLUMN evidence.event_ids Array(Array(String)) AFTER evidence.window_end;

-- events: the HTTP User-Agent, and the trusted proxy that forwarded src_ip ('' when the TCP peer
-- was the client itself).
ALTER TABLE ${database}.events ADD COLUMN user_agent String DEFAULT '' AFTER dst_port;
ALTER TABLE ${database}.events ADD COLUMN proxy String DEFAULT '' AFTER user_agent;

-- The dedup views of 0005 are recreated: a view's `SELECT *` is expanded to the columns its
-- table had when the view was created (measured on 18.16), so without this they would not show
-- the new columns. DROP then CREATE works on every server; the view is missing only in between.
DROP TABLE IF EXISTS ${database}.events_dedup;
CREATE VIEW IF NOT EXISTS ${database}.events_dedup AS SELECT * FROM ${database}.events FINAL;
DROP TABLE IF EXISTS ${database}.findings_dedup;
CREATE VIEW IF NOT EXISTS ${database}.findings_dedup AS SELECT * FROM ${database}.findings FINAL;
DROP TABLE IF EXISTS ${database}.scores_dedup;
CREATE VIEW IF NOT EXISTS ${database}.scores_dedup AS SELECT * FROM ${database}.scores FINAL;

-- profiles (0004) gets no new columns: the sink stores each record of the profiles topic as one
-- row there, with
--   profile      the detector's name ("ueba", "rate", ...): one profile per detector and principal
--   period       'all': a detector's profile is decayed over the principal's whole history, not
--                a fixed span; window_start (first_seen) .. window_end (the newest event
--                profiled) says which history
--   version      the record's version (strictly increasing per profile): the highest one wins
--   tool_*       the "tool" category (decayed counts, rounded)
--   hour_counts  the 168 time-of-week bins folded into 24 hours of the day (UTC)
--   detail       the record as JSON without its state (the detector's own encoding)
-- principal is the record's sub: a principal id, or "peer:" and the group for a peer profile.
