package control

import (
	"fmt"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// Match serves the sandbox scope, which Check leaves out: a wrong match freezes the wrong sandbox
// or leaves a compromised one running.
func TestMatch(t *testing.T) {
	s := NewStore()
	q := ctl(event.ControlQuarantine, event.ScopeSandbox, "acme", "files-3f9a0c21d4e7")
	mustApply(t, s, q)
	mustApply(t, s, ctl(event.ControlQuarantine, event.ScopeSandbox, "", "db-000000000001"))
	exp := ctl(event.ControlQuarantine, event.ScopeSandbox, "acme", "old-000000000002")
	before := t0.Add(time.Minute)
	exp.Expires = &before
	mustApply(t, s, exp)
	for _, tc := range []struct {
		tenant, value string
		at            time.Time
		want          bool
	}{
		{"acme", "files-3f9a0c21d4e7", t0, true},
		{"globex", "files-3f9a0c21d4e7", t0, false},
		{"acme", "files-000000000000", t0, false},
		{"globex", "db-000000000001", t0, true}, // every tenant
		{"acme", "old-000000000002", t0, true},
		{"acme", "old-000000000002", t0.Add(time.Hour), false}, // expired
		{"acme", "", t0, false},
	} {
		got, ok := s.Match(tc.tenant, event.ScopeSandbox, tc.value, tc.at)
		if ok != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.tenant, tc.value, ok, tc.want)
		}
		if ok && got.Value != tc.value {
			t.Errorf("Match(%q) returned %+v", tc.value, got)
		}
	}
	if _, ok := s.Match("acme", event.ScopeServer, "files-3f9a0c21d4e7", t0); ok {
		t.Error("a sandbox control matched the server scope")
	}
}

// OnChange is what lets sandboxes freeze within moments of a quarantine arriving: every applied
// record, the tombstone included, must call the watchers, and a refused record must not.
func TestOnChange(t *testing.T) {
	s := NewStore()
	var calls int
	s.OnChange(func() { calls++ })
	c := ctl(event.ControlQuarantine, event.ScopeSandbox, "acme", "files-1")
	mustApply(t, s, c)
	if err := s.Apply([]byte(c.Key()), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]byte("x"), []byte("not json")); err == nil {
		t.Fatal("malformed record applied")
	}
	if calls != 2 {
		t.Fatalf("watchers called %d times, want 2", calls)
	}
}

// The memory of lifts is bounded: past maxLifted keys the oldest lift is forgotten, the newest
// kept. If this failed, a long-running respond stage would grow without bound under lifts.
func TestLiftedBounded(t *testing.T) {
	s := NewStore()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range maxLifted + 1 {
		if err := s.ApplyAt([]byte(fmt.Sprintf("revoke/subject/acme/u%d", i)), nil, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := s.LiftedAt("revoke/subject/acme/u0"); ok {
		t.Error("the oldest lift was kept past the bound")
	}
	if at, ok := s.LiftedAt(fmt.Sprintf("revoke/subject/acme/u%d", maxLifted)); !ok || !at.Equal(t0.Add(maxLifted*time.Second)) {
		t.Errorf("the newest lift: %v %v", at, ok)
	}
	if n := len(s.lifted); n != maxLifted {
		t.Errorf("%d lifts held, want %d", n, maxLifted)
	}
}
