package storage

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// chdb runs statements and queries on chdb, the embedded build of current ClickHouse, through
// testdata/chdb_check.py. CI's server is 18.16, so this is where the newer-server DDL meets a
// real engine. The Python comes from $MCPWATCH_CHDB_PYTHON or the peers venv that
// scripts/peers.sh installs; without chdb the test is skipped, and fails under CI=true.
func chdb(t *testing.T, statements, queries []string) (version string, results [][][]string) {
	t.Helper()
	python := os.Getenv("MCPWATCH_CHDB_PYTHON")
	if python == "" {
		python = filepath.Join("..", ".local", "peers-venv", "bin", "python")
	}
	if _, err := os.Stat(python); err != nil {
		testenv.Missing(t, "chdb", "no Python at "+python+" (run scripts/peers.sh)")
	}
	in, err := json.Marshal(map[string][]string{"statements": statements, "queries": queries})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, filepath.Join("testdata", "chdb_check.py"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var res struct {
		Missing, Error, Statement, Version string
		Results                            [][][]string
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("chdb_check.py: %v: %v\nstdout: %s\nstderr: %s", err, jerr, out, stderr.String())
	}
	switch {
	case res.Missing != "":
		testenv.Missing(t, "chdb", res.Missing+" (run scripts/peers.sh)")
	case res.Error != "":
		t.Fatalf("chdb %s refused:\n%s\n--- statement ---\n%s", res.Version, res.Error, res.Statement)
	case err != nil:
		t.Fatalf("chdb_check.py: %v\n%s", err, stderr.String())
	}
	return res.Version, res.Results
}

// newerServerSchema is every migration as a current server gets it, for database db. Access
// control statements are left out: chdb's embedded user may not manage users and roles (its
// error is ACCESS_DENIED), so those are checked by TestRenderReaderRole instead.
func newerServerSchema(t *testing.T, db string) []string {
	t.Helper()
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{"CREATE DATABASE IF NOT EXISTS " + db, query("schema_migrations", db)}
	for _, m := range ms {
		rendered, err := Render(m, db, AllFeatures())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range rendered {
			if strings.HasPrefix(s, "CREATE ROLE") || strings.HasPrefix(s, "GRANT") {
				continue
			}
			stmts = append(stmts, s)
		}
	}
	return stmts
}

// The newer-server form of the schema must be accepted by a current ClickHouse and behave as the
// 18.16 form does: if this fails, `mcpwatch migrate` would break on the servers production runs.
// It checks the newer types really are used, that replays collapse in the dedup views, that
// the per-minute aggregates count what was inserted, and that the latest profile wins.
func TestNewerServerSchemaOnChdb(t *testing.T) {
	const db = "mcpw"
	stmts := newerServerSchema(t, db)
	ev := func(id, ts, tool, result string, latency string) string {
		return `INSERT INTO mcpw.events (id, time, time_ms, tenant, principal, subject, tool, server, method, source, result,
			latency_ms, request_bytes, pii_counts, scopes, acr, department, peer_group, raw) VALUES
			('` + id + `', toDateTime('` + ts + `', 'UTC'), toUnixTimestamp(toDateTime('` + ts + `', 'UTC')) * 1000 + 250, 'acme', 'alice', 'alice',
			'` + tool + `', 'sales-db', 'tools/call', 'mcp', '` + result + `', ` + latency + `, 100, [2, 1], ['mcp:tools'], 'mfa', 'sales', 'emea-sales',
			'{"id":"` + id + `"}')`
	}
	stmts = append(stmts,
		ev("e1", "2026-11-23 09:06:12", "db_query", "allowed", "10"),
		ev("e1", "2026-11-23 09:06:12", "db_query", "allowed", "10"), // a replayed copy
		ev("e2", "2026-11-23 09:06:40", "db_query", "denied", "0"),
		ev("e3", "2026-11-23 09:07:01", "send_mail", "allowed", "30"),
		`INSERT INTO mcpw.scores (id, time, time_ms, tenant, subject, score, component_names, component_values, explanation,
			evidence.feature, evidence.observed, evidence.peer_percentile, evidence.window_start, evidence.event_ids) VALUES
			('acme/alice/1795424772000', toDateTime64('2026-11-23 09:06:12.000', 3, 'UTC'), 1795424772000, 'acme', 'alice', 42.5, ['frequency'], [0.9],
			'42.5: calls_per_min', ['calls_per_min', 'tool'], [182, 1], [99, nan],
			[toDateTime64('2026-11-23 09:06:00.000', 3, 'UTC'), toDateTime64('2026-11-23 09:05:00.000', 3, 'UTC')], [['e1'], []])`,
		`INSERT INTO mcpw.findings (id, time, time_ms, tenant, principal, detector, check, tags, evidence.feature) VALUES
			('f1', toDateTime64('2026-11-23 09:06:12.000', 3, 'UTC'), 1795424772000, 'acme', 'alice', 'ueba', 'new_tool', ['T1530'], ['tool'])`,
		`INSERT INTO mcpw.profiles (tenant, principal, profile, period, version, updated_time, observations, feature_names, feature_mean) VALUES
			('acme', 'alice', 'calls', '7d', 1, now64(3), 10, ['rate'], [1.5])`,
		`INSERT INTO mcpw.profiles (tenant, principal, profile, period, version, updated_time, observations, feature_names, feature_mean) VALUES
			('acme', 'alice', 'calls', '7d', 2, now64(3), 20, ['rate'], [2.5])`,
	)
	queries := []string{
		"SELECT name, type FROM system.columns WHERE database = 'mcpw' AND table = 'scores' AND name IN ('time', 'tenant', 'time_ms') ORDER BY name",
		"SELECT name FROM system.data_skipping_indices WHERE database = 'mcpw' AND table = 'events' ORDER BY name",
		"SELECT count(), uniqExact(id) FROM mcpw.events_dedup",
		"SELECT toString(time64), acr, department FROM mcpw.events FINAL WHERE id = 'e1'",
		"SELECT minute, tool, result, calls, denied, latency_ms_p50_p90_p99 FROM mcpw.events_per_minute ORDER BY minute, tool, result",
		"SELECT observations, feature_mean FROM mcpw.profiles_latest",
		"SELECT count() FROM mcpw.scores_dedup WHERE time >= toDateTime('2026-11-23 00:00:00', 'UTC')",
		// 0007: evidence through the recreated dedup views, one row per evidence.
		"SELECT explanation, e.feature, e.observed, isNaN(e.peer_percentile), toString(e.window_start), e.event_ids FROM mcpw.scores_dedup ARRAY JOIN evidence AS e",
		"SELECT check, tags, evidence.feature FROM mcpw.findings_dedup ARRAY JOIN evidence",
		"SELECT type FROM system.columns WHERE database = 'mcpw' AND table = 'scores' AND name = 'evidence.window_start'",
	}
	version, res := chdb(t, stmts, queries)
	t.Logf("chdb ClickHouse %s: %d statements", version, len(stmts))
	want := [][][]string{
		{{"tenant", "LowCardinality(String)"}, {"time", "DateTime64(3, 'UTC')"}, {"time_ms", "UInt64"}},
		{{"idx_id"}, {"idx_session"}, {"idx_trace"}},
		{{"3", "3"}},
		{{"2026-11-23 09:06:12.250", "mfa", "sales"}},
		// The replayed copy of e1 is counted twice: the view sees INSERTs. The sink's write-once
		// lookup is what keeps such copies out (TestSinkKillAndReplay).
		{
			{"2026-11-23 09:06:00", "db_query", "allowed", "2", "0", "[10,10,10]"},
			{"2026-11-23 09:06:00", "db_query", "denied", "1", "1", "[nan,nan,nan]"},
			{"2026-11-23 09:07:00", "send_mail", "allowed", "1", "0", "[30,30,30]"},
		},
		{{"20", "[2.5]"}},
		{{"1"}},
		{
			{"42.5: calls_per_min", "calls_per_min", "182", "0", "2026-11-23 09:06:00.000", "['e1']"},
			{"42.5: calls_per_min", "tool", "1", "1", "2026-11-23 09:05:00.000", "[]"},
		},
		{{"new_tool", "['T1530']", "tool"}},
		{{"Array(DateTime64(3, 'UTC'))"}},
	}
	for i := range want {
		if i >= len(res) || !slices.EqualFunc(res[i], want[i], slices.Equal[[]string]) {
			var got [][]string
			if i < len(res) {
				got = res[i]
			}
			t.Errorf("%s\ngot  %q\nwant %q", queries[i], got, want[i])
		}
	}
}
