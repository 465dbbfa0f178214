package stdio

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"syscall"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/source"
)

// RunOptions configure [Run]: [Wrap] with the delivery and enforcement the gateway has.
type RunOptions struct {
	// Config is the relay's; Run sets its Check, Policy, Scores and ToolPins from Source.
	Config Config
	// Source is the spool, the policy file and the tool pins, as the gateway's (package source).
	Source source.Config
	// Enforce follows the control topic: revoked principals and quarantined servers and tools
	// are refused, and until the topic is loaded every client message is; with a policy it also
	// follows the scores topic for the policy's risk.
	Enforce bool
	// Bootstrap bounds how long Run tries to create the topics and to load the control topic
	// before it starts the server anyway: an MCP client cannot do without its server.
	Bootstrap time.Duration
	// EnsureTopics creates the topics; a failure is logged, and events wait for Kafka.
	EnsureTopics func(context.Context) error
	// Settings are the Kafka client, topics, logger and metrics of the audit trail.
	Settings component.Settings
}

// Run wraps server as [Wrap] does, publishing through a [source.Source] — the gateway's Kafka
// publisher, with the disk spool when one is configured — and enforcing revocations,
// quarantines, the policy and tool pins as the gateway does. It returns the server's exit status
// (128+n when killed by signal n) once the audit events are delivered or spooled.
func Run(ctx context.Context, o RunOptions, clientIn io.Reader, clientOut io.Writer, server *exec.Cmd) (int, error) {
	log := o.Settings.Logger
	cfg := o.Config
	bctx, cancel := context.WithTimeout(ctx, o.Bootstrap)
	if o.EnsureTopics != nil {
		if err := o.EnsureTopics(bctx); err != nil {
			log.Warn("audit topics not verified; events are buffered until Kafka answers", "err", err)
		}
	}
	cancel()
	src, err := source.Open(o.Settings, o.Source, source.Options{FollowControl: o.Enforce, FollowScores: o.Enforce && o.Source.Policy.File != ""})
	if err != nil {
		return 0, err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := src.Close(fctx); err != nil {
			log.Warn("audit events not all delivered", "err", err)
		}
	}()
	lctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(lctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			log.Warn("followers", "err", err)
		}
	}()
	if src.Policy != nil {
		cfg.Policy, cfg.Scores = src.Policy, src
	}
	cfg.ToolPins = src.Pins
	if o.Enforce {
		cfg.Check = enforce(ctx, src, cfg.Tenant, cfg.ServerName, o.Bootstrap, o.Settings)
	}
	werr := Wrap(ctx, cfg, clientIn, clientOut, server, src.Publisher, log)
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		code := ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		log.Info("wrapped server exited", "status", code)
		return code, nil
	}
	return 0, werr
}

// enforce waits, at most bootstrap, for the control topic, and returns the check of every client
// message: refused until the topic is loaded (a revoked principal must not slip in while it
// loads), then refused when a revocation or quarantine covers it.
func enforce(ctx context.Context, src *source.Source, tenant, server string, bootstrap time.Duration, set component.Settings) CheckFunc {
	wctx, cancel := context.WithTimeout(ctx, bootstrap)
	select {
	case <-src.ControlLoaded():
	case <-wctx.Done():
		set.Logger.Warn("control topic not loaded yet: client messages are refused until it is")
	}
	cancel()
	return func(p event.Principal, _, tool string) error {
		select {
		case <-src.ControlLoaded():
		default:
			return &Refusal{Rule: "control:not_loaded", Reason: "revocations not loaded yet (control topic unreachable)"}
		}
		if ctl, ok := src.Controls.Check(tenant, p, server, tool, time.Now()); ok {
			return &Refusal{Rule: "control:" + ctl.Key(), Reason: "access revoked: " + ctl.Reason}
		}
		return nil
	}
}
