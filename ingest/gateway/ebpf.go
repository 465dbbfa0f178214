package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/ingest/ebpf"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
)

// EBPFMode says whether the gateway watches its sandboxes in the kernel (docs/ebpf.md).
type EBPFMode string

// EBPF modes.
const (
	// EBPFOff: no kernel monitoring (the default).
	EBPFOff EBPFMode = "false"
	// EBPFOn: load the probes, and fail the start if the kernel or the privileges do not allow it.
	EBPFOn EBPFMode = "true"
	// EBPFAuto: load the probes if the kernel allows; otherwise log one line saying why and run
	// without kernel monitoring.
	EBPFAuto EBPFMode = "auto"
)

// UnmarshalYAML accepts true, false or auto.
func (m *EBPFMode) UnmarshalYAML(n ast.Node) error {
	var v any
	if err := yaml.NodeToValue(n, &v); err != nil {
		return err
	}
	s := strings.ToLower(strings.TrimSpace(fmt.Sprint(v)))
	switch EBPFMode(s) {
	case EBPFOff, EBPFOn, EBPFAuto:
		*m = EBPFMode(s)
		return nil
	}
	return &yaml.SyntaxError{Token: n.GetToken(), Message: fmt.Sprintf("ebpf.enabled %s: want true, false or auto", s)}
}

// EBPF configures kernel monitoring of the sandboxes the gateway launches (docs/ebpf.md): eBPF
// probes watch each sandbox's cgroup, and their events are published as raw events attributed
// to the sandbox, server, MCP session and principal, through the gateway's audit publisher.
type EBPF struct {
	// Enabled: false (default), true (fail the start if the probes cannot load) or auto (load
	// them if the kernel allows, else run without and say so once).
	Enabled EBPFMode `yaml:"enabled"`
	// RingBytes is the kernel ring buffer's size, a power of two (default 8 MiB).
	RingBytes int `yaml:"ring_bytes"`
	// QueueLen bounds the decoded events waiting to be published (default 65536); beyond it
	// events are dropped and counted (mcpwatch_ebpf_queue_dropped_total).
	QueueLen int `yaml:"queue_len"`
	// Hold is how long a sandbox's kernel events wait for the gateway to learn its MCP session
	// and principal before they are published with the sandbox only (default 2s, at most 1m).
	Hold time.Duration `yaml:"hold"`
}

// On reports whether kernel monitoring is asked for (true or auto).
func (e EBPF) On() bool { return e.Enabled == EBPFOn || e.Enabled == EBPFAuto }

// maxEBPFHold bounds ebpf.hold: held events are kept in memory.
const maxEBPFHold = time.Minute

func (e EBPF) validate(hasCommand bool) error {
	var errs []error
	switch e.Enabled {
	case "", EBPFOff, EBPFAuto:
	case EBPFOn:
		if !hasCommand {
			errs = append(errs, component.Fieldf("enabled", "true, but no upstream is a command: the probes watch the sandboxes "+
				"of command upstreams only (set false, or auto)"))
		}
	default:
		errs = append(errs, component.Fieldf("enabled", "%q: want true, false or auto", e.Enabled))
	}
	if e.RingBytes != 0 && (e.RingBytes < 4096 || e.RingBytes&(e.RingBytes-1) != 0) {
		errs = append(errs, component.Fieldf("ring_bytes", "%d: want a power of two of at least 4096", e.RingBytes))
	}
	if e.QueueLen < 0 {
		errs = append(errs, component.Fieldf("queue_len", "must not be negative, got %d", e.QueueLen))
	}
	if e.Hold < 0 || e.Hold > maxEBPFHold {
		errs = append(errs, component.Fieldf("hold", "%s: want at most %s (held events wait in memory)", e.Hold, maxEBPFHold))
	}
	return errors.Join(errs...)
}

// kernel is the gateway's running kernel monitoring: the probes and the agent that publishes
// their events, and the egress enforcement when it could be attached.
type kernel struct {
	probes *ebpf.Probes
	agent  *ebpf.Agent
	done   chan struct{}
	// egress is the sandboxes' watcher for egress enforcement: it forwards to the enforcer once
	// the sandboxes' parent cgroup exists ([kernel.startEgress]).
	egress     lazyWatcher
	eg         *ebpf.Egress
	stopEnf    context.CancelFunc
	enfStopped chan struct{}
}

// watcher is what the sandbox manager tells of every sandbox: the agent, then the egress
// enforcement (a sandbox whose egress rules cannot be set is not started).
func (k *kernel) watcher() sandbox.Watcher { return ebpf.Watchers(k.agent, &k.egress) }

// lazyWatcher forwards to a watcher set after the sandbox manager was made (the egress programs
// attach to the manager's parent cgroup, which exists only then). Before that, and when egress
// enforcement is unavailable in auto mode, it lets sandboxes start: no sandbox starts before the
// gateway serves, and a configured allow-list makes egress enforcement mandatory.
type lazyWatcher struct {
	mu sync.Mutex
	w  ebpf.SandboxWatcher
}

func (l *lazyWatcher) set(w ebpf.SandboxWatcher) {
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
}

func (l *lazyWatcher) get() ebpf.SandboxWatcher {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w
}

func (l *lazyWatcher) WatchSandbox(cgroupID uint64, sandbox, server string) error {
	if w := l.get(); w != nil {
		return w.WatchSandbox(cgroupID, sandbox, server)
	}
	return nil
}

func (l *lazyWatcher) UnwatchSandbox(cgroupID uint64) {
	if w := l.get(); w != nil {
		w.UnwatchSandbox(cgroupID)
	}
}

// startEgress attaches the egress programs to the sandboxes' parent cgroup and starts the
// enforcer that keeps them in step with the control topic (block_egress and quarantine controls
// of a sandbox or its server) and with each server's allow-list. Without the programs (a kernel
// or privileges that do not allow them) it fails when an allow-list is configured or ebpf is
// true, and otherwise logs why and lets block controls degrade to freezing.
func (k *kernel) startEgress(cfg *Config, parent string, set component.Settings, tenant, observer string,
	controls ebpf.ControlSource, actions ebpf.ActionRecorder) error {
	allow := map[string][]ebpf.AllowRule{}
	for _, u := range cfg.Upstreams {
		if u.Command == "" || u.Egress == nil {
			continue
		}
		rules, err := ebpf.ParseAllowRules(u.Egress.Allow)
		if err != nil {
			return fmt.Errorf("upstream %s: egress.allow: %w", u.Name, err)
		}
		allow[u.Name] = rules
	}
	eg, err := ebpf.NewEgress(k.probes, ebpf.EgressConfig{Cgroup: parent, Registerer: set.Registerer, Log: set.Logger})
	if err != nil {
		if cfg.EBPF.Enabled == EBPFAuto && len(allow) == 0 && errors.Is(err, ebpf.ErrUnsupported) {
			set.Logger.Warn("egress enforcement (ebpf: auto) unavailable here; block_egress controls will not block, quarantines still freeze", "reason", err.Error())
			return nil
		}
		return fmt.Errorf("egress enforcement (ebpf.enabled: %s): %w", cfg.EBPF.Enabled, err)
	}
	enf, err := ebpf.NewEnforcer(eg, controls, ebpf.EnforcerConfig{Tenant: tenant, Observer: observer, Allow: allow,
		Recorder: actions, Log: set.Logger})
	if err != nil {
		_ = eg.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	k.eg, k.stopEnf, k.enfStopped = eg, cancel, make(chan struct{})
	go func() {
		defer close(k.enfStopped)
		_ = enf.Run(ctx)
	}()
	k.egress.set(enf)
	set.Logger.Info("egress enforcement (ebpf) on", "cgroup", parent, "allow_lists", len(allow))
	return nil
}

// wireEBPF loads the probes and starts the agent when the config asks for them and some upstream
// is a command (only sandboxes are watched). It returns nil when kernel monitoring is off, or
// in auto mode when the kernel or the privileges do not allow it (logged once, with the reason).
// The agent publishes to pub, the gateway's audit publisher; the gateway must publish its own
// audit events through agent.Tap so the agent learns each sandbox's session and principal.
//
// Egress enforcement attaches later, once the sandboxes' parent cgroup exists
// ([kernel.startEgress]).
func wireEBPF(c EBPF, hasCommand bool, set component.Settings, observer string, pub mcp.Publisher) (*kernel, error) {
	if !c.On() {
		return nil, nil
	}
	log := set.Logger
	if !hasCommand {
		log.Info("kernel monitoring (ebpf) not started: no upstream is a command, so there is no sandbox to watch")
		return nil, nil
	}
	p, err := ebpf.Load(ebpf.Config{RingBytes: c.RingBytes, QueueLen: c.QueueLen, Registerer: set.Registerer, Log: log})
	if err != nil {
		if c.Enabled == EBPFAuto && errors.Is(err, ebpf.ErrUnsupported) {
			log.Warn("kernel monitoring (ebpf: auto) unavailable here; the gateway runs without it", "reason", err.Error())
			return nil, nil
		}
		return nil, fmt.Errorf("kernel monitoring (ebpf.enabled: %s): %w", c.Enabled, err)
	}
	a, err := ebpf.NewAgent(p, pub, ebpf.AgentConfig{Observer: observer, Hold: c.Hold, Registerer: set.Registerer, Log: log})
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	k := &kernel{probes: p, agent: a, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		// Run returns once Close has closed the probes' queue, after publishing what it holds.
		_ = a.Run(context.Background())
	}()
	log.Info("kernel monitoring (ebpf) on", "tracepoints", p.Attached())
	return k, nil
}

// close stops the egress enforcement and detaches its programs, then detaches the probes and
// waits for the agent to publish the last events.
func (k *kernel) close() error {
	var errs []error
	if k.eg != nil {
		k.stopEnf()
		<-k.enfStopped
		errs = append(errs, k.eg.Close())
	}
	errs = append(errs, k.probes.Close())
	<-k.done
	return errors.Join(errs...)
}
