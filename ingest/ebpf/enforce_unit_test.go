package ebpf

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/control"
)

// fakeEgress records what the enforcer sets; failBlock makes Block fail.
type fakeEgress struct {
	mu        sync.Mutex
	blocked   map[uint64]bool
	allow     map[uint64][]AllowRule
	failBlock error
	blocks    int
}

func newFakeEgress() *fakeEgress {
	return &fakeEgress{blocked: map[uint64]bool{}, allow: map[uint64][]AllowRule{}}
}

func (f *fakeEgress) Block(id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocks++
	if f.failBlock != nil {
		return f.failBlock
	}
	f.blocked[id] = true
	return nil
}

func (f *fakeEgress) Unblock(id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.blocked, id)
	return nil
}

func (f *fakeEgress) SetAllow(id uint64, rules []AllowRule) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.allow[id] = rules
	return nil
}

func (f *fakeEgress) Forget(id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.blocked, id)
	delete(f.allow, id)
	return nil
}

func (f *fakeEgress) isBlocked(id uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocked[id]
}

type actionLog struct {
	mu  sync.Mutex
	got []*event.Action
}

func (l *actionLog) PublishAction(_ context.Context, a *event.Action) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, a)
}

func (l *actionLog) all() []*event.Action {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*event.Action(nil), l.got...)
}

func applyControl(t *testing.T, s *control.Store, c event.Control) {
	t.Helper()
	b, err := event.Encode(&c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]byte(c.Key()), b); err != nil {
		t.Fatal(err)
	}
}

func ctlOf(kind event.ControlKind, scope event.ControlScope, tenant, value string) event.Control {
	return event.Control{Schema: event.SchemaVersion, ID: event.NewID(), Time: time.Now().Add(-time.Second), Kind: kind,
		Scope: scope, Tenant: tenant, Value: value, Reason: "test", FindingID: "f-1", Actor: "playbook:p"}
}

// Which controls block a sandbox's egress: block_egress and quarantine of the sandbox or its
// server, in the gateway's tenant or every tenant; not another tenant's, not another sandbox's,
// not a revoke or step-up. If this fails, a quarantine leaves egress open, or an unrelated
// control cuts a healthy server off.
func TestEnforcerWhichControlsBlock(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ctl   event.Control
		block bool
	}{
		{"block_egress sandbox", ctlOf(event.ControlBlockEgress, event.ScopeSandbox, "acme", "sb-1"), true},
		{"block_egress sandbox every tenant", ctlOf(event.ControlBlockEgress, event.ScopeSandbox, "", "sb-1"), true},
		{"quarantine sandbox", ctlOf(event.ControlQuarantine, event.ScopeSandbox, "acme", "sb-1"), true},
		{"block_egress server", ctlOf(event.ControlBlockEgress, event.ScopeServer, "acme", "files"), true},
		{"quarantine server", ctlOf(event.ControlQuarantine, event.ScopeServer, "acme", "files"), true},
		{"other tenant", ctlOf(event.ControlBlockEgress, event.ScopeSandbox, "other", "sb-1"), false},
		{"other sandbox", ctlOf(event.ControlBlockEgress, event.ScopeSandbox, "acme", "sb-2"), false},
		{"other server", ctlOf(event.ControlQuarantine, event.ScopeServer, "acme", "git"), false},
		{"quarantine tool", ctlOf(event.ControlQuarantine, event.ScopeTool, "acme", "files"), false},
		{"revoke subject", ctlOf(event.ControlRevoke, event.ScopeSubject, "acme", "sb-1"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, eg := control.NewStore(), newFakeEgress()
			n, err := NewEnforcer(eg, store, EnforcerConfig{Log: quietLog, Tenant: "acme"})
			if err != nil {
				t.Fatal(err)
			}
			if err := n.WatchSandbox(7, "sb-1", "files"); err != nil {
				t.Fatal(err)
			}
			applyControl(t, store, tc.ctl)
			n.ApplyAll()
			if eg.isBlocked(7) != tc.block {
				t.Errorf("blocked %v, want %v", eg.isBlocked(7), tc.block)
			}
		})
	}
}

// The enforcer follows the store: a control arriving blocks at once (OnChange), its expiry
// unblocks on the next tick, a tombstone unblocks; each applied change is one action record with
// kind, actor, scope, latency from the control's time and an id derived from control, sandbox and
// change (the same on a repeat). A sandbox started while a control is in force is blocked before
// it starts, and one whose block fails is not started. The server's allow-list is set at start.
// If this fails, egress blocks lag or miss controls, or the audit trail of actions is wrong.
func TestEnforcerFollowsStore(t *testing.T) {
	store, eg, log := control.NewStore(), newFakeEgress(), &actionLog{}
	rules := []AllowRule{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 443}}
	n, err := NewEnforcer(eg, store, EnforcerConfig{Log: quietLog, Tenant: "acme", Observer: "gw-1", Recorder: log,
		Interval: 20 * time.Millisecond, Allow: map[string][]AllowRule{"files": rules}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() { cancel(); <-done }()

	if err := n.WatchSandbox(7, "sb-1", "files"); err != nil {
		t.Fatal(err)
	}
	if got := eg.allow[7]; len(got) != 1 || got[0] != rules[0] {
		t.Errorf("allow-list at start: %v", got)
	}
	exp := time.Now().Add(300 * time.Millisecond)
	c := ctlOf(event.ControlBlockEgress, event.ScopeSandbox, "acme", "sb-1")
	c.Expires = &exp
	applyControl(t, store, c)
	waitFor(t, "blocked", func() bool { return eg.isBlocked(7) })
	waitFor(t, "unblocked on expiry", func() bool { return !eg.isBlocked(7) })

	acts := log.all()
	if len(acts) != 2 {
		t.Fatalf("%d actions: %+v", len(acts), acts)
	}
	b, l := acts[0], acts[1]
	if b.Kind != event.ActionBlockEgress || b.Status != "succeeded" || b.Actor != "gateway:gw-1" || b.Target != "sb-1" ||
		b.Scope != event.ScopeSandbox || b.ControlID != c.ID || b.FindingID != "f-1" || b.LatencyMS < 1000 || b.Tenant != "acme" {
		t.Errorf("block action %+v", b)
	}
	if l.Kind != event.ActionLift || l.Status != "succeeded" || !strings.Contains(l.Detail, "expired") || l.LatencyMS > 5000 {
		t.Errorf("lift action %+v", l)
	}
	if b.ID == l.ID {
		t.Error("block and lift share an id")
	}

	// A sandbox started under a control in force is blocked before it starts; the same control
	// applied again to a new enforcer yields the same action id.
	c2 := ctlOf(event.ControlQuarantine, event.ScopeServer, "", "files")
	applyControl(t, store, c2)
	if err := n.WatchSandbox(8, "sb-2", "files"); err != nil {
		t.Fatal(err)
	}
	if !eg.isBlocked(8) {
		t.Error("sandbox started under a quarantine of its server is not blocked")
	}
	n2, _ := NewEnforcer(newFakeEgress(), store, EnforcerConfig{Log: quietLog, Tenant: "acme", Recorder: log})
	if err := n2.WatchSandbox(8, "sb-2", "files"); err != nil {
		t.Fatal(err)
	}
	var sb2 []*event.Action
	for _, a := range log.all() {
		if a.Target == "sb-2" {
			sb2 = append(sb2, a)
		}
	}
	if len(sb2) != 2 || sb2[0].ID != sb2[1].ID || sb2[0].Scope != event.ScopeServer {
		t.Errorf("sb-2 blocked twice by one control: want 2 records with one id, got %+v", sb2)
	}

	// Tombstone: lifted.
	if err := store.Apply([]byte(c2.Key()), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "unblocked on tombstone", func() bool { return !eg.isBlocked(8) && !eg.isBlocked(7) })
	acts = log.all()
	if l := acts[len(acts)-1]; l.Kind != event.ActionLift || l.ControlID != c2.ID || !strings.Contains(l.Detail, "lifted") || l.LatencyMS != 0 {
		t.Errorf("lift on tombstone %+v", l)
	}

	// Fail closed: a sandbox that cannot be blocked is not started and leaves nothing set; a live
	// sandbox's failed block is retried every tick and recorded once.
	eg.mu.Lock()
	eg.failBlock = errors.New("map full")
	eg.mu.Unlock()
	before := len(log.all())
	applyControl(t, store, c2)
	if err := n.WatchSandbox(9, "sb-3", "files"); err == nil {
		t.Error("sandbox whose block failed was started")
	}
	if _, ok := eg.allow[9]; ok {
		t.Error("rules of a sandbox not started left set")
	}
	waitFor(t, "retries", func() bool { eg.mu.Lock(); defer eg.mu.Unlock(); return eg.blocks > 10 })
	failed := map[string]int{}
	for _, a := range log.all()[before:] {
		if a.Status == "failed" {
			failed[a.Target]++
		}
	}
	if failed["sb-1"] != 1 || failed["sb-2"] != 1 || failed["sb-3"] != 1 {
		t.Errorf("failed actions by sandbox %v, want one each", failed)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Allow rules parse from the config's forms and refuse the rest with a reason; hostnames are
// refused as such. If this fails, a config typo silently widens or narrows a server's egress.
func TestParseAllowRule(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8:443":            "10.0.0.0/8:443",
		" 10.1.2.3/8:443 ":          "10.0.0.0/8:443",
		"192.0.2.7:5432":            "192.0.2.7/32:5432",
		"10.0.0.0/8:*":              "10.0.0.0/8:*",
		"[2001:db8::/32]:443":       "[2001:db8::/32]:443",
		"[::1]:8080":                "[::1/128]:8080",
		"0.0.0.0/0:53":              "0.0.0.0/0:53",
		"[::ffff:10.0.0.0/104]:443": "[::ffff:10.0.0.0/104]:443",
	} {
		r, err := ParseAllowRule(in)
		if err != nil || r.String() != want {
			t.Errorf("%q: %v %v, want %s", in, r, err, want)
		}
	}
	for in, why := range map[string]string{
		"10.0.0.0/8":          "want CIDR:port",
		"10.0.0.0/8:0":        "not 1-65535",
		"10.0.0.0/8:65536":    "not 1-65535",
		"10.0.0.0/33:443":     "not an address",
		"2001:db8::/32:443":   "brackets",
		"api.example.com:443": "hostnames are not supported",
		"[fe80::1%eth0]:443":  "zones",
		"[10.0.0.1]:443":      "",
	} {
		_, err := ParseAllowRule(in)
		if err == nil && why != "" || err != nil && !strings.Contains(err.Error(), why) {
			t.Errorf("%q: %v, want an error with %q", in, err, why)
		}
	}
	if _, err := ParseAllowRules([]string{"a.example:1", "10.0.0.0/8:x"}); err == nil || strings.Count(err.Error(), "egress rule") != 2 {
		t.Errorf("every bad rule reported: %v", err)
	}
	k := keyOf(3, AllowRule{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 443})
	if k.PrefixLen != 32+16+96+8 || k.Addr != netip.MustParseAddr("::ffff:10.0.0.0").As16() {
		t.Errorf("IPv4 trie key %+v", k)
	}
}

// ParseAllowRule never panics, and what it accepts prints back to a rule it parses to the same
// value. Config files are operator input, but a crash at start is still worse than an error.
func FuzzParseAllowRule(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8:443", "[::1]:80", "a.b:1", "[::]:*", ":", "[]:", "1.2.3.4/99:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseAllowRule(s)
		if err != nil {
			return
		}
		r2, err := ParseAllowRule(r.String())
		if err != nil || r2 != r {
			t.Fatalf("%q → %v → %q: %v %v", s, r, r.String(), r2, err)
		}
	})
}

var quietLog = slog.New(slog.DiscardHandler)
