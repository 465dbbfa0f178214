package dashboards

import (
	"context"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/chtest"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// seedDay is the day every panel query is run over.
var seedDay = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func at(h, m, s int) time.Time {
	return seedDay.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second)
}

func call(tenant, sub string, t time.Time, tool string, res event.Result) event.Event {
	return event.Event{
		ID: event.NewID(), Time: t, Source: event.SourceMCP, Observer: "gw-1", Tenant: tenant,
		Principal:   event.Principal{Subject: sub, ClientID: "claude-desktop", Roles: []string{"analyst"}},
		Correlation: event.Correlation{SessionID: "s-" + sub, RequestID: "1"},
		MCP: &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: tool, ResourceURI: "db://sales/customers",
			ProtocolVersion: "2025-11-25", Transport: "streamable-http", LatencyMS: 12},
		Target:     event.Target{Server: "sales-db", Sandbox: "sbx-7"},
		Network:    event.Network{SrcIP: "203.0.113.7", SrcPort: 50000},
		Outcome:    event.Outcome{Result: res, PolicyRule: "analysts-read-sales"},
		Size:       event.Size{Request: 300, Response: 2000},
		Severity:   3,
		PII:        map[string]int{"phone_kr": 1},
		Normalized: &event.Normalized{Time: t, Signature: "MCP-1001", Name: "Tool call"},
	}
}

// seed stores, through the real sink, a small incident of tenant acme (and one call of tenant
// globex): mallory's 30 calls to sales-db in sandbox sbx-7 (every third denied), bob's two
// tools/list answers with different hashes, three kernel events of sbx-7, a rate finding with
// a revoke, a timed quarantine, a lifted step-up and an approval, her threat score with two
// pieces of evidence, her profile and her peer group's, and one response audit entry
// (inserted: the ledger stage is the only writer of its topic).
func seed(t *testing.T, db *chtest.DB) {
	t.Helper()
	var evs []event.Event
	for i := range 30 {
		res := event.ResultAllowed
		if i%3 == 0 {
			res = event.ResultDenied
		}
		evs = append(evs, call("acme", "mallory", at(2, 0, i*10), "db_query", res))
	}
	for i, h := range []string{"h1", "h2"} {
		e := call("acme", "bob", at(14, i*5, 0), "", event.ResultAllowed)
		e.MCP.Method, e.MCP.Direction, e.MCP.ToolsHash = "tools/list", event.DirResponse, h
		evs = append(evs, e)
	}
	for i, k := range [][2]string{{"execve", "/bin/sh"}, {"connect", "198.51.100.9:4444"}, {"openat", "/etc/shadow"}} {
		evs = append(evs, event.Event{ID: event.NewID(), Time: at(2, 1, i*5), Source: event.SourceKernel, Observer: "node-1", Tenant: "acme",
			Target:     event.Target{Server: "sales-db", Sandbox: "sbx-7"},
			Process:    &event.Process{PID: 4242, PPID: 4200, Comm: "python3", Syscall: k[0], Path: k[1], CgroupID: 77},
			Outcome:    event.Outcome{Result: event.ResultAllowed, Reason: "kernel " + k[0]},
			Severity:   7,
			Normalized: &event.Normalized{Time: at(2, 1, i*5), Signature: "KRN-" + k[0], Name: "Kernel " + k[0]}})
	}
	evs = append(evs, call("globex", "alice", at(10, 0, 0), "db_query", event.ResultAllowed))

	f := event.Finding{ID: event.NewID(), Time: at(2, 5, 0), Tenant: "acme",
		Principal: event.Principal{Subject: "mallory", ClientID: "claude-desktop"}, Detector: "rate", Check: "burst", Score: 92.5, Severity: 9,
		Summary: "tool calls 12x above baseline", Explanation: "calls_per_min 6 vs 0.5", WindowStart: at(2, 0, 0), WindowEnd: at(2, 5, 0),
		Features: map[string]float64{"frequency": 0.95}, EventIDs: []string{evs[0].ID}}
	open := event.Finding{ID: event.NewID(), Time: at(14, 6, 0), Tenant: "acme",
		Principal: event.Principal{Subject: "bob"}, Detector: "ueba", Check: "tools_changed", Score: 40, Severity: 5,
		Summary: "tool definitions changed mid-session"}
	expires := at(23, 0, 0).Add(48 * time.Hour)
	acts := []event.Action{
		{ID: event.NewID(), Time: at(2, 5, 0).Add(400 * time.Millisecond), Tenant: "acme", FindingID: f.ID, Subject: "mallory",
			Kind: event.ActionRevoke, Target: "revoke/subject/acme/mallory", Status: "succeeded", Attempts: 1, LatencyMS: 412,
			Scope: event.ControlScope("subject"), Actor: "playbook:exfil", Playbook: "exfil", Reason: "score 92.5 >= 90", ControlID: "c-revoke", Expires: &expires},
		{ID: event.NewID(), Time: at(2, 5, 1), Tenant: "acme", FindingID: f.ID,
			Kind: event.ActionQuarantine, Target: "quarantine/sandbox/acme/sbx-7", Status: "succeeded", Attempts: 2, LatencyMS: 1250,
			Scope: event.ControlScope("sandbox"), Actor: "playbook:exfil", Playbook: "exfil", Reason: "kernel egress", ControlID: "c-quar", Expires: &expires},
		{ID: event.NewID(), Time: at(3, 0, 0), Tenant: "acme", Subject: "mallory",
			Kind: event.ActionStepUp, Target: "step_up/subject/acme/mallory", Status: "succeeded", Attempts: 1,
			Scope: event.ControlScope("subject"), Actor: "operator:carol", Reason: "verify identity", ControlID: "c-step", Expires: &expires},
		{ID: event.NewID(), Time: at(4, 0, 0), Tenant: "acme", Subject: "mallory",
			Kind: event.ActionLift, Target: "step_up/subject/acme/mallory", Status: "succeeded", Attempts: 1,
			Actor: "operator:carol", Reason: "verified by phone", ControlID: "c-step"},
		{ID: event.NewID(), Time: at(4, 30, 0), Tenant: "acme", Subject: "mallory",
			Kind: event.ActionApproval, Target: "approval/payments/transfer", Status: "pending", Attempts: 1,
			Actor: "gateway:gw-1", Reason: "2 of 3 approvals needed"},
	}
	pp := 99.0
	score := event.Score{Time: at(2, 5, 0), Tenant: "acme", Subject: "mallory", Score: 87,
		Components:    map[string]float64{"frequency": 0.9, "user_risk": 0.6},
		Contributions: map[string]float64{"frequency": 27, "user_risk": 18},
		Explanation:   "87: calls_per_min 6 vs 0.5 (self)",
		Evidence: []event.Evidence{
			{Detector: "ueba", Check: "rate", Component: "frequency", Feature: "calls_per_min", Value: 90, Contribution: 27,
				Observed: 6, Baseline: 0.5, BaselineSource: "self", PeerPercentile: &pp, Detail: "6 calls/min, normal 0.5",
				WindowStart: at(2, 0, 0), WindowEnd: at(2, 5, 0), EventIDs: []string{evs[0].ID}},
			{Detector: "ueba", Check: "new_tool", Component: "user_risk", Feature: "tool", Value: 60, Contribution: 18,
				Observed: 1, BaselineSource: "peers", Detail: "first call of export_csv", WindowStart: at(2, 3, 10), WindowEnd: at(2, 3, 10)},
		}}
	profile := func(sub string, mean float64) event.Profile {
		return event.Profile{Time: at(1, 0, 0), Tenant: "acme", Subject: sub, Detector: "ueba", Version: 1,
			FirstSeen: seedDay.Add(-20 * 24 * time.Hour), Observations: 40, Confidence: 0.6, PeerGroup: "analysts",
			Features: []event.ProfileFeature{{Name: "calls_per_min", Mean: mean, Stddev: 0.3, P50: mean, P95: 2 * mean}}}
	}
	topics := testenv.Topics(t)
	db.Store(t, topics,
		chtest.Records(t, topics.Events, evs),
		chtest.Records(t, topics.Findings, []event.Finding{f, open}),
		chtest.Records(t, topics.Actions, acts),
		chtest.Records(t, topics.Scores, []event.Score{score}),
		chtest.Records(t, topics.Profiles, []event.Profile{profile("mallory", 0.5), profile("peer:analysts", 0.8)}))

	ctx := context.Background()
	b, err := db.Admin.PrepareBatch(ctx, "INSERT INTO "+db.Name+".response_audit (seq, time, time_ms, ingest_time, key_id, prev_hash, hash, action_id, tenant, kind, actor, action, raw)")
	if err != nil {
		t.Fatal(err)
	}
	at0 := at(2, 5, 1)
	if err := b.Append(uint64(1), at0, uint64(at0.UnixMilli()), at0, "k1", "", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		acts[0].ID, "acme", "action", "playbook:exfil", "revoke", "{}"); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}
