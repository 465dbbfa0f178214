-- 0008 response: who or what decided each action, under which playbook, why, on what scope,
-- until when, and whether it was only a dry run (issue 12's playbooks, operator commands and
-- approvals all write the actions table).
--
-- Go text/template (see render.go); one guarded ADD COLUMN per statement, as in 0003.

ALTER TABLE ${database}.actions ADD COLUMN scope {{lc "String"}} DEFAULT '' AFTER latency_ms;
ALTER TABLE ${database}.actions ADD COLUMN actor String DEFAULT '' AFTER scope;
ALTER TABLE ${database}.actions ADD COLUMN playbook {{lc "String"}} DEFAULT '' AFTER actor;
ALTER TABLE ${database}.actions ADD COLUMN reason String DEFAULT '' AFTER playbook;
ALTER TABLE ${database}.actions ADD COLUMN control_id String DEFAULT '' AFTER reason;
-- Unix milliseconds when the action's control ends by itself; 0: permanent or not a control.
ALTER TABLE ${database}.actions ADD COLUMN expires_ms UInt64 DEFAULT 0 AFTER control_id;
ALTER TABLE ${database}.actions ADD COLUMN dry_run UInt8 DEFAULT 0 AFTER expires_ms;

-- The dedup view is recreated so that its `SELECT *` shows the new columns (see 0007).
DROP TABLE IF EXISTS ${database}.actions_dedup;
CREATE VIEW IF NOT EXISTS ${database}.actions_dedup AS SELECT * FROM ${database}.actions FINAL;
