package mcp

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

type actionRecorder struct {
	mu      sync.Mutex
	actions []*event.Action
}

func (r *actionRecorder) PublishAction(_ context.Context, a *event.Action) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.actions = append(r.actions, a)
}

// waitFor returns the first recorded action pred accepts, failing after 5s.
func (r *actionRecorder) waitFor(t testing.TB, what string, pred func(*event.Action) bool) *event.Action {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		for _, a := range r.actions {
			if pred(a) {
				r.mu.Unlock()
				return a
			}
		}
		n := len(r.actions)
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no action record for %s among %d", what, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *actionRecorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, a := range r.actions {
		if a.ID == id {
			n++
		}
	}
	return n
}

// A quarantine the gateway applies is an action record, not just an audit event: kind
// quarantine, succeeded only once cgroup.events says frozen, naming the control, its finding and
// the replica, with the latency from the control to the confirmed freeze; the thaw on expiry and
// the thaw after a tombstone are lift records against the same control; a control applied again
// (a replay) adds no record. If it failed, the audit trail could not show who was frozen, when,
// how fast, or when the freeze ended.
func TestRouterQuarantineActions(t *testing.T) {
	m := newSandboxManager(t)
	bridge := goStdioBridge(t, m, "local")
	f := newRouterFixture(t, []Route{{Name: "local", Prefix: "/local/mcp", Bridge: bridge}})
	cs := f.connect(t, "/local/mcp", clientOpts{token: aliceToken})
	if _, err := echo(t, cs, "hi"); err != nil {
		t.Fatal(err)
	}
	sb := m.Sandboxes()[0]

	// A sandbox quarantine that expires in 1.5s.
	exp := time.Now().Add(1500 * time.Millisecond)
	ctl := event.Control{ID: event.NewID(), Time: time.Now(), Kind: event.ControlQuarantine, Scope: event.ScopeSandbox,
		Tenant: "acme", Value: sb.ID(), Reason: "beaconing", FindingID: "f-9", Actor: "playbook:contain", Expires: &exp}
	applyEncoded(t, f, ctl)
	frozen := f.actions.waitFor(t, "the freeze", func(a *event.Action) bool { return a.Kind == event.ActionQuarantine })
	if frozen.Status != "succeeded" || frozen.Target != sb.ID() || frozen.ControlID != ctl.ID || frozen.FindingID != "f-9" ||
		frozen.Actor != "gateway:gw-test" || frozen.Scope != event.ScopeSandbox || frozen.Reason != "beaconing" ||
		frozen.Subject != "alice" || frozen.Expires == nil || !strings.Contains(frozen.Detail, "cgroup.events frozen 1") {
		t.Fatalf("freeze recorded as %+v", frozen)
	}
	if !cgroupFrozen(t, sb.CgroupPath()) {
		t.Fatal("recorded frozen, but cgroup.events does not say so")
	}
	if frozen.LatencyMS <= 0 || frozen.LatencyMS > 1000 {
		t.Fatalf("control → frozen latency %.1f ms, want (0, 1000]", frozen.LatencyMS)
	}
	applyEncoded(t, f, ctl) // the same control again, as after a follower restart
	lift := f.actions.waitFor(t, "the thaw on expiry", func(a *event.Action) bool { return a.Kind == event.ActionLift })
	if lift.Status != "succeeded" || lift.ControlID != ctl.ID || !strings.Contains(lift.Detail, "expired") || lift.LatencyMS > 2000 {
		t.Fatalf("expiry recorded as %+v", lift)
	}
	if cgroupFrozen(t, sb.CgroupPath()) {
		t.Fatal("still frozen after expiry")
	}
	if n := f.actions.count(frozen.ID); n != 1 {
		t.Fatalf("freeze recorded %d times", n)
	}

	// A server quarantine lifted by its tombstone.
	srv := applyControl(t, f.store, event.ControlQuarantine, event.ScopeServer, "local", "supply chain")
	f.actions.waitFor(t, "the server freeze", func(a *event.Action) bool {
		return a.Kind == event.ActionQuarantine && a.ControlID == srv.ID && a.Scope == event.ScopeServer && a.Status == "succeeded"
	})
	if err := f.store.Apply([]byte(srv.Key()), nil); err != nil {
		t.Fatal(err)
	}
	l := f.actions.waitFor(t, "the lift by tombstone", func(a *event.Action) bool { return a.Kind == event.ActionLift && a.ControlID == srv.ID })
	if !strings.Contains(l.Detail, "lifted") || l.Status != "succeeded" {
		t.Fatalf("tombstone lift recorded as %+v", l)
	}
}

func applyEncoded(t *testing.T, f *routerFixture, c event.Control) {
	t.Helper()
	b, err := event.Encode(&c)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Apply([]byte(c.Key()), b); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkQuarantineFreeze measures control → sandbox frozen and confirmed by cgroup.events, as
// the gateway's own action record states it (LatencyMS), for a real sandboxed Go SDK stdio server
// under the router: each iteration applies a sandbox quarantine to the control store (as the
// follower does when the record arrives) and waits for the action record, then lifts it and
// waits for the thaw. It reports p50/p99/max of the recorded latencies.
//
//	go test -run '^$' -bench BenchmarkQuarantineFreeze -benchtime 100x ./ingest/mcp/
func BenchmarkQuarantineFreeze(b *testing.B) {
	m := newSandboxManager(b)
	bridge := goStdioBridge(b, m, "local")
	f := newRouterFixture(b, []Route{{Name: "local", Prefix: "/local/mcp", Bridge: bridge}})
	f.connect(b, "/local/mcp", clientOpts{token: aliceToken})
	sb := m.Sandboxes()[0]
	var lat []float64
	for i := 0; b.Loop(); i++ {
		ctl := event.Control{ID: event.NewID(), Time: time.Now(), Kind: event.ControlQuarantine, Scope: event.ScopeSandbox,
			Tenant: "acme", Value: sb.ID(), Reason: "bench"}
		enc, err := event.Encode(&ctl)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.store.Apply([]byte(ctl.Key()), enc); err != nil {
			b.Fatal(err)
		}
		a := f.actions.waitFor(b, "", func(a *event.Action) bool { return a.ControlID == ctl.ID && a.Kind == event.ActionQuarantine })
		if a.Status != "succeeded" {
			b.Fatalf("freeze %s: %s", a.Status, a.Detail)
		}
		lat = append(lat, a.LatencyMS)
		if err := f.store.Apply([]byte(ctl.Key()), nil); err != nil {
			b.Fatal(err)
		}
		f.actions.waitFor(b, "", func(a *event.Action) bool { return a.ControlID == ctl.ID && a.Kind == event.ActionLift })
		for sb.Frozen() {
			time.Sleep(time.Millisecond)
		}
	}
	slices.Sort(lat)
	at := func(p float64) float64 { return lat[min(len(lat)-1, int(math.Ceil(p*float64(len(lat))))-1)] }
	b.ReportMetric(at(0.50), "p50_ms")
	b.ReportMetric(at(0.99), "p99_ms")
	b.ReportMetric(lat[len(lat)-1], "max_ms")
}
