package detectors

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
)

const sigmaHandlerRules = `title: Payment tool called
id: 0b6c5a4e-8f3d-4e2a-9c71-5d2f3b1a6e90
level: high
tags: [attack.impact, attack.t1657]
logsource: {product: mcpwatch, category: mcp_call}
detection:
  sel:
    mcp.tool|startswith: pay_
  condition: sel
---
title: Denied call
id: 22222222-2222-4222-8222-222222222222
name: denied
logsource: {category: mcp_call}
detection:
  sel: {outcome.result: denied}
  condition: sel
---
title: Spree of denied calls
id: 9d7e0c41-6a55-4c3e-8f10-2b9f1c7d4e21
level: critical
tags: [attack.credential_access, attack.t1110]
correlation:
  type: event_count
  rules: [denied]
  group-by: [principal.id]
  timespan: 1m
  condition: {gte: 3}
`

// The Sigma detector in the stage: a rule match and a correlation match each become a finding
// with the rule's id, title, level and tags and the matched fields as evidence, and feed the
// principal's threat score through its user-risk component; the rule that only feeds the
// correlation concludes nothing itself. If this fails, Sigma rules run but nobody sees them.
func TestSigmaInHandler(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mcp.yml"), []byte(sigmaHandlerRules), 0o600); err != nil {
		t.Fatal(err)
	}
	names := event.TopicNames("t")
	cfg := DefaultConfig()
	cfg.Detectors = []string{"sigma"}
	cfg.Sigma.Rules, cfg.Sigma.Shipped = []string{dir}, false
	reg := prometheus.NewRegistry()
	h, err := Build(names, cfg, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pay := req("mallory", 0)
	pay.MCP.Tool = "pay_invoice"
	var recs []*kgo.Record
	recs = append(recs, record(t, names.Events, pay))
	for i := range 3 {
		e := req("eve", time.Duration(i+1)*time.Second)
		e.Outcome.Result = event.ResultDenied
		recs = append(recs, record(t, names.Events, e))
	}
	res, err := h.Handle(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	findings, scores := split(t, names, res)
	if len(findings) != 2 {
		t.Fatalf("%d findings, want the payment rule's and the spree's: %+v", len(findings), findings)
	}
	f := findings[0]
	if f.Detector != "sigma" || f.Severity != 8 || f.Principal.Subject != "mallory" ||
		!slices.Equal(f.Tags, []string{"sigma", "attack.impact", "attack.t1657"}) || !strings.Contains(f.Summary, `"Payment tool called"`) {
		t.Fatalf("rule finding %+v", f)
	}
	ev := f.Evidence[0]
	if ev.Feature != "mcp.tool|startswith" || ev.Detail != `rule Payment tool called (0b6c5a4e-8f3d-4e2a-9c71-5d2f3b1a6e90) matched mcp.tool|startswith = "pay_invoice"` {
		t.Fatalf("rule evidence %+v", ev)
	}
	c := findings[1]
	if c.Principal.Subject != "eve" || c.Severity != 10 || c.Features["count"] != 3 || len(c.EventIDs) != 3 ||
		!slices.Contains(c.Tags, "attack.t1110") || c.Evidence[0].Feature != "event_count" || c.Evidence[0].Observed != 3 ||
		c.Evidence[1].Feature != "principal.id" || c.Evidence[1].Detail == "" {
		t.Fatalf("correlation finding %+v", c)
	}
	// Both findings raise their principal's score through the findings' user-risk component.
	risk := map[string]float64{}
	for _, s := range scores {
		risk[s.Subject] = s.Components["findings"]
	}
	if risk["mallory"] <= 0 || risk["eve"] <= 0 {
		t.Fatalf("findings risk %v, want both principals scored", risk)
	}
	for sel, want := range map[string]float64{
		`mcpwatch_detector_findings_total{detector="sigma"}`: 2,
		`mcpwatch_detector_events_total{detector="sigma"}`:   4,
		`mcpwatch_detector_principals{detector="sigma"}`:     1, // eve's group, reset after the match
		`mcpwatch_sigma_rules{kind="correlation"}`:           1,
		`mcpwatch_sigma_rules{kind="detection"}`:             2,
	} {
		if got := metric(t, reg, sel); got != want {
			t.Errorf("%s = %v, want %v", sel, got, want)
		}
	}
}

// An empty rule set is harmless, and rules that are configured but would not run are refused.
func TestSigmaConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Detectors, cfg.Sigma.Shipped = []string{"rate", "sigma"}, false
	h, err := Build(event.TopicNames("t"), cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.Handle(context.Background(), []*kgo.Record{record(t, "t.events", req("a", 0))})
	if err != nil || len(res.Dead) != 0 {
		t.Fatalf("empty sigma: %v %+v", err, res)
	}
	cfg.Sigma.Rules = []string{filepath.Join(t.TempDir(), "missing")}
	if _, err := Build(event.TopicNames("t"), cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing rules path: %v", err)
	}
}

// By default the stage runs the shipped rules: a credential file read through MCP is a finding
// with the rule's tags and the field that matched. If this failed, a default deployment would
// run none of the rules mcpwatch ships.
func TestSigmaShippedByDefault(t *testing.T) {
	cfg := DefaultConfig()
	if !slices.Contains(cfg.Detectors, "sigma") || !cfg.Sigma.Shipped {
		t.Fatalf("default detectors %v, shipped %v", cfg.Detectors, cfg.Sigma.Shipped)
	}
	cfg.Detectors = []string{"sigma"}
	h, err := Build(event.TopicNames("t"), cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	e := req("mallory", 0)
	e.MCP.Method, e.MCP.Tool, e.MCP.ResourceURI = "resources/read", "", "file:///etc/shadow"
	res, err := h.Handle(context.Background(), []*kgo.Record{record(t, "t.events", e)})
	if err != nil || len(res.Dead) != 0 {
		t.Fatalf("handle: %v %+v", err, res)
	}
	var found bool
	for _, r := range res.Out {
		if r.Topic != event.TopicNames("t").Findings {
			continue
		}
		var f event.Finding
		if err := event.Decode(r.Value, &f); err != nil {
			t.Fatal(err)
		}
		found = found || f.Detector == "sigma" && f.Check == "sigma" && strings.Contains(f.Summary, "Credential or System Secret File") &&
			slices.Contains(f.Tags, "attack.credential_access") && slices.ContainsFunc(f.Evidence, func(ev event.Evidence) bool {
			return strings.Contains(ev.Detail, "/etc/shadow")
		})
	}
	if !found {
		t.Fatalf("no finding of the shipped credential-file rule in %d records", len(res.Out))
	}
}
