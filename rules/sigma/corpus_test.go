package sigmarules_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/detectors/sigma"
	"github.com/mcpwatch/mcpwatch/enrich"
	"github.com/mcpwatch/mcpwatch/eval"
	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/processors"
)

// cleanCorpus is the normalized events of generated clean traffic: the simulated company of
// `mcpwatch eval` (eval/traffic) with its attack instances left out, built into raw events by the
// gateway's own event builder, masker and policy (eval.RunOffline) and normalized and enriched by
// the real process stage. Built once per test binary.
var cleanCorpus = sync.OnceValues(func() ([]*event.Event, error) {
	d, err := traffic.Generate(traffic.Config{Seed: 11, Principals: 60, History: 6 * time.Hour, Test: 75 * time.Minute, PerKind: 1})
	if err != nil {
		return nil, err
	}
	calls := d.Calls[:0]
	for _, c := range d.Calls {
		if c.Kind == "" {
			calls = append(calls, c)
		}
	}
	d.Calls = calls
	var out []*event.Event
	st := eval.Stages{
		Process: func(t event.Topics, en *enrich.Enricher) kafkaio.Handler {
			return processors.Handler(t, nil, processors.WithEnricher(en))
		},
		Detect: func(event.Topics) (kafkaio.Handler, error) {
			return kafkaio.HandlerFunc(func(context.Context, []*kgo.Record) (kafkaio.Result, error) { return kafkaio.Result{}, nil }), nil
		},
	}
	_, err = eval.RunOffline(context.Background(), d, st, func(e *event.Event) {
		c := *e
		out = append(out, &c)
	})
	return out, err
})

// maxCleanMatches bounds how often a rule of each level may fire on the clean corpus, as a share
// of its MCP events: an alert a SOC must triage is never raised on ordinary work (critical and
// high: none), medium rarely, low rules are context; informational rules are building blocks
// (the denial base rule counts every denial) and are not bounded.
var maxCleanMatches = map[string]float64{"critical": 0, "high": 0, "medium": 0.001, "low": 0.01}

// Every shipped rule stays quiet on clean traffic of the simulated company: thousands of calls
// of seven roles with their usual clients, tools, arguments (customer e-mails in support's
// mail, queries with owners' addresses), secrets read by engineers, payments by finance-ops,
// and the policy's ordinary denials. If this failed, a rule would page the SOC on a normal day.
func TestShippedRulesAreQuietOnCleanTraffic(t *testing.T) {
	rs := loadShipped(t)
	evs, err := cleanCorpus()
	if err != nil {
		t.Fatal(err)
	}
	corr, err := rs.NewCorrelator(sigma.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	mcp := 0
	hits := map[string]int{}
	example := map[string]*event.Event{}
	for _, e := range evs {
		if e.Source != event.SourceMCP || e.MCP == nil {
			continue
		}
		mcp++
		ms := rs.Match(e)
		for _, m := range ms {
			hits[m.RuleID]++
			if example[m.RuleID] == nil {
				example[m.RuleID] = e
			}
		}
		for _, cm := range corr.Observe(e, ms, nil) {
			hits[cm.Correlation.ID]++
			if example[cm.Correlation.ID] == nil {
				example[cm.Correlation.ID] = e
			}
		}
	}
	if mcp < 3000 {
		t.Fatalf("clean corpus has %d MCP events; want a few thousand", mcp)
	}
	t.Logf("clean corpus: %d MCP events", mcp)
	for _, r := range rs.Rules() {
		n := hits[r.ID]
		bound, ok := maxCleanMatches[r.Level]
		t.Logf("%-8s %4d  %s", r.Level, n, r.Title)
		if !ok || float64(n) <= bound*float64(mcp) {
			continue
		}
		e := example[r.ID]
		t.Errorf("%s (%s, %s) fired %d times on %d clean events (bound %g%%), e.g. %s %s/%s by %s", r.Title, r.Level, r.File,
			n, mcp, 100*bound, e.MCP.Method, e.Target.Server, e.MCP.Tool, event.PrincipalID(e.Principal))
	}
	for _, c := range rs.Correlations() {
		n := hits[c.ID]
		t.Logf("%-8s %4d  %s (correlation)", c.Level, n, c.Title)
		if bound, ok := maxCleanMatches[c.Level]; ok && float64(n) > bound*float64(mcp) {
			e := example[c.ID]
			t.Errorf("%s (%s, %s) fired %d times on %d clean events (bound %g%%), e.g. at %s by %s", c.Title, c.Level, c.File,
				n, mcp, 100*bound, e.Time.Format(time.RFC3339), event.PrincipalID(e.Principal))
		}
	}
}
