package ebpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/mcpwatch/mcpwatch/event"
)

// SandboxWatcher is told of every sandbox cgroup before the sandbox's process starts and after
// its cgroup is removed. ingest/sandbox's Watcher (Options.Watcher) has this method set; [Agent]
// and [Enforcer] implement it, and [Watchers] combines them.
type SandboxWatcher interface {
	WatchSandbox(cgroupID uint64, sandbox, server string) error
	UnwatchSandbox(cgroupID uint64)
}

// Watchers returns a watcher that tells each of ws in turn. If one fails, the ones before it
// are told the sandbox is gone and the error is returned: the sandbox is not started.
func Watchers(ws ...SandboxWatcher) SandboxWatcher { return watchers(ws) }

type watchers []SandboxWatcher

func (ws watchers) WatchSandbox(cgroupID uint64, sandbox, server string) error {
	for i, w := range ws {
		if err := w.WatchSandbox(cgroupID, sandbox, server); err != nil {
			for _, done := range ws[:i] {
				done.UnwatchSandbox(cgroupID)
			}
			return err
		}
	}
	return nil
}

func (ws watchers) UnwatchSandbox(cgroupID uint64) {
	for _, w := range ws {
		w.UnwatchSandbox(cgroupID)
	}
}

// ControlSource is the control topic's state: internal/control's Store.
type ControlSource interface {
	MatchKind(tenant string, kind event.ControlKind, scope event.ControlScope, value string, now time.Time) (event.Control, bool)
	// OnChange registers fn to be called after every change; fn must return quickly.
	OnChange(fn func())
}

// ActionRecorder takes the action records of the egress blocks applied and lifted; it must not
// block on I/O. The gateway's action publisher (ingest/mcp ActionPublisher) has this method.
type ActionRecorder interface {
	PublishAction(ctx context.Context, a *event.Action)
}

// EgressSetter is what [Enforcer] drives: [Egress].
type EgressSetter interface {
	Block(cgroupID uint64) error
	Unblock(cgroupID uint64) error
	SetAllow(cgroupID uint64, rules []AllowRule) error
	Forget(cgroupID uint64) error
}

// DefaultEnforceInterval is how often [Enforcer.Run] re-evaluates the controls without a change,
// for expiries.
const DefaultEnforceInterval = time.Second

// EnforcerConfig configures [NewEnforcer].
type EnforcerConfig struct {
	// Tenant is the gateway's tenant: controls of this tenant and of every tenant ("") apply.
	Tenant string
	// Observer names this gateway in the action records' actor ("gateway:<observer>").
	Observer string
	// Allow is each server's egress allow-list (the gateway config's egress.allow of a sandboxed
	// server). A server not in the map has no allow-list; one mapped to an empty list may reach
	// nothing.
	Allow map[string][]AllowRule
	// Recorder receives the action records; nil records none.
	Recorder ActionRecorder
	// Interval: see [DefaultEnforceInterval].
	Interval time.Duration
	Log      *slog.Logger
}

// Enforcer keeps the kernel's egress rules in step with the gateway's sandboxes and the control
// topic. As the sandbox manager's watcher it puts each sandbox's cgroup under its server's
// allow-list, and blocks it if a control already says so, before the server's process starts; a
// sandbox that cannot be put under its rules is not started (fail closed). [Enforcer.Run] then
// blocks and unblocks the live sandboxes on every control change and every Interval (expiries).
//
// A sandbox's egress is blocked while a control of this tenant (or of every tenant) is in force
// that is, in this order: block_egress of the sandbox, quarantine of the sandbox, block_egress of
// its server, quarantine of its server. Every block and lift applied is recorded as an action
// (block_egress; lift), with a deterministic id so a control applied again yields the same record.
type Enforcer struct {
	eg  EgressSetter
	ctl ControlSource
	cfg EnforcerConfig
	log *slog.Logger

	mu   sync.Mutex
	live map[uint64]*liveSandbox

	wake chan struct{}
}

type liveSandbox struct {
	id, server string
	cgroupID   uint64
	// blockedBy is the control the block applied for; nil when not blocked.
	blockedBy *event.Control
	// failed is the key of the last change that failed, so a failure is recorded once, not on
	// every retry.
	failed string
}

// NewEnforcer returns an enforcer driving eg from ctl. Start it with [Enforcer.Run].
func NewEnforcer(eg EgressSetter, ctl ControlSource, cfg EnforcerConfig) (*Enforcer, error) {
	if eg == nil || ctl == nil {
		return nil, errors.New("ebpf enforcer: egress and control source are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultEnforceInterval
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	n := &Enforcer{eg: eg, ctl: ctl, cfg: cfg, log: cfg.Log.With("component", "ebpf-egress"),
		live: map[uint64]*liveSandbox{}, wake: make(chan struct{}, 1)}
	ctl.OnChange(n.poke)
	return n, nil
}

func (n *Enforcer) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// WatchSandbox puts the sandbox's cgroup under its server's allow-list and blocks it if a
// control says so; an error leaves nothing set and must stop the sandbox from starting.
func (n *Enforcer) WatchSandbox(cgroupID uint64, sandbox, server string) error {
	if rules, ok := n.cfg.Allow[server]; ok {
		if err := n.eg.SetAllow(cgroupID, rules); err != nil {
			return fmt.Errorf("egress allow-list of server %s: %w", server, err)
		}
	}
	sb := &liveSandbox{id: sandbox, server: server, cgroupID: cgroupID}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.apply(sb, time.Now()); err != nil {
		if ferr := n.eg.Forget(cgroupID); ferr != nil {
			n.log.Error("forget egress rules of a sandbox not started", "cgroup_id", cgroupID, "err", ferr)
		}
		return fmt.Errorf("block egress of sandbox %s: %w", sandbox, err)
	}
	n.live[cgroupID] = sb
	return nil
}

// UnwatchSandbox forgets the sandbox's cgroup and its rules in the kernel.
func (n *Enforcer) UnwatchSandbox(cgroupID uint64) {
	n.mu.Lock()
	delete(n.live, cgroupID)
	n.mu.Unlock()
	if err := n.eg.Forget(cgroupID); err != nil {
		n.log.Error("forget egress rules of an ended sandbox", "cgroup_id", cgroupID, "err", err)
	}
}

// Run applies the controls to the live sandboxes on every change and every Interval until ctx
// ends. It returns ctx's error.
func (n *Enforcer) Run(ctx context.Context) error {
	t := time.NewTicker(n.cfg.Interval)
	defer t.Stop()
	for {
		n.ApplyAll()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.wake:
		case <-t.C:
		}
	}
}

// ApplyAll applies the controls in force now to every live sandbox.
func (n *Enforcer) ApplyAll() {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, sb := range n.live {
		_ = n.apply(sb, now) // failures are logged, recorded and retried
	}
}

// blockOf returns the control that blocks the sandbox's egress now, if any.
func (n *Enforcer) blockOf(sb *liveSandbox, now time.Time) (event.Control, bool) {
	for _, q := range [...]struct {
		kind  event.ControlKind
		scope event.ControlScope
		value string
	}{
		{event.ControlBlockEgress, event.ScopeSandbox, sb.id},
		{event.ControlQuarantine, event.ScopeSandbox, sb.id},
		{event.ControlBlockEgress, event.ScopeServer, sb.server},
		{event.ControlQuarantine, event.ScopeServer, sb.server},
	} {
		if c, ok := n.ctl.MatchKind(n.cfg.Tenant, q.kind, q.scope, q.value, now); ok {
			return c, true
		}
	}
	return event.Control{}, false
}

// apply blocks or unblocks one sandbox as the controls say; n.mu is held.
func (n *Enforcer) apply(sb *liveSandbox, now time.Time) error {
	ctl, want := n.blockOf(sb, now)
	switch {
	case want && sb.blockedBy == nil:
		err := n.eg.Block(sb.cgroupID)
		n.record(sb, ctl, true, err, now)
		if err != nil {
			return err
		}
		sb.blockedBy = &ctl
	case want:
		sb.blockedBy = &ctl // still blocked, perhaps by another control now
	case sb.blockedBy != nil:
		err := n.eg.Unblock(sb.cgroupID)
		n.record(sb, *sb.blockedBy, false, err, now)
		if err != nil {
			return err
		}
		sb.blockedBy = nil
	}
	return nil
}

// egressNamespace scopes the ids of the egress actions; it never changes.
var egressNamespace = uuid.MustParse("0d3f6a52-7c1e-4b8e-9a41-5f2c8e1d7b36")

// record publishes the action record of a block or lift applied (or failed). LatencyMS runs from
// the control's time to the kernel map update (for a lift on expiry, from the expiry; a
// tombstone carries no time, so a lift on it has none).
func (n *Enforcer) record(sb *liveSandbox, ctl event.Control, block bool, err error, now time.Time) {
	what, kind := "blocked", event.ActionBlockEgress
	if !block {
		what, kind = "unblocked", event.ActionLift
	}
	status := "succeeded"
	if err != nil {
		status, what = "failed", what+"-failed"
	}
	key := ctl.ID + "\x00" + sb.id + "\x00" + what
	if err != nil {
		n.log.Error("egress change not applied in the kernel; retrying", "sandbox", sb.id, "server", sb.server,
			"control", ctl.Key(), "block", block, "err", err)
		if sb.failed == key {
			return // recorded already
		}
		sb.failed = key
	} else {
		sb.failed = ""
	}
	at := time.Now()
	since := ctl.Time
	var detail string
	switch {
	case err != nil:
		detail = fmt.Sprintf("sandbox %s (server %s, cgroup %d): egress not %s: %v", sb.id, sb.server, sb.cgroupID, what[:len(what)-len("-failed")], err)
	case block:
		detail = fmt.Sprintf("sandbox %s (server %s, cgroup %d): egress blocked in the kernel, connects and UDP sends refused with EPERM; control %s",
			sb.id, sb.server, sb.cgroupID, ctl.Key())
	case ctl.Expires != nil && !now.Before(*ctl.Expires):
		since = *ctl.Expires
		detail = fmt.Sprintf("sandbox %s: egress unblocked: control %s expired at %s", sb.id, ctl.Key(), ctl.Expires.UTC().Format(time.RFC3339))
	default:
		since = time.Time{}
		detail = fmt.Sprintf("sandbox %s: egress unblocked: control %s lifted", sb.id, ctl.Key())
	}
	n.log.Info("egress action", "kind", kind, "status", status, "sandbox", sb.id, "control", ctl.Key())
	if n.cfg.Recorder == nil {
		return
	}
	a := &event.Action{
		Schema: event.SchemaVersion, ID: uuid.NewSHA1(egressNamespace, []byte(key)).String(), Time: at.UTC(),
		Tenant: n.cfg.Tenant, FindingID: ctl.FindingID, Kind: kind, Target: sb.id, Status: status, Detail: detail,
		Attempts: 1, Scope: ctl.Scope, Actor: "gateway:" + n.cfg.Observer, Reason: ctl.Reason, ControlID: ctl.ID,
		Expires: ctl.Expires,
	}
	if !since.IsZero() {
		a.LatencyMS = max(float64(at.Sub(since).Microseconds())/1000, 0)
	}
	n.cfg.Recorder.PublishAction(context.Background(), a)
}
