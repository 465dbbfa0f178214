package forensics

import (
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// The seed is one realistic day of tenant acme (and a little of tenant globex), the data every
// investigation test and every cookbook query in docs/forensics.md runs against:
//
//   - alice (analyst, 10.1.0.5, session s-alice): 09:00–09:19, 20 allowed tools/call db_query on
//     db://sales/orders, one a minute; the call at 09:10 carried 2 masked e-mails.
//   - bob (analyst, 10.1.0.6, session s-bob): 14:00–14:09, 10 allowed tools/call search; a
//     tools/list at 14:00 (tools hash h1) and at 14:05 (h2): the tool definitions changed
//     mid-session.
//   - mallory (203.0.113.7, session s-mall, sandbox sbx-7): 02:00:00–02:04:50, 30 tools/call every
//     10 s, db_query on db://sales/customers; every third (10) denied by rule no-bulk-export,
//     each call with 1 masked phone_kr; at 02:03:10 her only export_csv call (allowed). Her
//     events were delivered twice (a replay). A rate finding (score 92.5) at 02:05:00 cites three
//     of her events; a revoke (412 ms) and a webhook (380 ms) follow at 02:05:00.4, a quarantine
//     of sbx-7 at 02:05:01 (failed once, then succeeded: 2 attempts, 1250 ms).
//   - sandbox sbx-7 kernel events: 02:01:00 execve /bin/sh by python3, 02:01:05 connect to
//     198.51.100.9:4444, 02:01:10 openat /etc/shadow.
//   - mallory's behaviour profile (detector ueba, two versions; the newer, v2, has 40
//     observations since 2026-11-01): db_query 40, client claude-desktop, network 10.1.0.0/16,
//     calls_per_min mean 0.5, active at 10:00 UTC. Her threat score at 02:05:00 is 87 with two
//     pieces of evidence: calls_per_min 6 against 0.5 (self, 99th percentile of peers) and the
//     first use of export_csv (no peer percentile).
//   - globex/alice: 10:00, one allowed tools/call db_query (a different tenant's alice).
//   - the day before, 10:00: one db_query call each by acme's alice and mallory.
var seedDay = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func at(hms string) time.Time {
	t, err := time.Parse("15:04:05", hms)
	if err != nil {
		panic(err)
	}
	return seedDay.Add(time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second)
}

type seedData struct {
	events   []event.Event
	findings []event.Finding
	actions  []event.Action
	scores   []event.Score
	profiles []event.Profile
	// mallory's events, for evidence ids and replay
	mallory []event.Event
}

func call(tenant, sub, ip, session string, t time.Time, tool, uri string, res event.Result, rule string) event.Event {
	sig, name := "MCP-1001", "Tool call"
	if res == event.ResultDenied {
		sig, name = "MCP-4001", "Request denied by policy"
	}
	return event.Event{
		ID: event.NewID(), Time: t, Source: event.SourceMCP, Observer: "gw-1", Tenant: tenant,
		Principal:   event.Principal{Subject: sub, ClientID: "claude-desktop", Roles: []string{"analyst"}},
		Correlation: event.Correlation{SessionID: session, RequestID: "1"},
		MCP: &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: tool, ResourceURI: uri,
			ProtocolVersion: "2025-11-25", Transport: "streamable-http"},
		Target:     event.Target{Server: "sales-db"},
		Network:    event.Network{SrcIP: ip, SrcPort: 50000},
		Outcome:    event.Outcome{Result: res, PolicyRule: rule},
		Size:       event.Size{Request: 300, Response: 2000},
		Severity:   3,
		Normalized: &event.Normalized{Time: t, Signature: sig, Name: name},
	}
}

func seed() seedData {
	var d seedData
	for i := range 20 {
		e := call("acme", "alice", "10.1.0.5", "s-alice", at("09:00:00").Add(time.Duration(i)*time.Minute), "db_query", "db://sales/orders", event.ResultAllowed, "analysts-read-sales")
		if i == 10 {
			e.PII = map[string]int{"email": 2}
			e.DataClasses = []string{"pii"}
		}
		d.events = append(d.events, e)
	}
	for i := range 10 {
		d.events = append(d.events, call("acme", "bob", "10.1.0.6", "s-bob", at("14:00:00").Add(time.Duration(i)*time.Minute+30*time.Second), "search", "", event.ResultAllowed, "analysts-search"))
	}
	for i, h := range []string{"h1", "h2"} {
		e := call("acme", "bob", "10.1.0.6", "s-bob", at("14:00:00").Add(time.Duration(i)*5*time.Minute), "", "", event.ResultAllowed, "analysts-search")
		e.MCP.Method, e.MCP.Direction, e.MCP.ToolsHash = "tools/list", event.DirResponse, h
		e.Normalized.Signature, e.Normalized.Name = "MCP-1002", "Tools listed"
		d.events = append(d.events, e)
	}
	for i := range 30 {
		tool, res, rule := "db_query", event.ResultAllowed, "analysts-read-sales"
		if i%3 == 0 {
			res, rule = event.ResultDenied, "no-bulk-export"
		}
		if i == 19 {
			tool = "export_csv"
		}
		e := call("acme", "mallory", "203.0.113.7", "s-mall", at("02:00:00").Add(time.Duration(i)*10*time.Second), tool, "db://sales/customers", res, rule)
		e.Target.Sandbox = "sbx-7"
		e.PII = map[string]int{"phone_kr": 1}
		e.DataClasses = []string{"pii", "finance"}
		if res == event.ResultDenied {
			e.Outcome.Reason, e.Outcome.HTTPStatus, e.Outcome.ErrorCode = "bulk export of customer data", 403, -32001
		}
		d.mallory = append(d.mallory, e)
	}
	d.events = append(d.events, d.mallory...)
	for _, k := range []struct {
		t, syscall, path, reason string
		dst                      event.Network
	}{
		{"02:01:00", "execve", "/bin/sh", "shell spawned by MCP server", event.Network{}},
		// As the eBPF agent publishes a connect: the destination in the network fields.
		{"02:01:05", "connect", "", "egress to unknown host", event.Network{DstIP: "198.51.100.9", DstPort: 4444}},
		{"02:01:10", "openat", "/etc/shadow", "sensitive file read", event.Network{}},
	} {
		d.events = append(d.events, event.Event{
			ID: event.NewID(), Time: at(k.t), Source: event.SourceKernel, Observer: "node-1", Tenant: "acme",
			Target: event.Target{Server: "sales-db", Sandbox: "sbx-7"}, Network: k.dst,
			Process:    &event.Process{PID: 4242, PPID: 4200, UID: 1000, Comm: "python3", Syscall: k.syscall, Path: k.path, CgroupID: 77},
			Outcome:    event.Outcome{Result: event.ResultAllowed, Reason: k.reason},
			Severity:   7,
			Normalized: &event.Normalized{Time: at(k.t), Signature: "KRN-" + k.syscall, Name: "Kernel " + k.syscall},
		})
	}
	// The day before: alice and mallory already used db_query, so only bob's search and
	// mallory's export_csv are new tools on the seed day.
	for _, sub := range []string{"alice", "mallory"} {
		d.events = append(d.events, call("acme", sub, "10.1.0.9", "s-prev-"+sub, at("10:00:00").Add(-24*time.Hour), "db_query", "db://sales/orders", event.ResultAllowed, "analysts-read-sales"))
	}
	d.events = append(d.events, call("globex", "alice", "192.0.2.10", "s-globex", at("10:00:00"), "db_query", "db://crm/leads", event.ResultAllowed, "all"))

	f := event.Finding{ID: event.NewID(), Time: at("02:05:00"), Tenant: "acme",
		Principal: event.Principal{Subject: "mallory", ClientID: "claude-desktop"}, Detector: "rate", Score: 92.5, Severity: 9,
		Summary: "tool calls 12x above baseline", WindowStart: at("02:00:00"), WindowEnd: at("02:05:00"),
		Features: map[string]float64{"frequency": 0.95}, EventIDs: []string{d.mallory[0].ID, d.mallory[3].ID, d.mallory[19].ID}}
	d.findings = append(d.findings, f)
	d.actions = append(d.actions,
		event.Action{ID: event.NewID(), Time: at("02:05:00").Add(400 * time.Millisecond), Tenant: "acme", FindingID: f.ID, Subject: "mallory",
			Kind: event.ActionRevoke, Target: "revoke/subject/acme/mallory", Status: "succeeded", Attempts: 1, LatencyMS: 412},
		event.Action{ID: event.NewID(), Time: at("02:05:00").Add(400 * time.Millisecond), Tenant: "acme", FindingID: f.ID, Subject: "mallory",
			Kind: event.ActionWebhook, Target: "https://soc.example/hook", Status: "succeeded", Attempts: 1, LatencyMS: 380},
		event.Action{ID: event.NewID(), Time: at("02:05:01"), Tenant: "acme", FindingID: f.ID,
			Kind: event.ActionQuarantine, Target: "quarantine/sandbox/acme/sbx-7", Status: "succeeded", Attempts: 2, LatencyMS: 1250,
			Detail: "cgroup frozen"},
	)
	for v, obs := range map[uint64]uint64{1: 30, 2: 40} {
		week := make([]float64, 168)
		week[3*24+10] = float64(obs) // Thursday 10:00 UTC
		d.profiles = append(d.profiles, event.Profile{Time: at("10:00:00").Add(-24*time.Hour + time.Duration(v)*time.Second),
			Tenant: "acme", Subject: "mallory", Detector: "ueba", Version: v, FirstSeen: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC),
			Observations: obs, Confidence: 0.6, PeerGroup: "analysts",
			Features: []event.ProfileFeature{{Name: "calls_per_min", Mean: 0.5, Stddev: 0.3, P50: 0.4, P95: 1}},
			Categories: []event.ProfileCategory{
				{Name: "tool", Values: []event.ProfileValue{{Value: "db_query", Count: float64(obs)}}},
				{Name: "client", Values: []event.ProfileValue{{Value: "claude-desktop", Count: float64(obs)}}},
				{Name: "network", Values: []event.ProfileValue{{Value: "10.1.0.0/16", Count: float64(obs)}}},
			},
			WeekHours: week, State: []byte{1, 2, 3}})
	}
	pp := 99.0
	d.scores = append(d.scores, event.Score{Time: at("02:05:00"), Tenant: "acme", Subject: "mallory", Score: 87,
		Components:    map[string]float64{"frequency": 0.9, "user_risk": 0.6},
		Contributions: map[string]float64{"frequency": 27, "user_risk": 18},
		Explanation:   "87: calls_per_min 6 vs 0.5 (self); first use of export_csv",
		Evidence: []event.Evidence{
			{Detector: "ueba", Check: "rate", Component: "frequency", Feature: "calls_per_min", Value: 90, Contribution: 27,
				Observed: 6, Baseline: 0.5, BaselineSource: "self", PeerPercentile: &pp, Detail: "6 calls/min, normal 0.5",
				WindowStart: at("02:00:00"), WindowEnd: at("02:05:00"), EventIDs: []string{d.mallory[0].ID}},
			{Detector: "ueba", Check: "new_tool", Component: "user_risk", Feature: "tool", Value: 60, Contribution: 18,
				Observed: 1, Baseline: 0, BaselineSource: "peers", Detail: "first call of export_csv",
				WindowStart: at("02:03:10"), WindowEnd: at("02:03:10"), EventIDs: []string{d.mallory[19].ID}},
		}})
	return d
}
