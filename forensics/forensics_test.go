package forensics

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/mcpwatch/mcpwatch/internal/chtest"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	"github.com/mcpwatch/mcpwatch/storage"
)

func seeded(t *testing.T) *chtest.DB {
	t.Helper()
	db := chtest.New(t)
	store(t, db, seed())
	return db
}

var day = Window{Since: seedDay, Until: seedDay.Add(24 * time.Hour)}

// Each canned investigation must find exactly what the seed put there: replayed events once,
// findings and actions linked through evidence and finding ids, other tenants kept out.
func TestInvestigations(t *testing.T) {
	db := seeded(t)
	ctx := context.Background()
	type want struct {
		events, denials, kernel, findings, actions uint64
		tools, principals                          []string
		first, last                                string
	}
	for _, c := range []struct {
		name string
		q    Query
		want want
	}{
		{"principal mallory", Query{Subject: Principal, Value: "mallory", Tenant: "acme", Window: day},
			want{30, 10, 0, 1, 3, []string{"db_query", "export_csv"}, []string{"mallory"}, "02:00:00", "02:05:01"}},
		{"principal alice, one tenant", Query{Subject: Principal, Value: "alice", Tenant: "acme", Window: day},
			want{20, 0, 0, 0, 0, []string{"db_query"}, []string{"alice"}, "09:00:00", "09:19:00"}},
		{"principal alice, all tenants", Query{Subject: Principal, Value: "alice", Window: day},
			want{21, 0, 0, 0, 0, []string{"db_query"}, []string{"alice"}, "09:00:00", "10:00:00"}},
		{"principal by client id", Query{Subject: Principal, Value: "claude-desktop", Tenant: "acme", Window: day},
			want{62, 10, 0, 1, 3, []string{"db_query", "export_csv", "search"}, []string{"alice", "bob", "mallory"}, "02:00:00", "14:09:30"}},
		{"session s-bob", Query{Subject: Session, Value: "s-bob", Tenant: "acme", Window: day},
			want{12, 0, 0, 0, 0, []string{"search"}, []string{"bob"}, "14:00:00", "14:09:30"}},
		{"session s-mall", Query{Subject: Session, Value: "s-mall", Window: day},
			want{30, 10, 0, 1, 3, []string{"db_query", "export_csv"}, []string{"mallory"}, "02:00:00", "02:05:01"}},
		{"resource glob", Query{Subject: Resource, Value: "db://sales/*", Tenant: "acme", Window: day},
			want{50, 10, 0, 1, 3, []string{"db_query", "export_csv"}, []string{"alice", "mallory"}, "02:00:00", "09:19:00"}},
		{"resource tool", Query{Subject: Resource, Value: "export_*", Window: day},
			want{1, 0, 0, 1, 3, []string{"export_csv"}, []string{"mallory"}, "02:03:10", "02:05:01"}},
		{"sandbox", Query{Subject: Sandbox, Value: "sbx-7", Tenant: "acme", Window: day},
			want{33, 10, 3, 1, 3, []string{"db_query", "export_csv"}, []string{"anonymous", "mallory"}, "02:00:00", "02:05:01"}},
		{"sandbox, one minute", Query{Subject: Sandbox, Value: "sbx-7", Window: Window{Since: at("02:01:00"), Until: at("02:02:00")}},
			want{9, 2, 3, 0, 0, []string{"db_query"}, []string{"anonymous", "mallory"}, "02:01:00", "02:01:50"}},
		{"injection attempt", Query{Subject: Principal, Value: "x' OR '1'='1", Window: day},
			want{0, 0, 0, 0, 0, nil, nil, "", ""}},
		{"other tenant", Query{Subject: Principal, Value: "mallory", Tenant: "globex", Window: day},
			want{0, 0, 0, 0, 0, nil, nil, "", ""}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tl, err := Investigate(ctx, db.Reader, db.Name, c.q)
			if err != nil {
				t.Fatal(err)
			}
			s, w := tl.Summary, c.want
			if s.Events != w.events || s.Denials != w.denials || s.KernelEvents != w.kernel || s.Findings != w.findings || s.Actions != w.actions {
				t.Errorf("counts: events %d denied %d kernel %d findings %d actions %d; want %d %d %d %d %d",
					s.Events, s.Denials, s.KernelEvents, s.Findings, s.Actions, w.events, w.denials, w.kernel, w.findings, w.actions)
			}
			if !slices.Equal(s.Tools, w.tools) && !(len(s.Tools) == 0 && len(w.tools) == 0) {
				t.Errorf("tools %q, want %q", s.Tools, w.tools)
			}
			if !slices.Equal(s.Principals, w.principals) && !(len(s.Principals) == 0 && len(w.principals) == 0) {
				t.Errorf("principals %q, want %q", s.Principals, w.principals)
			}
			if w.first != "" && (s.FirstSeen.Format(time.TimeOnly) != w.first || s.LastSeen.Format(time.TimeOnly) != w.last) {
				t.Errorf("seen %s..%s, want %s..%s", s.FirstSeen, s.LastSeen, w.first, w.last)
			}
			if got := uint64(len(tl.Entries)); got != s.Events+s.Findings+s.Actions {
				t.Errorf("%d entries for %d+%d+%d", got, s.Events, s.Findings, s.Actions)
			}
			if !slices.IsSortedFunc(tl.Entries, func(a, b Entry) int { return a.Time.Compare(b.Time) }) {
				t.Error("timeline not in time order")
			}
		})
	}
}

// The timeline a responder reads for mallory: the denied calls with their rule, the kernel
// side through the sandbox, the finding with its score, and the response, in order; in all three
// output formats.
func TestTimelineOutput(t *testing.T) {
	db := seeded(t)
	tl, err := Investigate(context.Background(), db.Reader, db.Name, Query{Subject: Sandbox, Value: "sbx-7", Tenant: "acme", Window: day})
	if err != nil {
		t.Fatal(err)
	}
	if tl.Summary.HighestScore != 92.5 || !slices.Equal(tl.Summary.SrcIPs, []string{"203.0.113.7"}) || tl.Summary.Sessions != 1 {
		t.Fatalf("summary %+v", tl.Summary)
	}
	first := tl.Entries[0]
	if first.Kind != "event" || first.Outcome != "denied/no-bulk-export" || first.What != "tools/call db_query db://sales/customers" ||
		first.Detail != "bulk export of customer data" || first.Signature != "MCP-4001" {
		t.Fatalf("first entry %+v", first)
	}
	var kinds []string
	for _, e := range tl.Entries {
		if e.Kind != "event" || strings.HasPrefix(e.Signature, "KRN-") {
			kinds = append(kinds, e.Kind+":"+e.Signature)
		}
	}
	want := []string{"event:KRN-execve", "event:KRN-connect", "event:KRN-openat", "finding:rate", "action:revoke", "action:webhook", "action:quarantine"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("non-call entries %q, want %q", kinds, want)
	}
	if k := tl.Entries[len(tl.Entries)-1]; k.What != "quarantine/sandbox/acme/sbx-7" || k.Outcome != "succeeded" || !strings.Contains(k.Detail, "2 attempt(s), 1250 ms") {
		t.Fatalf("last entry %+v", k)
	}

	var buf bytes.Buffer
	if err := tl.Write(&buf, "table"); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, s := range []string{`Investigation: sandbox "sbx-7", acme, 2026-11-20 00:00:00 .. 2026-11-21 00:00:00 UTC`,
		"events 33 (denied 10, errors 0, kernel 3), findings 1 (highest score 92.5), actions 3", "execve /bin/sh",
		"comm=python3 shell spawned by MCP server", "connect 198.51.100.9:4444", "92.5", "tool calls 12x above baseline", "(37 entries)"} {
		if !strings.Contains(out, s) {
			t.Errorf("table output lacks %q:\n%s", s, out)
		}
	}
	buf.Reset()
	if err := tl.Write(&buf, "csv"); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(recs) != 38 || !slices.Equal(recs[0], csvHeader) || recs[1][1] != "event" {
		t.Fatalf("csv: %d records, err %v", len(recs), err)
	}
	buf.Reset()
	if err := tl.Write(&buf, "json"); err != nil {
		t.Fatal(err)
	}
	var j struct {
		Subject string
		Summary Summary
		Entries []Entry
	}
	if err := json.Unmarshal(buf.Bytes(), &j); err != nil || j.Subject != "sandbox" || j.Summary.Events != 33 || len(j.Entries) != 37 {
		t.Fatalf("json: %+v %v", j.Summary, err)
	}
	if err := tl.Write(&buf, "xml"); err == nil {
		t.Fatal("unknown format accepted")
	}
}

// A timeline longer than the limit is cut and says so, while the summary still counts all.
func TestInvestigateLimit(t *testing.T) {
	db := seeded(t)
	tl, err := Investigate(context.Background(), db.Reader, db.Name, Query{Subject: Principal, Value: "mallory", Window: day, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if !tl.Truncated || tl.Summary.Events != 30 || len(tl.Entries) != 5+1+3 {
		t.Fatalf("truncated %v, events %d, entries %d", tl.Truncated, tl.Summary.Events, len(tl.Entries))
	}
}

func TestInvestigateRefusesBadInput(t *testing.T) {
	for name, q := range map[string]Query{
		"no value":     {Subject: Principal, Window: day},
		"bad subject":  {Subject: "table", Value: "x", Window: day},
		"empty window": {Subject: Principal, Value: "x", Window: Window{Since: seedDay, Until: seedDay}},
	} {
		if _, err := Investigate(context.Background(), nil, "db", q); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Investigate(context.Background(), nil, "db; DROP", Query{Subject: Principal, Value: "x", Window: day}); !errors.Is(err, ErrInvalid) {
		t.Error("bad database accepted")
	}
}

func TestParseWindow(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	w, err := ParseWindow(2*time.Hour, "", "", now)
	if err != nil || w.Until != now.Add(time.Second) || w.Since != now.Add(time.Second-2*time.Hour) {
		t.Fatalf("--last: %+v %v", w, err)
	}
	w, err = ParseWindow(0, "2026-11-20", "2026-11-20T02:00:00Z", now)
	if err != nil || w.Since != seedDay || w.Until != at("02:00:00") {
		t.Fatalf("--since/--until: %+v %v", w, err)
	}
	w, err = ParseWindow(0, "", "2026-11-20 02:00:00", now)
	if err != nil || w.Since != at("02:00:00").Add(-24*time.Hour) {
		t.Fatalf("--until only: %+v %v", w, err)
	}
	for _, bad := range [][2]string{{"yesterday", ""}, {"2026-11-21", "2026-11-20"}} {
		if _, err := ParseWindow(0, bad[0], bad[1], now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ParseWindow(time.Hour, "2026-11-20", "", now); err == nil {
		t.Error("--last with --since accepted")
	}
}

// mcpwatch_ro is refused writes by the server itself, even when the client asks for readonly=0:
// `mcpwatch query` and `investigate` run as this user, so a forensic query can never change
// evidence.
func TestReadOnlyUser(t *testing.T) {
	env := testenv.ClickHouse(t)
	ctx := context.Background()
	admin, err := storage.Open(ctx, storage.Options{Addr: env.Addr, User: env.AdminUser, Password: env.AdminPassword})
	if err != nil {
		testenv.Missing(t, "ClickHouse", err.Error())
	}
	defer admin.Close()
	probe := env.Database + ".forensics_probe_" + testenv.Unique(t)
	if err := admin.Exec(ctx, "CREATE TABLE "+probe+" (x UInt8) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Exec(context.Background(), "DROP TABLE IF EXISTS "+probe) }()
	ro, err := storage.Open(ctx, storage.Options{Addr: env.Addr, User: env.ROUser, Password: env.ROPassword, Database: env.Database})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	cols, rows, err := storage.QueryTable(ctx, ro, "SELECT count() AS n FROM "+probe)
	if err != nil || len(rows) != 1 || cols[0] != "n" || rows[0][0] != "0" {
		t.Fatalf("read as %s: %v %v", env.ROUser, rows, err)
	}
	for _, settings := range []clickhouse.Settings{nil, {"readonly": 0}} {
		c := ctx
		if settings != nil {
			c = clickhouse.Context(ctx, clickhouse.WithSettings(settings))
		}
		b, err := ro.PrepareBatch(c, "INSERT INTO "+probe+" (x)")
		if err == nil {
			if err = b.Append(uint8(1)); err == nil {
				err = b.Send()
			}
			_ = b.Close()
		}
		var ex *clickhouse.Exception
		if !errors.As(err, &ex) || ex.Code != 164 {
			t.Fatalf("INSERT as %s (settings %v): %v, want server exception 164 (READONLY)", env.ROUser, settings, err)
		}
	}
	// The test databases' reader (admin with readonly=2) is refused the same way.
	db := chtest.New(t)
	b, err := db.Reader.PrepareBatch(ctx, "INSERT INTO "+db.Name+".events (id)")
	if err == nil {
		if err = b.Append("x"); err == nil {
			err = b.Send()
		}
		_ = b.Close()
	}
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) || ex.Code != 164 {
		t.Fatalf("INSERT through the test reader: %v, want 164", err)
	}
}

// A principal investigation sets its profile ("normal": the newest version) next to its last
// hour ("now") and shows its latest score with the evidence, in the table and in JSON; other
// investigations do not.
func TestPrincipalBehaviour(t *testing.T) {
	db := seeded(t)
	ctx := context.Background()
	tl, err := Investigate(ctx, db.Reader, db.Name, Query{Subject: Principal, Value: "mallory", Tenant: "acme", Window: day})
	if err != nil {
		t.Fatal(err)
	}
	b := tl.Behaviour
	if b == nil || len(b.Normal) != 1 || b.Now == nil || b.Score == nil {
		t.Fatalf("behaviour %+v", b)
	}
	n := b.Normal[0]
	if n.Detector != "ueba" || n.Version != 2 || n.Observations != 40 || !slices.Equal(n.Tools, []Count{{"db_query", 40}}) ||
		!slices.Equal(n.Networks, []Count{{"10.1.0.0/16", 40}}) || len(n.Features) != 1 || n.HourCounts[10] != 40 {
		t.Errorf("normal %+v", n)
	}
	if b.Now.Calls != 30 || !slices.Equal(b.Now.Tools, []Count{{"db_query", 29}, {"export_csv", 1}}) ||
		!slices.Equal(b.Now.SrcIPs, []Count{{"203.0.113.7", 30}}) || b.Now.Until.Format(time.TimeOnly) != "02:04:50" {
		t.Errorf("now %+v", b.Now)
	}
	if b.Score.Score != 87 || len(b.Score.Evidence) != 2 || b.Score.Evidence[0].Feature != "calls_per_min" || b.Score.Evidence[1].PeerPercentile != nil {
		t.Errorf("score %+v", b.Score)
	}
	var out bytes.Buffer
	if err := tl.Write(&out, "table"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Normal (ueba profile v2, updated 2026-11-19 10:00:02, since 2026-11-01 10:00:00, 40 observations, confidence 0.60, peer group analysts):",
		"  tools: db_query 40\n", "  networks: 10.1.0.0/16 40\n", "  calls_per_min: mean 0.5 ± 0.3, p50 0.4, p95 1\n",
		"  active hours (UTC): 10 (40)\n",
		"Now (the hour to 2026-11-20 02:04:50): 30 calls\n  tools: db_query 29, export_csv 1\n",
		"Latest score 87.0 at 2026-11-20 02:05:00: 87: calls_per_min 6 vs 0.5 (self); first use of export_csv\n",
		"calls_per_min", "6 calls/min, normal 0.5", "first call of export_csv",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table output lacks %q:\n%s", want, out.String())
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("\n%s", out.String()[:strings.Index(out.String(), "TIME ")])
	out.Reset()
	if err := tl.Write(&out, "json"); err != nil {
		t.Fatal(err)
	}
	var j struct {
		Behaviour Behaviour `json:"behaviour"`
	}
	if err := json.Unmarshal(out.Bytes(), &j); err != nil || j.Behaviour.Score == nil || j.Behaviour.Normal[0].Version != 2 {
		t.Fatalf("json behaviour %+v, %v", j.Behaviour, err)
	}
	other, err := Investigate(ctx, db.Reader, db.Name, Query{Subject: Session, Value: "s-mall", Window: day})
	if err != nil || other.Behaviour != nil {
		t.Fatalf("session investigation behaviour %+v, %v", other.Behaviour, err)
	}
	// A principal without a profile or a score says so rather than failing.
	bob, err := Investigate(ctx, db.Reader, db.Name, Query{Subject: Principal, Value: "bob", Tenant: "acme", Window: day})
	if err != nil || bob.Behaviour == nil || len(bob.Behaviour.Normal) != 0 || bob.Behaviour.Score != nil || bob.Behaviour.Now.Calls != 12 {
		t.Fatalf("bob %+v, %v", bob.Behaviour, err)
	}
	out.Reset()
	if err := bob.Write(&out, "table"); err != nil || !strings.Contains(out.String(), "Normal: no behaviour profile stored") {
		t.Fatalf("bob table: %v\n%s", err, out.String())
	}
}
