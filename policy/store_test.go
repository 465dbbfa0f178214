package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

const (
	policyA = "version: 1\nrules:\n  - {id: a, resource: \"tool:x/*\", actions: [call]}\n"
	policyB = "version: 1\nrules:\n  - {id: b, resource: \"tool:x/*\", actions: [call]}\n"
	broken  = "version: 1\nrules:\n  - {id: c, resource: \"tool:x/*\", actions: [call], conditions: {ip_range: 10.0.0.0/33}}\n"
)

var xReq = Request{Principal: event.Principal{Subject: "s"}, Method: "tools/call", Server: "x", Tool: "t"}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Replace atomically, as documented for writers.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A broken file must never replace a working policy: that would turn a typo into an outage (or,
// with a partial file, into dropped deny rules).
func TestStoreReloadKeepsOldPolicyOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyA)
	var events []ReloadEvent
	s, err := NewStore(path, WithReloadHook(func(e ReloadEvent) { events = append(events, e) }))
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Evaluate(xReq); d.Rule != "a" {
		t.Fatalf("initial decision %+v", d)
	}
	before := s.Policy()

	writeFile(t, path, broken)
	err = s.Reload()
	if err == nil || !strings.Contains(err.Error(), `policy.yaml:3:75: rule "c": ip_range "10.0.0.0/33": invalid CIDR`) {
		t.Fatalf("Reload error = %v", err)
	}
	if s.Policy() != before || s.Evaluate(xReq).Rule != "a" || s.LastError() == nil {
		t.Fatal("broken file replaced the policy in force")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || s.Policy() != before {
		t.Fatalf("missing file: err %v", err)
	}

	writeFile(t, path, policyB)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.Evaluate(xReq).Rule != "b" || s.LastError() != nil {
		t.Fatal("valid file not loaded")
	}
	after := s.Policy()
	if err := s.Reload(); err != nil || s.Policy() != after {
		t.Fatal("unchanged content reloaded")
	}
	if len(events) != 3 || events[0].Err == nil || events[0].Rules != 1 || events[1].Err == nil || !events[2].Changed || events[2].Err != nil {
		t.Errorf("hook events %+v", events)
	}
}

func TestNewStoreFailsOnBrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, broken)
	if _, err := NewStore(path); err == nil {
		t.Fatal("NewStore accepted a broken policy")
	}
	if _, err := NewStore(filepath.Join(t.TempDir(), "none.yaml")); err == nil {
		t.Fatal("NewStore accepted a missing file")
	}
}

// Run picks up a changed file once it is stable across two polls, skips a broken one, and
// stops with its context; readers keep evaluating concurrently (run with -race).
func TestStoreRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyA)
	var fails atomic.Int32
	s, err := NewStore(path, WithReloadHook(func(e ReloadEvent) {
		if e.Err != nil {
			fails.Add(1)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := s.Run(ctx, 2*time.Millisecond); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if d := s.Evaluate(xReq); d.Rule != "a" && d.Rule != "b" {
				t.Errorf("decision %+v", d)
				return
			}
		}
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	writeFile(t, path, broken)
	waitFor("the broken file to be reported", func() bool { return fails.Load() > 0 })
	time.Sleep(20 * time.Millisecond) // several more polls of the same broken content
	if s.Evaluate(xReq).Rule != "a" {
		t.Fatal("broken file replaced the policy")
	}
	if n := fails.Load(); n != 1 {
		t.Errorf("broken content reported %d times, want once", n)
	}
	writeFile(t, path, policyB)
	waitFor("the new policy", func() bool { return s.Evaluate(xReq).Rule == "b" })
	cancel()
	wg.Wait()
	if err := s.Run(context.Background(), 0); err == nil {
		t.Error("Run accepted a zero interval")
	}
}
