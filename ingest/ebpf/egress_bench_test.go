package ebpf

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/control"
)

// egressBench is the benchmark process itself moved into a sandbox cgroup below a parent the
// egress programs may be attached to; it is moved back to its own cgroup at cleanup.
type egressBench struct {
	p          *Probes
	parent, sb string
	sbID       uint64
	target     syscall.SockaddrInet4
	log        *slog.Logger
}

func newEgressBench(b *testing.B) *egressBench {
	root := requireKernelB(b)
	e := &egressBench{log: slog.New(slog.DiscardHandler), target: syscall.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}}}
	var err error
	if e.p, err = Load(Config{Log: e.log}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.p.Close() })
	mk := func(parent, name string) string {
		path := filepath.Join(parent, name+strconv.Itoa(os.Getpid()))
		if err := os.Mkdir(path, 0o755); err != nil && !os.IsExist(err) {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			for range 100 {
				if syscall.Rmdir(path) == nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
		return path
	}
	e.parent = mk(root, "mcpwatch-egress-bench-")
	e.sb = mk(e.parent, "sb-")
	var st syscall.Stat_t
	if err := syscall.Stat(e.sb, &st); err != nil {
		b.Fatal(err)
	}
	e.sbID = st.Ino
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		b.Fatal(err)
	}
	var orig string
	for _, line := range strings.Split(string(own), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			orig = filepath.Join(root, rest)
		}
	}
	if err := os.WriteFile(filepath.Join(e.sb, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := os.WriteFile(filepath.Join(orig, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			b.Errorf("move back to %s: %v", orig, err)
		}
	})
	return e
}

// connectUDP is one socket, connect and close: connect on a UDP socket runs the connect4 hook
// without a handshake, so the hook's share of the cost shows.
func (e *egressBench) connectUDP() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	err = syscall.Connect(fd, &e.target)
	syscall.Close(fd)
	return err
}

// BenchmarkEgressConnect measures socket+connect+close of a UDP socket to 127.0.0.1 from a
// sandbox cgroup: with no egress programs attached, attached with no entry for the cgroup,
// attached with an allow-list of 8 rules that allows the destination, and with the allow-list on
// the parent of the caller's cgroup (an ancestor walk and two trie lookups).
//
//	go test -run '^$' -bench EgressConnect -count 5 ./ingest/ebpf
func BenchmarkEgressConnect(b *testing.B) {
	e := newEgressBench(b)
	var rules []AllowRule
	for i := range 7 {
		r, _ := ParseAllowRule("10." + strconv.Itoa(i) + ".0.0/16:443")
		rules = append(rules, r)
	}
	loop, _ := ParseAllowRule("127.0.0.0/8:*")
	rules = append(rules, loop)
	run := func(b *testing.B) {
		for b.Loop() {
			if err := e.connectUDP(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("detached", run)
	eg, err := NewEgress(e.p, EgressConfig{Cgroup: e.parent, Log: e.log})
	if err != nil {
		b.Fatal(err)
	}
	defer eg.Close()
	b.Run("attached-no-entry", run)
	if err := eg.SetAllow(e.sbID, rules); err != nil {
		b.Fatal(err)
	}
	b.Run("attached-allow-list", run)
	if err := eg.Forget(e.sbID); err != nil {
		b.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(e.parent, &st); err != nil {
		b.Fatal(err)
	}
	if err := eg.SetAllow(st.Ino, rules); err != nil {
		b.Fatal(err)
	}
	b.Run("attached-allow-list-on-parent", run)
}

// BenchmarkEgressBlockLatency measures how long a block_egress control takes from being applied
// to the control store (as the control follower applies a record) to the first connect refused
// with EPERM in the sandbox: the enforcer's wakeup, the kernel map update and the next connect.
// Each iteration then lifts the control and waits for connects to pass again (not timed).
//
//	go test -run '^$' -bench EgressBlockLatency -benchtime 200x ./ingest/ebpf
func BenchmarkEgressBlockLatency(b *testing.B) {
	e := newEgressBench(b)
	eg, err := NewEgress(e.p, EgressConfig{Cgroup: e.parent, Log: e.log})
	if err != nil {
		b.Fatal(err)
	}
	defer eg.Close()
	store := control.NewStore()
	enf, err := NewEnforcer(eg, store, EnforcerConfig{Tenant: "bench", Log: e.log})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- enf.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := enf.WatchSandbox(e.sbID, "sb-bench", "files"); err != nil {
		b.Fatal(err)
	}
	defer enf.UnwatchSandbox(e.sbID)
	go func() { // drain the refusals
		for range e.p.Events() {
		}
	}()
	var worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := event.Control{Schema: event.SchemaVersion, ID: event.NewID(), Time: time.Now(), Kind: event.ControlBlockEgress,
			Scope: event.ScopeSandbox, Tenant: "bench", Value: "sb-bench", Reason: "bench"}
		v, err := event.Encode(&c)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := store.Apply([]byte(c.Key()), v); err != nil {
			b.Fatal(err)
		}
		for !errors.Is(e.connectUDP(), syscall.EPERM) {
			if time.Since(start) > 5*time.Second {
				b.Fatal("connect not refused within 5s of the control")
			}
		}
		worst = max(worst, time.Since(start))
		b.StopTimer()
		if err := store.Apply([]byte(c.Key()), nil); err != nil {
			b.Fatal(err)
		}
		for e.connectUDP() != nil {
			time.Sleep(50 * time.Microsecond)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(worst.Microseconds()), "worst-µs")
}
