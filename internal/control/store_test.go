package control

import (
	"errors"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func ctl(kind event.ControlKind, scope event.ControlScope, tenant, value string) event.Control {
	return event.Control{ID: event.NewID(), Time: t0, Kind: kind, Scope: scope, Tenant: tenant, Value: value,
		Reason: "test " + string(scope)}
}

func encode(t testing.TB, c event.Control) (key, value []byte) {
	t.Helper()
	b, err := event.Encode(&c)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(c.Key()), b
}

func mustApply(t testing.TB, s *Store, c event.Control) {
	t.Helper()
	if err := s.Apply(encode(t, c)); err != nil {
		t.Fatal(err)
	}
}

// Check is the whole enforcement decision: a wrong match lets a revoked principal through or
// locks out an innocent one.
func TestCheck(t *testing.T) {
	alice := event.Principal{Subject: "alice", ClientID: "desktop", TokenID: "tok_a"}
	bob := event.Principal{Subject: "bob", ClientID: "cli", TokenID: "tok_b"}
	cases := []struct {
		name   string
		ctl    event.Control
		p      event.Principal
		server string
		tool   string
		want   bool
	}{
		{"revoked subject", ctl(event.ControlRevoke, event.ScopeSubject, "acme", "alice"), alice, "db", "", true},
		{"other subject", ctl(event.ControlRevoke, event.ScopeSubject, "acme", "alice"), bob, "db", "", false},
		{"revoked client", ctl(event.ControlRevoke, event.ScopeClient, "acme", "desktop"), alice, "db", "q", true},
		{"revoked token", ctl(event.ControlRevoke, event.ScopeToken, "acme", "tok_a"), alice, "db", "", true},
		{"token of another", ctl(event.ControlRevoke, event.ScopeToken, "acme", "tok_a"), bob, "db", "", false},
		{"quarantined server", ctl(event.ControlQuarantine, event.ScopeServer, "acme", "db"), bob, "db", "", true},
		{"other server", ctl(event.ControlQuarantine, event.ScopeServer, "acme", "db"), bob, "files", "", false},
		{"quarantined tool", ctl(event.ControlQuarantine, event.ScopeTool, "acme", "drop_table"), bob, "db", "drop_table", true},
		{"tool on its server", ctl(event.ControlQuarantine, event.ScopeTool, "acme", "db/drop_table"), bob, "db", "drop_table", true},
		{"tool on another server", ctl(event.ControlQuarantine, event.ScopeTool, "acme", "files/drop_table"), bob, "db", "drop_table", false},
		{"tool not called", ctl(event.ControlQuarantine, event.ScopeTool, "acme", "drop_table"), bob, "db", "", false},
		{"other tenant", ctl(event.ControlRevoke, event.ScopeSubject, "globex", "alice"), alice, "db", "", false},
		{"all tenants", ctl(event.ControlRevoke, event.ScopeSubject, "", "alice"), alice, "db", "", true},
		{"kind does not matter", ctl(event.ControlQuarantine, event.ScopeSubject, "acme", "alice"), alice, "db", "", true},
		{"sandbox is not the gateway's", ctl(event.ControlQuarantine, event.ScopeSandbox, "acme", "db"), alice, "db", "", false},
		{"empty subject never matches", ctl(event.ControlRevoke, event.ScopeClient, "acme", "desktop"), event.Principal{}, "db", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStore()
			mustApply(t, s, tc.ctl)
			got, ok := s.Check("acme", tc.p, tc.server, tc.tool, t0)
			if ok != tc.want {
				t.Fatalf("Check = %v, want %v", ok, tc.want)
			}
			if ok && got.Key() != tc.ctl.Key() {
				t.Fatalf("matched %q, want %q", got.Key(), tc.ctl.Key())
			}
		})
	}
}

// A tombstone is how the responder lifts a revocation; if it did not remove the control the
// principal would stay locked out forever.
func TestTombstone(t *testing.T) {
	s := NewStore()
	revoke := ctl(event.ControlRevoke, event.ScopeSubject, "acme", "alice")
	quarantine := ctl(event.ControlQuarantine, event.ScopeSubject, "acme", "alice")
	mustApply(t, s, revoke)
	mustApply(t, s, quarantine)
	alice := event.Principal{Subject: "alice"}

	if err := s.Apply([]byte(revoke.Key()), nil); err != nil {
		t.Fatal(err)
	}
	got, ok := s.Check("acme", alice, "db", "", t0)
	if !ok || got.Kind != event.ControlQuarantine {
		t.Fatalf("lifting the revoke must leave the quarantine on the same subject: %v %+v", ok, got)
	}
	if err := s.Apply([]byte(quarantine.Key()), []byte{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Check("acme", alice, "db", "", t0); ok || s.Len() != 0 {
		t.Fatalf("still refused after both tombstones (len %d)", s.Len())
	}
	if err := s.Apply([]byte("revoke/subject/acme/nobody"), nil); err != nil {
		t.Fatalf("tombstone for an unknown key: %v", err)
	}
}

// A newer record under the same key replaces the old one: the responder extends or shortens a
// revocation by rewriting it.
func TestReplace(t *testing.T) {
	s := NewStore()
	c := ctl(event.ControlRevoke, event.ScopeSubject, "acme", "alice")
	end := t0.Add(time.Minute)
	c.Expires = &end
	mustApply(t, s, c)
	c.Expires = nil
	c.Reason = "extended"
	mustApply(t, s, c)
	got, ok := s.Check("acme", event.Principal{Subject: "alice"}, "db", "", t0.Add(time.Hour))
	if !ok || got.Reason != "extended" || s.Len() != 1 {
		t.Fatalf("replacement not applied: ok=%v got=%+v len=%d", ok, got, s.Len())
	}
}

// Expires ends a control without a tombstone; a gateway that ignored it would refuse forever.
func TestExpiry(t *testing.T) {
	s := NewStore()
	c := ctl(event.ControlRevoke, event.ScopeToken, "acme", "tok_a")
	end := t0.Add(15 * time.Minute)
	c.Expires = &end
	mustApply(t, s, c)
	p := event.Principal{TokenID: "tok_a"}
	if _, ok := s.Check("acme", p, "db", "", end.Add(-time.Nanosecond)); !ok {
		t.Fatal("not in force before it expires")
	}
	if _, ok := s.Check("acme", p, "db", "", end); ok {
		t.Fatal("still in force at its expiry")
	}
	if n := s.Active(end); n != 0 {
		t.Fatalf("Active counts an expired control: %d", n)
	}
}

// Garbage on the control topic must be refused without touching what is in force.
func TestApplyMalformed(t *testing.T) {
	s := NewStore()
	good := ctl(event.ControlRevoke, event.ScopeSubject, "acme", "alice")
	mustApply(t, s, good)
	noValue := good
	noValue.Value = ""
	_, noValueB := encode(t, noValue)
	_, goodB := encode(t, good)
	cases := map[string]struct{ key, value []byte }{
		"not json":       {[]byte(good.Key()), []byte("{")},
		"missing value":  {[]byte(good.Key()), noValueB},
		"future schema":  {[]byte(good.Key()), []byte(`{"schema":99,"id":"x","time":"2026-01-01T00:00:00Z","kind":"revoke","scope":"subject","value":"alice"}`)},
		"key mismatch":   {[]byte("revoke/subject/acme/bob"), goodB},
		"a json array":   {[]byte(good.Key()), []byte(`[]`)},
		"wrong key type": {[]byte(good.Key()), []byte(`{"schema":1,"id":1}`)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := s.Apply(tc.key, tc.value)
			if !errors.Is(err, event.ErrMalformed) && !errors.Is(err, event.ErrSchema) {
				t.Fatalf("Apply = %v, want a malformed-record error", err)
			}
			if _, ok := s.Check("acme", event.Principal{Subject: "alice"}, "db", "", t0); !ok || s.Len() != 1 {
				t.Fatal("a malformed record changed the store")
			}
		})
	}
}

func BenchmarkCheck(b *testing.B) {
	s := NewStore()
	for i := range 10_000 {
		c := ctl(event.ControlRevoke, event.ScopeSubject, "acme", "user-"+string(rune('a'+i%26))+time.Duration(i).String())
		if err := s.Apply(encode(b, c)); err != nil {
			b.Fatal(err)
		}
	}
	p := event.Principal{Subject: "carol", ClientID: "desktop", TokenID: "tok_c"}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Check("acme", p, "db", "query", t0); ok {
			b.Fatal("unexpected match")
		}
	}
}
