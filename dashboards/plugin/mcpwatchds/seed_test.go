package mcpwatchds

import (
	"context"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/chtest"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

var seedDay = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func at(h, m, s int) time.Time {
	return seedDay.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second)
}

// seedInvestigation stores, through the real sink, mallory's six calls in sandbox sbx-7 (every
// third denied), one kernel event of sbx-7, a finding with its revoke, and her score with two
// pieces of evidence; and inserts two analysts' privacy-ledger rows (0.5 answered, 0.5
// reserved then released).
func seedInvestigation(t *testing.T, db *chtest.DB) {
	t.Helper()
	var evs []event.Event
	for i := range 6 {
		res := event.ResultAllowed
		if i%3 == 0 {
			res = event.ResultDenied
		}
		tm := at(2, 0, i*10)
		evs = append(evs, event.Event{ID: event.NewID(), Time: tm, Source: event.SourceMCP, Observer: "gw-1", Tenant: "acme",
			Principal:   event.Principal{Subject: "mallory", ClientID: "claude-desktop"},
			Correlation: event.Correlation{SessionID: "s-mall", RequestID: "1"},
			MCP:         &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: "db_query", ResourceURI: "db://sales/customers"},
			Target:      event.Target{Server: "sales-db", Sandbox: "sbx-7"},
			Network:     event.Network{SrcIP: "203.0.113.7"},
			Outcome:     event.Outcome{Result: res, PolicyRule: "no-bulk-export"},
			Severity:    3, Normalized: &event.Normalized{Time: tm, Signature: "MCP-1001", Name: "Tool call"}})
	}
	evs = append(evs, event.Event{ID: event.NewID(), Time: at(2, 1, 0), Source: event.SourceKernel, Observer: "node-1", Tenant: "acme",
		Target:  event.Target{Server: "sales-db", Sandbox: "sbx-7"},
		Process: &event.Process{PID: 4242, Comm: "python3", Syscall: "openat", Path: "/etc/shadow"},
		Outcome: event.Outcome{Result: event.ResultAllowed, Reason: "sensitive file read"}, Severity: 7,
		Normalized: &event.Normalized{Time: at(2, 1, 0), Signature: "KRN-openat", Name: "Kernel openat"}})
	f := event.Finding{ID: "f-1", Time: at(2, 5, 0), Tenant: "acme", Principal: event.Principal{Subject: "mallory"},
		Detector: "rate", Score: 92.5, Severity: 9, Summary: "tool calls 12x above baseline", EventIDs: []string{evs[0].ID}}
	a := event.Action{ID: "a-1", Time: at(2, 5, 1), Tenant: "acme", FindingID: f.ID, Subject: "mallory",
		Kind: event.ActionRevoke, Target: "revoke/subject/acme/mallory", Status: "succeeded", Attempts: 1, LatencyMS: 412}
	pp := 99.0
	s := event.Score{Time: at(2, 5, 0), Tenant: "acme", Subject: "mallory", Score: 87,
		Components: map[string]float64{"frequency": 0.9}, Explanation: "87: calls_per_min 6 vs 0.5 (self)",
		Evidence: []event.Evidence{
			{Detector: "ueba", Check: "rate", Component: "frequency", Feature: "calls_per_min", Value: 90, Contribution: 27,
				Observed: 6, Baseline: 0.5, BaselineSource: "self", PeerPercentile: &pp, Detail: "6 calls/min, normal 0.5",
				WindowStart: at(2, 0, 0), WindowEnd: at(2, 5, 0), EventIDs: []string{evs[0].ID}},
			{Detector: "ueba", Check: "new_tool", Component: "user_risk", Feature: "tool", Value: 60, Contribution: 18,
				Observed: 1, BaselineSource: "peers", Detail: "first call of export_csv", WindowStart: at(2, 3, 0), WindowEnd: at(2, 3, 0)},
		}}
	topics := testenv.Topics(t)
	db.Store(t, topics, chtest.Records(t, topics.Events, evs), chtest.Records(t, topics.Findings, []event.Finding{f}),
		chtest.Records(t, topics.Actions, []event.Action{a}), chtest.Records(t, topics.Scores, []event.Score{s}))

	b, err := db.Admin.PrepareBatch(context.Background(), "INSERT INTO "+db.Name+".privacy_budget (id, reservation, time, time_ms, analyst, epsilon, status, mechanism, query, detail)")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		id, res, analyst, status string
		eps                      float64
	}{
		{"r1", "r1", "erin", "reserved", 0.5}, {"r2", "r1", "erin", "answered", 0}, {"r2", "r1", "erin", "answered", 0},
		{"r3", "r3", "frank", "reserved", 0.5}, {"r4", "r3", "frank", "released", -0.5},
	} {
		tm := at(9, 0, 0)
		if err := b.Append(r.id, r.res, tm, uint64(tm.UnixMilli()), r.analyst, r.eps, r.status, "laplace", "count", ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}
