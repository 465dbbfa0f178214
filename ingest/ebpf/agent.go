package ebpf

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/event"
)

// Publisher takes kernel events as raw events. Publish must not block on I/O and owns e after
// the call. The gateway's audit publishers (Kafka, and the durable spool in front of it) have
// this method, so kernel events travel the same path as the gateway's audit events and a broker
// outage delays them instead of losing them; those publishers count their own losses.
type Publisher interface {
	Publish(ctx context.Context, e *event.Event)
}

// Source is where the agent reads kernel events and sets what is watched: [Probes].
type Source interface {
	Events() <-chan Event
	Watch(cgroupID uint64) error
	Unwatch(cgroupID uint64) error
}

// Attribution is what a watched cgroup belongs to: its sandbox and MCP server, and once the
// gateway has seen the session's first request, the MCP session and who opened it.
type Attribution struct {
	Sandbox   string
	Server    string
	Tenant    string
	Session   string
	Principal event.Principal

	// started is set once the sandbox's first exec (the server's own start) was published.
	started bool
}

// DefaultLinger is how long [Agent] keeps a sandbox's attribution after it is unwatched, for
// its last events still in the ring buffer or the queue.
const DefaultLinger = time.Minute

// Defaults for [AgentConfig.Hold] and [AgentConfig.MaxHeld].
const (
	DefaultHold    = 2 * time.Second
	DefaultMaxHeld = 16384
)

// AgentConfig configures [NewAgent].
type AgentConfig struct {
	// Observer names this node in the events (event.Event.Observer).
	Observer string
	// Linger: see [DefaultLinger].
	Linger time.Duration
	// Hold is how long events of a sandbox whose MCP session is not known yet wait for it (the
	// server starts, and may act, before the gateway publishes the session's first audit event).
	// After it they are published with the sandbox and server only. Default [DefaultHold].
	Hold time.Duration
	// MaxHeld bounds the events held; beyond it they are published at once. Default
	// [DefaultMaxHeld].
	MaxHeld    int
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Agent publishes the kernel events of the sandboxes a gateway launched, attributed to sandbox,
// server, MCP session and principal. It is the gateway's [sandbox.Watcher]: every sandbox cgroup
// is watched before its server starts and unwatched after it is removed. [Agent.Tap] wraps the
// gateway's audit publisher to learn each sandbox's session and principal from the audit events
// the gateway already produces.
type Agent struct {
	src Source
	pub Publisher
	cfg AgentConfig
	log *slog.Logger

	mu    sync.RWMutex
	attr  map[uint64]*Attribution
	ended map[uint64]time.Time // unwatched: forget after Linger
	// bySandbox finds a sandbox's cgroup from the sandbox id the gateway's MCP events carry.
	bySandbox map[string]uint64

	published, unattributed prometheus.Counter

	learned chan uint64 // cgroups whose session became known: release their held events
	// held and nHeld belong to Run's goroutine.
	held  map[uint64]*heldEvents
	nHeld int
}

type heldEvents struct {
	since time.Time
	evs   []Event
}

// NewAgent returns an agent reading src and publishing to pub. Start it with [Agent.Run].
func NewAgent(src Source, pub Publisher, cfg AgentConfig) (*Agent, error) {
	if src == nil || pub == nil {
		return nil, fmt.Errorf("ebpf agent: source and publisher are required")
	}
	if cfg.Linger <= 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.Hold <= 0 {
		cfg.Hold = DefaultHold
	}
	if cfg.MaxHeld <= 0 {
		cfg.MaxHeld = DefaultMaxHeld
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	a := &Agent{
		learned: make(chan uint64, 64), held: map[uint64]*heldEvents{},
		src: src, pub: pub, cfg: cfg, log: cfg.Log.With("component", "ebpf-agent"),
		attr: map[uint64]*Attribution{}, ended: map[uint64]time.Time{}, bySandbox: map[string]uint64{},
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_ebpf_published_total",
			Help: "Kernel events handed to the publisher as raw events."}),
		unattributed: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_ebpf_unattributed_total",
			Help: "Kernel events published without a sandbox attribution (their cgroup was unwatched too long ago); published anyway."}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{a.published, a.unattributed} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("ebpf agent: register metrics: %w", err)
			}
		}
	}
	return a, nil
}

// WatchSandbox watches a sandbox's cgroup, its descendants included, and remembers which
// sandbox and server it is. It implements [sandbox.Watcher].
func (a *Agent) WatchSandbox(cgroupID uint64, sandboxID, server string) error {
	a.mu.Lock()
	a.attr[cgroupID] = &Attribution{Sandbox: sandboxID, Server: server}
	a.bySandbox[sandboxID] = cgroupID
	delete(a.ended, cgroupID)
	a.mu.Unlock()
	return a.src.Watch(cgroupID)
}

// UnwatchSandbox stops watching a sandbox's cgroup; its attribution is kept for the linger time.
// It implements [sandbox.Watcher].
func (a *Agent) UnwatchSandbox(cgroupID uint64) {
	if err := a.src.Unwatch(cgroupID); err != nil {
		a.log.Error("unwatch sandbox cgroup", "cgroup_id", cgroupID, "err", err)
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ended[cgroupID] = now
	for id, t := range a.ended {
		if now.Sub(t) > a.cfg.Linger {
			if at := a.attr[id]; at != nil && a.bySandbox[at.Sandbox] == id {
				delete(a.bySandbox, at.Sandbox)
			}
			delete(a.ended, id)
			delete(a.attr, id)
		}
	}
}

// Tap returns a publisher that passes every event to next and, for the gateway's audit events
// that name a sandbox — by its cgroup (event.Process.CgroupID), as the gateway's sandbox events
// do, or by its id (event.Target.Sandbox), as every MCP message of a sandboxed session does —
// records their session, tenant and principal as that sandbox's attribution.
func (a *Agent) Tap(next Publisher) Publisher {
	return tap{a: a, next: next}
}

type tap struct {
	a    *Agent
	next Publisher
}

func (t tap) Publish(ctx context.Context, e *event.Event) {
	if e != nil && e.Source != event.SourceKernel && ((e.Process != nil && e.Process.CgroupID != 0) || e.Target.Sandbox != "") {
		t.a.learn(e)
	}
	t.next.Publish(ctx, e)
}

func (a *Agent) learn(e *event.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var cg uint64
	if e.Process != nil {
		cg = e.Process.CgroupID
	}
	if cg == 0 {
		cg = a.bySandbox[e.Target.Sandbox]
	}
	at, ok := a.attr[cg]
	if !ok {
		return // not a sandbox this agent watches
	}
	if e.Correlation.SessionID != "" {
		at.Session = e.Correlation.SessionID
	}
	if e.Tenant != "" {
		at.Tenant = e.Tenant
	}
	if e.Principal.Subject != "" {
		at.Principal = e.Principal
	}
	if at.Server == "" {
		at.Server = e.Target.Server
	}
	if at.Session != "" {
		select {
		case a.learned <- cg:
		default: // Run's ticker releases it
		}
	}
}

// Attribution returns what the cgroup is attributed to.
func (a *Agent) Attribution(cgroupID uint64) (Attribution, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	at, ok := a.attr[cgroupID]
	if !ok {
		return Attribution{}, false
	}
	return *at, true
}

// Run publishes events until the source's queue closes (the probes were closed) or ctx ends;
// either way the events it holds are published before it returns.
func (a *Agent) Run(ctx context.Context) error {
	evs := a.src.Events()
	tick := time.NewTicker(a.cfg.Hold / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			a.release(context.WithoutCancel(ctx), func(uint64, *heldEvents) bool { return true })
			return ctx.Err()
		case id := <-a.learned:
			a.release(ctx, func(cg uint64, _ *heldEvents) bool { return cg == id })
		case now := <-tick.C:
			a.release(ctx, func(cg uint64, h *heldEvents) bool {
				at, _ := a.Attribution(cg)
				return at.Session != "" || now.Sub(h.since) >= a.cfg.Hold
			})
		case e, ok := <-evs:
			if !ok {
				a.release(ctx, func(uint64, *heldEvents) bool { return true })
				return nil
			}
			at, found := a.Attribution(e.WatchedCgroupID)
			if found && at.Session == "" && a.nHeld < a.cfg.MaxHeld {
				h := a.held[e.WatchedCgroupID]
				if h == nil {
					h = &heldEvents{since: time.Now()}
					a.held[e.WatchedCgroupID] = h
				}
				h.evs = append(h.evs, e)
				a.nHeld++
				continue
			}
			a.publish(ctx, e, at, found)
		}
	}
}

// release publishes, in order, the held events of the cgroups that match.
func (a *Agent) release(ctx context.Context, match func(uint64, *heldEvents) bool) {
	for cg, h := range a.held {
		if !match(cg, h) {
			continue
		}
		at, found := a.Attribution(cg)
		for _, e := range h.evs {
			a.publish(ctx, e, at, found)
		}
		a.nHeld -= len(h.evs)
		delete(a.held, cg)
	}
}

func (a *Agent) publish(ctx context.Context, e Event, at Attribution, found bool) {
	if !found {
		a.unattributed.Inc()
	}
	out := ToEvent(e, at, a.cfg.Observer)
	if found && e.Kind == KindExec && e.CgroupID == e.WatchedCgroupID && a.firstExec(e.WatchedCgroupID) {
		// The sandbox's first program is the configured server command itself: detections of
		// programs a server spawns (a shell, an interpreter) leave it out by this mark.
		if out.Attributes == nil {
			out.Attributes = map[string]string{}
		}
		out.Attributes[AttrServerStart] = "true"
	}
	a.pub.Publish(ctx, out)
	a.published.Inc()
}

// AttrServerStart marks the exec event of a sandbox's first program: the MCP server command the
// gateway launched, as opposed to what that server runs later.
const AttrServerStart = "kernel.server_start"

// firstExec reports whether the cgroup's first exec is being published now.
func (a *Agent) firstExec(cg uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	at := a.attr[cg]
	if at == nil || at.started {
		return false
	}
	at.started = true
	return true
}

// ToEvent builds the raw event for a kernel event of a cgroup with this attribution.
func ToEvent(e Event, at Attribution, observer string) *event.Event {
	out := &event.Event{
		Schema: event.SchemaVersion, ID: uuid.Must(uuid.NewV7()).String(), Time: e.Time.UTC(),
		Source: event.SourceKernel, Observer: observer, Tenant: at.Tenant, Principal: at.Principal,
		Correlation: event.Correlation{SessionID: at.Session},
		Target:      event.Target{Server: at.Server, Sandbox: at.Sandbox},
		Outcome:     event.Outcome{Result: event.ResultAllowed},
		Process: &event.Process{
			PID: int(e.PID), PPID: int(e.PPID), UID: int(e.UID), Comm: e.Comm, CgroupID: e.CgroupID,
			Syscall: e.Syscall,
		},
	}
	attrs := map[string]string{}
	if e.WatchedCgroupID != e.CgroupID {
		attrs["kernel.sandbox_cgroup_id"] = strconv.FormatUint(e.WatchedCgroupID, 10)
	}
	switch e.Kind {
	case KindExec:
		out.Process.Exe = e.Filename
		out.Process.Path = e.Filename
		out.Process.Args = e.Args
		if e.ArgsTruncated {
			attrs["kernel.args_truncated"] = "true"
		}
	case KindExit:
		attrs["kernel.exit_code"] = strconv.Itoa(e.ExitCode)
		if e.ExitSignal != 0 {
			attrs["kernel.exit_signal"] = strconv.Itoa(e.ExitSignal)
		}
	case KindOpen:
		out.Process.Path = e.Path
		attrs["kernel.open_flags"] = "0x" + strconv.FormatUint(e.Flags, 16)
		if e.Path != "" && e.Path[0] != '/' && e.Dfd != atFdcwd {
			attrs["kernel.dirfd"] = strconv.Itoa(int(e.Dfd))
		}
	case KindConnect:
		out.Network.DstIP = e.Addr.Addr().String()
		out.Network.DstPort = int(e.Addr.Port())
	case KindEgressDenied:
		out.Network.DstIP = e.Addr.Addr().String()
		out.Network.DstPort = int(e.Addr.Port())
		out.Outcome = event.Outcome{Result: event.ResultDenied, PolicyRule: "egress:" + e.EgressRule,
			Reason: egressReason(e)}
		out.Severity = 7
		attrs["kernel.egress_rule"] = e.EgressRule
		attrs["kernel.ip_protocol"] = strconv.Itoa(int(e.Protocol))
	}
	if len(attrs) > 0 {
		out.Attributes = attrs
	}
	return out
}

const atFdcwd = -100
