package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/ingest/ebpf"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
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
// their events.
type kernel struct {
	probes *ebpf.Probes
	agent  *ebpf.Agent
	done   chan struct{}
}

// wireEBPF loads the probes and starts the agent when the config asks for them and some upstream
// is a command (only sandboxes are watched). It returns nil when kernel monitoring is off, or
// in auto mode when the kernel or the privileges do not allow it (logged once, with the reason).
// The agent publishes to pub, the gateway's audit publisher; the gateway must publish its own
// audit events through agent.Tap so the agent learns each sandbox's session and principal.
//
// Egress enforcement in the kernel (cgroup/connect programs driven by block_egress controls)
// attaches here too, on the same probes, once it is built.
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

// close detaches every program, then waits for the agent to publish the last events.
func (k *kernel) close() error {
	err := k.probes.Close()
	<-k.done
	return err
}
