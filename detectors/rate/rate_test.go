package rate

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/event"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

var seq int

// req is an MCP request by sub of tenant acme, at offset at from t0.
func req(sub string, at time.Duration) event.Event {
	seq++
	return event.Event{ID: fmt.Sprintf("ev-%06d", seq), Time: t0.Add(at), Source: event.SourceMCP, Tenant: "acme",
		Principal: event.Principal{Subject: sub, ClientID: "claude-desktop"},
		MCP:       &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: "db_query"},
		Outcome:   event.Outcome{Result: event.ResultAllowed}}
}

func newRate(t testing.TB, mod func(*Config)) *Rate {
	t.Helper()
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// obs observes e and returns the finding and the signal it produced, if any.
func obs(r *Rate, e event.Event) (*event.Finding, *detect.Signal) {
	var out detect.Output
	r.Observe(&e, &out)
	var f *event.Finding
	var s *detect.Signal
	if len(out.Findings) > 1 || len(out.Signals) > 1 {
		panic(fmt.Sprintf("one event, %d findings and %d signals", len(out.Findings), len(out.Signals)))
	}
	if len(out.Findings) == 1 {
		f = out.Findings[0]
	}
	if len(out.Signals) == 1 {
		s = &out.Signals[0]
	}
	return f, s
}

// expire expires r at offset at from t0 and returns its signals.
func expire(r *Rate, at time.Duration) []detect.Signal {
	var out detect.Output
	r.Expire(t0.Add(at), &out)
	if len(out.Findings) != 0 {
		panic("findings from Expire")
	}
	return out.Signals
}

// unit is a config where the score equals the number of calls in the last second (up to 100).
func unit(c *Config) {
	c.Window, c.Baseline, c.Ceiling = time.Second, 0, 100
}

// burst sends n requests by sub ending at offset at, 1ms apart, and returns the findings.
func burst(r *Rate, sub string, at time.Duration, n int) []*event.Finding {
	var out []*event.Finding
	for i := range n {
		if f, _ := obs(r, req(sub, at-time.Duration(n-1-i)*time.Millisecond)); f != nil {
			out = append(out, f)
		}
	}
	return out
}

func scores(fs []*event.Finding) []float64 {
	out := []float64{}
	for _, f := range fs {
		out = append(out, f.Score)
	}
	return out
}

// principal returns the state of the principal "tenant/sub", or nil.
func principalOf(r *Rate, k string) *principal {
	tenant, sub, _ := strings.Cut(k, "/")
	if e := r.principals.Get(key{tenant, sub}); e != nil {
		return &e.Value
	}
	return nil
}

func calls(r *Rate, k string) int {
	if p := principalOf(r, k); p != nil {
		return p.win.len()
	}
	return -1
}

// A config the detector cannot honour must be refused at start, not produce nonsense scores.
func TestConfigValidate(t *testing.T) {
	cases := map[string]struct {
		mod  func(*Config)
		want string // substring of the error; "" means valid
	}{
		"defaults":            {func(*Config) {}, ""},
		"zero baseline":       {func(c *Config) { c.Baseline = 0 }, ""},
		"zero cooldown":       {func(c *Config) { c.Cooldown = 0 }, ""},
		"zero window":         {func(c *Config) { c.Window = 0 }, "window"},
		"window over a day":   {func(c *Config) { c.Window, c.Ceiling = 25*time.Hour, 0.001 }, "window"},
		"negative baseline":   {func(c *Config) { c.Baseline = -1 }, "baseline"},
		"ceiling at baseline": {func(c *Config) { c.Ceiling = 2 }, "ceiling"},
		"NaN ceiling":         {func(c *Config) { c.Ceiling = math.NaN() }, "finite"},
		"zero threshold":      {func(c *Config) { c.Threshold = 0 }, "threshold"},
		"threshold above 100": {func(c *Config) { c.Threshold = 101 }, "threshold"},
		"negative cooldown":   {func(c *Config) { c.Cooldown = -time.Second }, "cooldown"},
		"no principals":       {func(c *Config) { c.MaxPrincipals = 0 }, "principals"},
		"huge window":         {func(c *Config) { c.Ceiling, c.Window = 1e6, time.Hour }, "timestamps per principal"},
		"day window":          {func(c *Config) { c.Window, c.Baseline, c.Ceiling = 24*time.Hour, 0, 0.01 }, ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mod(&cfg)
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error about %q", err, c.want)
			}
			if _, nerr := New(cfg); (nerr == nil) != (err == nil) {
				t.Fatalf("New disagrees with Validate: %v vs %v", nerr, err)
			}
		})
	}
}

// The score is the documented linear map of the rate, clamped: a wrong formula mis-ranks every
// principal.
func TestRateScoring(t *testing.T) {
	cases := []struct {
		calls int // in the default 10s window
		want  float64
	}{
		{1, 0},      // 0.1/s, far below baseline
		{20, 0},     // 2/s: exactly the baseline
		{21, 0.6},   // 2.1/s: 0.1/18 of the range
		{110, 50},   // 11/s: midway between 2 and 20
		{200, 100},  // 20/s: the ceiling
		{390, 100},  // above the ceiling is clamped
		{1000, 100}, // beyond the per-principal cap: still 100
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.calls), func(t *testing.T) {
			r := newRate(t, func(cfg *Config) { cfg.Threshold = 100 })
			last := 0.0
			step := 10 * time.Second / time.Duration(c.calls)
			for i := range c.calls {
				if _, s := obs(r, req("alice", time.Duration(i)*step)); s != nil {
					last = s.Value
				}
			}
			if last != c.want {
				t.Fatalf("%d calls in 10s: score %v, want %v", c.calls, last, c.want)
			}
		})
	}
}

// A finding must say what happened in words an analyst can act on, and carry the numbers and the
// evidence behind it.
func TestRateFinding(t *testing.T) {
	// Score 8.6/s → 36.7, 8.7/s → 37.2: with threshold 37 the 87th call is the first finding.
	r := newRate(t, func(c *Config) { c.Threshold = 37 })
	var got []*event.Finding
	var last event.Event
	for i := range 87 {
		last = req("alice", time.Duration(i)*100*time.Millisecond) // 87 calls over 8.6s
		if f, _ := obs(r, last); f != nil {
			got = append(got, f)
		}
	}
	if len(got) != 1 {
		t.Fatalf("got %d findings, want 1", len(got))
	}
	f := got[0]
	end := last.Time
	if f.Summary != "alice made 87 calls in 10s (8.7/s, normal ≤ 2/s)" {
		t.Errorf("summary %q", f.Summary)
	}
	if f.Detector != "rate" || f.Score != 37.2 || f.Severity != 4 || f.Tenant != "acme" ||
		f.Principal.Subject != "alice" || f.Principal.ClientID != "claude-desktop" {
		t.Errorf("finding fields: %+v", f)
	}
	if !f.Time.Equal(end) || !f.WindowEnd.Equal(end) || !f.WindowStart.Equal(end.Add(-10*time.Second)) {
		t.Errorf("times: time=%v window=[%v, %v], want end %v", f.Time, f.WindowStart, f.WindowEnd, end)
	}
	want := map[string]float64{"calls": 87, "rate_per_s": 8.7, "baseline": 2, "ceiling": 20, "window_s": 10}
	if !reflect.DeepEqual(f.Features, want) {
		t.Errorf("features %v, want %v", f.Features, want)
	}
	if len(f.EventIDs) != 20 || f.EventIDs[19] != last.ID {
		t.Errorf("evidence: %d ids ending %q, want the last 20 ending %q", len(f.EventIDs), f.EventIDs[len(f.EventIDs)-1], last.ID)
	}
	if f.ID != detect.FindingID("rate", last.ID) {
		t.Errorf("finding id %s is not derived from its event", f.ID)
	}
	// The finding must survive the wire.
	b, err := event.Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	var back event.Finding
	if err := event.Decode(b, &back); err != nil {
		t.Fatal(err)
	}
}

// Principals without a subject are named by client; the evidence holds only in-window events.
func TestRateFindingNamesClient(t *testing.T) {
	r := newRate(t, unit)
	obs(r, req("bot", -10*time.Second)) // a different principal, long before
	var f *event.Finding
	for i := range 60 {
		e := req("", time.Duration(i)*time.Millisecond)
		e.Principal = event.Principal{ClientID: "scraper"}
		if got, _ := obs(r, e); got != nil && f == nil {
			f = got
		}
	}
	if f == nil || !strings.HasPrefix(f.Summary, "client scraper made 50 calls in 1s") {
		t.Fatalf("finding %+v", f)
	}
	if len(f.EventIDs) != 20 {
		t.Fatalf("%d evidence ids", len(f.EventIDs))
	}
}

// Old calls must leave the window exactly when they are Window older than the newest call, or
// the rate (and every finding) is wrong.
func TestRateWindowEviction(t *testing.T) {
	r := newRate(t, nil) // 10s window
	for i := range 10 {
		obs(r, req("alice", time.Duration(i)*time.Second)) // t = 0..9s
	}
	if n := calls(r, "acme/alice"); n != 10 {
		t.Fatalf("calls %d, want 10", n)
	}
	obs(r, req("alice", 10*time.Second)) // window (0s, 10s]: the call at 0s leaves
	if n := calls(r, "acme/alice"); n != 10 {
		t.Fatalf("calls %d at the boundary, want 10", n)
	}
	obs(r, req("alice", 15*time.Second+time.Nanosecond)) // (5s+1ns, 15s+1ns]: 6..10s and this
	if n := calls(r, "acme/alice"); n != 6 {
		t.Fatalf("calls %d, want 6", n)
	}
	obs(r, req("alice", time.Hour))
	if n := calls(r, "acme/alice"); n != 1 {
		t.Fatalf("calls %d after an hour of silence, want 1", n)
	}
}

// Events arrive slightly out of order from several gateways: late ones inside the window count,
// ones older than the window do not (they cannot change a decision already made).
func TestRateLateEvents(t *testing.T) {
	r := newRate(t, nil)
	obs(r, req("alice", 20*time.Second))
	obs(r, req("alice", 15*time.Second)) // late, inside (10s, 20s]
	obs(r, req("alice", 10*time.Second)) // late, on the boundary: outside
	obs(r, req("alice", 2*time.Second))  // far too late
	if n := calls(r, "acme/alice"); n != 2 {
		t.Fatalf("calls %d, want 2", n)
	}
	if s := r.Stats(); s.Late != 2 || s.Counted != 2 {
		t.Fatalf("stats %+v", s)
	}
	obs(r, req("alice", 25*time.Second+time.Nanosecond)) // (15s+1ns, 25s+1ns]: 15s leaves
	if n := calls(r, "acme/alice"); n != 2 {
		t.Fatalf("calls %d, want 2 (20s and 25s)", n)
	}
}

// The cooldown keeps one incident from flooding the responder, yet an escalating attack must
// still be reported as it escalates.
func TestRateCooldown(t *testing.T) {
	type b struct {
		at time.Duration
		n  int
	}
	cases := map[string]struct {
		bursts []b
		want   []float64
	}{
		"burst escalates in steps of 20":   {[]b{{time.Second, 100}}, []float64{50, 70, 90}},
		"repeat inside cooldown is quiet":  {[]b{{time.Second, 100}, {11 * time.Second, 100}}, []float64{50, 70, 90}},
		"repeat after cooldown re-reports": {[]b{{time.Second, 100}, {32 * time.Second, 100}}, []float64{50, 70, 90, 50, 70, 90}},
		"small rise inside cooldown":       {[]b{{time.Second, 60}, {5 * time.Second, 65}}, []float64{50}},
		"rise of 20 inside cooldown":       {[]b{{time.Second, 55}, {10 * time.Second, 80}}, []float64{50, 70}},
		"cooldown counts from the last": {[]b{{time.Second, 55}, {20 * time.Second, 75}, {40 * time.Second, 60}},
			[]float64{50, 70}}, // the 70 at 20s restarts the cooldown: 40s is inside it
		"below threshold never reports": {[]b{{time.Second, 49}, {40 * time.Second, 49}}, []float64{}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := newRate(t, unit) // threshold 50, cooldown 30s
			var got []*event.Finding
			for _, b := range c.bursts {
				got = append(got, burst(r, "alice", b.at, b.n)...)
			}
			if s := scores(got); !reflect.DeepEqual(s, c.want) {
				t.Fatalf("finding scores %v, want %v", s, c.want)
			}
		})
	}
}

// One principal's calls must never raise another's score: not across subjects, not across
// tenants with the same subject.
func TestRatePrincipalSeparation(t *testing.T) {
	r := newRate(t, unit)
	var found []*event.Finding
	for i := range 40 {
		at := time.Duration(i) * time.Millisecond
		for _, tenant := range []string{"acme", "globex"} {
			for _, sub := range []string{"alice", "bob"} {
				e := req(sub, at)
				e.Tenant = tenant
				if f, _ := obs(r, e); f != nil {
					found = append(found, f)
				}
			}
		}
	}
	if len(found) != 0 {
		t.Fatalf("160 calls split over 4 principals (40 each, threshold 50) gave findings: %v", found[0].Summary)
	}
	for _, k := range []string{"acme/alice", "acme/bob", "globex/alice", "globex/bob"} {
		if n := calls(r, k); n != 40 {
			t.Fatalf("%s: %d calls, want 40", k, n)
		}
	}
	if f := burst(r, "alice", 50*time.Millisecond, 10); len(f) != 1 || f[0].Tenant != "acme" || f[0].Principal.Subject != "alice" {
		t.Fatalf("alice's own 50th call must report alice alone: %v", f)
	}
}

// Only MCP requests seen by the gateway count, denied ones included: responses, notifications,
// spans and kernel events would double-count or count the wrong thing.
func TestRateCountsOnlyRequests(t *testing.T) {
	base := req("alice", 0)
	cases := map[string]struct {
		mod  func(*event.Event)
		want bool
	}{
		"request":      {func(*event.Event) {}, true},
		"denied":       {func(e *event.Event) { e.Outcome.Result = event.ResultDenied }, true},
		"error":        {func(e *event.Event) { e.Outcome.Result = event.ResultError }, true},
		"response":     {func(e *event.Event) { e.MCP = &event.MCP{Direction: event.DirResponse} }, false},
		"notification": {func(e *event.Event) { e.MCP = &event.MCP{Direction: event.DirNotification} }, false},
		"server req":   {func(e *event.Event) { e.MCP = &event.MCP{Direction: event.DirServerRequest} }, false},
		"no mcp":       {func(e *event.Event) { e.MCP = nil }, false},
		"otel span":    {func(e *event.Event) { e.Source = event.SourceOTel }, false},
		"kernel":       {func(e *event.Event) { e.Source, e.MCP = event.SourceKernel, nil }, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			e := base
			mcp := *base.MCP
			e.MCP = &mcp
			c.mod(&e)
			if got := Counts(&e); got != c.want {
				t.Fatalf("Counts = %v, want %v", got, c.want)
			}
			r := newRate(t, nil)
			obs(r, e)
			if s := r.Stats(); (s.Counted == 1) != c.want || (s.Ignored == 1) == c.want {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// Every counted request yields the principal's current score as a frequency signal, with the
// evidence behind it: the scorer can only publish what it is told, and a score row must be able
// to say why.
func TestRateSignals(t *testing.T) {
	r := newRate(t, nil) // 10s window, baseline 2/s, ceiling 20/s
	var last event.Event
	var sig *detect.Signal
	for i := range 110 { // 110 calls in 10.9s: the window (0.9s, 10.9s] holds 100 of them
		last = req("alice", time.Duration(i)*100*time.Millisecond)
		_, s := obs(r, last)
		if s == nil {
			t.Fatalf("call %d: no signal", i)
		}
		sig = s
	}
	end := last.Time
	want := detect.Signal{Detector: "rate", Tenant: "acme", Subject: "alice", Check: "rate", Time: end, Component: detect.Frequency,
		Value: 44.4, // 10/s: (10−2)/(20−2)
		Evidence: detect.Evidence{Feature: "rate_per_s", Observed: 10, Baseline: 2, BaselineSource: "rule",
			WindowStart: end.Add(-10 * time.Second), WindowEnd: end}}
	ids := sig.Evidence.EventIDs
	sig.Evidence.EventIDs = nil
	if !reflect.DeepEqual(*sig, want) {
		t.Fatalf("signal\n%+v, want\n%+v", *sig, want)
	}
	if len(ids) != 20 || ids[19].String() != last.ID {
		t.Fatalf("evidence ids %v, want the last 20 ending %s", ids, last.ID)
	}
	// A score of 0 needs no evidence; ignored and late events yield no signal at all.
	if _, s := obs(r, req("bob", 0)); s == nil || s.Value != 0 || s.Evidence.EventIDs != nil || s.Subject != "bob" {
		t.Fatalf("bob's first call: %+v", s)
	}
	span := req("alice", 11*time.Second)
	span.Source = event.SourceOTel
	if _, s := obs(r, span); s != nil {
		t.Fatalf("span yielded %+v", s)
	}
	if _, s := obs(r, req("alice", 0)); s != nil {
		t.Fatalf("late call yielded %+v", s)
	}
	if info := r.Info(); info.Name != "rate" || !reflect.DeepEqual(info.Checks, []detect.Check{{Name: "rate", Component: detect.Frequency}}) {
		t.Fatalf("info %+v", info)
	}
}

// The per-principal window is bounded; past the bound the score stays 100 and the summary says
// the count is a lower bound instead of lying.
func TestRateWindowCap(t *testing.T) {
	// cap = max(2·10·1, 16) = 20; no cooldown, so every call past the ceiling reports
	r := newRate(t, func(c *Config) { unit(c); c.Ceiling = 10; c.Threshold = 100; c.Cooldown = 0 })
	var last *event.Finding
	for i := range 500 {
		if f, _ := obs(r, req("alice", time.Duration(i)*time.Millisecond)); f != nil {
			last = f
		}
	}
	p := principalOf(r, "acme/alice")
	if p.win.len() != 20 || len(p.win.buf) > 20 {
		t.Fatalf("window holds %d of buffer %d, want 20 of ≤ 20", p.win.len(), len(p.win.buf))
	}
	if last == nil || last.Features["saturated"] != 1 || !strings.Contains(last.Summary, "at least 20 calls") {
		t.Fatalf("saturated finding: %+v", last)
	}
	// Once everything dropped has aged out, the count is exact again.
	obs(r, req("alice", 2*time.Second))
	if p.win.saturated() || p.win.len() != 1 {
		t.Fatalf("saturated=%v len=%d after the window passed", p.win.saturated(), p.win.len())
	}
}

// The number of principals is bounded, the least recently seen going first: an unbounded map is
// a memory exhaustion attack.
func TestRateMaxPrincipals(t *testing.T) {
	r := newRate(t, func(c *Config) { c.MaxPrincipals = 3 })
	for i, sub := range []string{"a", "b", "c"} {
		obs(r, req(sub, time.Duration(i)*time.Millisecond))
	}
	obs(r, req("a", 3*time.Millisecond)) // a is now the most recent; b the least
	obs(r, req("d", 4*time.Millisecond))
	obs(r, req("e", 5*time.Millisecond))
	if s := r.Stats(); s.Principals != 3 || s.EvictedCapacity != 2 {
		t.Fatalf("stats %+v", s)
	}
	for k, want := range map[string]bool{"acme/a": true, "acme/b": false, "acme/c": false, "acme/d": true, "acme/e": true} {
		if ok := principalOf(r, k) != nil; ok != want {
			t.Errorf("%s tracked=%v, want %v", k, ok, want)
		}
	}
}

// Idle principals are forgotten, and each gets an expired signal stamped when its window
// emptied, so the scorer can forget it too and publish its final 0 at the same time as before.
func TestRateExpire(t *testing.T) {
	r := newRate(t, unit) // idle after max(1s window, 30s cooldown)
	burst(r, "alice", time.Second, 60)
	obs(r, req("bob", time.Second)) // score 1
	obs(r, req("carol", 20*time.Second))
	if out := expire(r, 30*time.Second); len(out) != 0 || r.Stats().Principals != 3 {
		t.Fatalf("expired %v before anyone was idle for 30s", out)
	}
	out := expire(r, 31*time.Second) // alice and bob: last call at 1s, 30s ago
	if len(out) != 2 {
		t.Fatalf("expired %+v, want alice and bob", out)
	}
	for _, s := range out {
		if !s.Expired || s.Value != 0 || !s.Time.Equal(t0.Add(2*time.Second)) || s.Tenant != "acme" ||
			s.Detector != "rate" || s.Component != detect.Frequency {
			t.Fatalf("expired signal %+v, want 0 at 2s (when the window emptied)", s)
		}
	}
	if got := []string{out[0].Subject, out[1].Subject}; got[0] != "alice" || got[1] != "bob" {
		t.Fatalf("subjects %v, want the least recently seen first", got)
	}
	if s := r.Stats(); s.Principals != 1 || s.EvictedIdle != 2 {
		t.Fatalf("stats %+v", s)
	}
	// A forgotten principal that comes back is judged afresh, not lost.
	if f := burst(r, "alice", 40*time.Second, 50); len(f) != 1 {
		t.Fatalf("returning principal: %d findings", len(f))
	}
	// Principals forgotten for capacity are not retired: the scorer keeps their last value.
	c := newRate(t, func(c *Config) { c.MaxPrincipals = 1 })
	obs(c, req("a", 0))
	obs(c, req("b", time.Second))
	if out := expire(c, time.Second); len(out) != 0 || c.Stats().EvictedCapacity != 1 {
		t.Fatalf("capacity eviction retired %+v", out)
	}
}

// Replaying the same events must give the same findings with the same ids: downstream
// deduplication depends on it.
func TestRateReplayIsDeterministic(t *testing.T) {
	var evs []event.Event
	for i := range 400 {
		sub := []string{"alice", "bob", "mallory"}[i%3]
		if i%3 == 2 {
			evs = append(evs, req(sub, time.Duration(i)*5*time.Millisecond))
		} else {
			evs = append(evs, req(sub, time.Duration(i)*200*time.Millisecond))
		}
	}
	run := func() (fs []*event.Finding, ss []*detect.Signal) {
		r := newRate(t, nil)
		for _, e := range evs {
			f, s := obs(r, e)
			if f != nil {
				fs = append(fs, f)
			}
			if s != nil {
				ss = append(ss, s)
			}
		}
		return fs, ss
	}
	f1, s1 := run()
	f2, s2 := run()
	if len(f1) == 0 || !reflect.DeepEqual(f1, f2) || !reflect.DeepEqual(s1, s2) {
		t.Fatalf("replay differs or found nothing: %d vs %d findings", len(f1), len(f2))
	}
}

// BenchmarkObserve measures the detector's per-event cost over many principals in steady state.
func BenchmarkObserve(b *testing.B) {
	r := newRate(b, nil)
	const principals = 10_000
	evs := make([]event.Event, principals)
	for i := range evs {
		evs[i] = req(fmt.Sprintf("user-%d", i), 0)
	}
	var out detect.Output
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e := evs[i%principals]
		e.Time = t0.Add(time.Duration(i) * 100 * time.Microsecond) // 10k events/s overall, 1/s each
		out.Reset()
		r.Observe(&e, &out)
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// Timestamps no gateway can produce are ignored rather than corrupting window arithmetic.
func TestRateIgnoresBogusTimes(t *testing.T) {
	r := newRate(t, nil)
	for _, at := range []time.Time{{}, time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC)} {
		e := req("alice", 0)
		e.Time = at
		if f, s := obs(r, e); f != nil || s != nil {
			t.Fatalf("%v: produced output", at)
		}
	}
	if s := r.Stats(); s.Ignored != 3 || s.Counted != 0 || s.Principals != 0 {
		t.Fatalf("stats %+v", s)
	}
	obs(r, req("alice", 0)) // a sane event is still judged normally afterwards
	if s := r.Stats(); s.Counted != 1 || len(expire(r, 0)) != 0 {
		t.Fatalf("stats %+v", s)
	}
}
