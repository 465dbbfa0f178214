package ebpf

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

type fakeSource struct {
	ch      chan Event
	mu      sync.Mutex
	watched map[uint64]bool
}

func (f *fakeSource) Events() <-chan Event { return f.ch }
func (f *fakeSource) Watch(id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watched[id] = true
	return nil
}
func (f *fakeSource) Unwatch(id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.watched, id)
	return nil
}

type collector struct {
	mu  sync.Mutex
	got []*event.Event
}

func (c *collector) Publish(_ context.Context, e *event.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, e)
}

func (c *collector) wait(t *testing.T, n int) []*event.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		got := append([]*event.Event(nil), c.got...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("published %d events, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Events of a sandbox whose session is not known yet are held and published, in order, with the
// session and principal as soon as the gateway's audit event passes the tap; a sandbox whose
// session never shows up has its events published after the hold with the sandbox only; events
// of an unknown cgroup are published at once and counted. If this fails, kernel events lose their
// MCP session or are delayed or dropped.
func TestAgentHoldsUntilSessionKnown(t *testing.T) {
	src := &fakeSource{ch: make(chan Event, 16), watched: map[uint64]bool{}}
	pub := &collector{}
	a, err := NewAgent(src, pub, AgentConfig{Hold: 300 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	if err := a.WatchSandbox(10, "files-1", "files"); err != nil {
		t.Fatal(err)
	}
	if err := a.WatchSandbox(20, "git-1", "git"); err != nil {
		t.Fatal(err)
	}
	if !src.watched[10] || !src.watched[20] {
		t.Fatal("sandbox cgroups not watched")
	}
	src.ch <- Event{Kind: KindExec, PID: 1, CgroupID: 10, WatchedCgroupID: 10, Filename: "/srv/files", Syscall: "execve"}
	src.ch <- Event{Kind: KindConnect, PID: 1, CgroupID: 11, WatchedCgroupID: 10, Addr: netip.MustParseAddrPort("10.0.0.1:443"), Syscall: "connect"}
	src.ch <- Event{Kind: KindOpen, PID: 2, CgroupID: 20, WatchedCgroupID: 20, Path: "/etc/shadow", Syscall: "openat"}
	src.ch <- Event{Kind: KindExec, PID: 3, CgroupID: 99, WatchedCgroupID: 99, Filename: "/bin/x", Syscall: "execve"}
	got := pub.wait(t, 1)
	if len(got) != 1 || got[0].Process.PID != 3 || got[0].Target.Sandbox != "" {
		t.Fatalf("want only the unknown cgroup's event at once, got %d: %+v", len(got), got[0])
	}

	next := &collector{}
	a.Tap(next).Publish(ctx, &event.Event{Source: event.SourceMCP, Tenant: "acme", Principal: event.Principal{Subject: "alice"},
		Correlation: event.Correlation{SessionID: "s-1"}, Process: &event.Process{CgroupID: 10}})
	if len(next.got) != 1 {
		t.Fatal("tap did not pass the audit event on")
	}
	got = pub.wait(t, 3)
	for i, pid := range []int{1, 1} {
		e := got[1+i]
		if e.Process.PID != pid || e.Principal.Subject != "alice" || e.Correlation.SessionID != "s-1" || e.Tenant != "acme" ||
			e.Target.Sandbox != "files-1" || e.Target.Server != "files" || e.Source != event.SourceKernel {
			t.Errorf("held event %d: %+v", i, e)
		}
	}
	if got[1].Process.Syscall != "execve" || got[2].Network.DstPort != 443 || got[2].Attributes["kernel.sandbox_cgroup_id"] != "10" {
		t.Errorf("held events out of order or misbuilt: %+v %+v", got[1], got[2])
	}
	// The sandbox's first exec is the server's own start, marked so detections leave it out.
	if got[1].Attributes[AttrServerStart] != "true" || got[0].Attributes[AttrServerStart] != "" {
		t.Errorf("server start mark: first exec %v, unknown cgroup's exec %v", got[1].Attributes, got[0].Attributes)
	}
	// git-1's session never shows up: released after the hold, sandbox only.
	got = pub.wait(t, 4)
	if e := got[3]; e.Target.Sandbox != "git-1" || e.Correlation.SessionID != "" || e.Process.Path != "/etc/shadow" {
		t.Errorf("released event: %+v", e)
	}
	a.UnwatchSandbox(10)
	if src.watched[10] {
		t.Error("unwatched sandbox still watched")
	}
	if _, ok := a.Attribution(10); !ok {
		t.Error("attribution forgotten at once: events still queued would lose it")
	}
}

// The gateway's MCP messages of a sandboxed session name the sandbox by id only
// (event.Target.Sandbox), not by cgroup: the tap must learn the session and principal from them
// too, and must ignore a sandbox id it does not watch. If this fails, kernel events of a real
// gateway stay unattributed (the gateway's events carry the cgroup only when a sandbox is frozen
// or ends).
func TestAgentLearnsBySandboxID(t *testing.T) {
	src := &fakeSource{ch: make(chan Event, 4), watched: map[uint64]bool{}}
	a, err := NewAgent(src, &collector{}, AgentConfig{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.WatchSandbox(10, "files-1", "files"); err != nil {
		t.Fatal(err)
	}
	tap := a.Tap(&collector{})
	tap.Publish(context.Background(), &event.Event{Source: event.SourceMCP, Tenant: "acme", Principal: event.Principal{Subject: "mallory"},
		Correlation: event.Correlation{SessionID: "s-x"}, Target: event.Target{Sandbox: "other-9"}})
	if at, _ := a.Attribution(10); at.Session != "" {
		t.Fatalf("learned from another sandbox's event: %+v", at)
	}
	tap.Publish(context.Background(), &event.Event{Source: event.SourceMCP, Tenant: "acme", Principal: event.Principal{Subject: "alice"},
		Correlation: event.Correlation{SessionID: "s-1"}, Target: event.Target{Server: "files", Sandbox: "files-1"}})
	at, ok := a.Attribution(10)
	if !ok || at.Session != "s-1" || at.Principal.Subject != "alice" || at.Tenant != "acme" || at.Sandbox != "files-1" {
		t.Fatalf("attribution %+v, want session s-1 of alice in acme", at)
	}
}
