package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/source"
	"github.com/mcpwatch/mcpwatch/ingest/stdio"
	"github.com/mcpwatch/mcpwatch/internal/pins"
)

// osExit ends the process with the wrapped server's exit status; tests replace it.
var osExit = os.Exit

// wrapCmd is `mcpwatch wrap -- cmd args...`: the stdio counterpart of the gateway, run by an MCP
// client in place of the server command. Standard output is the MCP channel, so everything
// mcpwatch says goes to standard error.
func wrapCmd(g *globals) *cobra.Command {
	var (
		cfg       stdio.Config
		subject   string
		spoolDir  string
		spoolFull string
		bootstrap time.Duration
		noEnforce bool
		guard     wrapGuard
	)
	cmd := &cobra.Command{
		Use:   "wrap [flags] -- command [args...]",
		Short: "Run a stdio MCP server behind mcpwatch, auditing every message both ways to Kafka",
		Long: `wrap starts the command as a stdio MCP server and passes the MCP client's messages to it
and its answers back unchanged, publishing an audit event for each to the raw topic. Configure
the MCP client to launch "mcpwatch wrap -- <server command>" instead of the server command.
The principal is the OS user running wrap (or --subject); the client id comes from initialize.
Revocations and quarantines from the control topic, the access policy (--policy-file) and tool
pins (--tool-pins) are enforced as by the gateway: refused requests are answered by wrap with a
JSON-RPC error and never reach the server. With --spool-dir and --spool-full=fail_closed (the
default) requests are refused while the audit trail cannot take them.
Standard output carries MCP only: logs go to standard error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 {
				return errors.New("wrap: put the server command after --, e.g. mcpwatch wrap -- npx server")
			}
			cfg.Principal.Subject = subject
			if host, err := os.Hostname(); err == nil {
				cfg.Observer = host
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			if cfg.ServerName == "" {
				cfg.ServerName = filepath.Base(args[0])
			}
			code, err := runWrap(cmd, g, cfg, spoolDir, spoolFull, bootstrap, !noEnforce, guard, args)
			if err == nil && code != 0 {
				osExit(code) // after runWrap's deferred flushes and closes
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ServerName, "server-name", env("MCPWATCH_WRAP_SERVER", ""), "name of the server in events and quarantines (default: the command's base name)")
	f.StringVar(&cfg.Tenant, "tenant", env("MCPWATCH_TENANT", mcp.DefaultTenant), "tenant of the principal")
	f.StringVar(&subject, "subject", env("MCPWATCH_WRAP_SUBJECT", ""), "principal subject (default: the OS user running wrap)")
	f.BoolVar(&cfg.NoMasking, "no-masking", false, "do not mask personal data and secrets; events then carry no tool arguments (debugging only)")
	f.IntVar(&cfg.MaxLineBytes, "max-line-bytes", stdio.DefaultMaxLineBytes, "longest message audited; longer ones are passed on and audited as uninspected")
	f.DurationVar(&cfg.Grace, "grace", stdio.DefaultGrace, "how long the server gets to exit after its input ends, and again after SIGTERM")
	f.StringVar(&spoolDir, "spool-dir", env("MCPWATCH_WRAP_SPOOL_DIR", ""), "disk spool keeping audit events while Kafka is unreachable (one directory per running wrap; empty: none, events are buffered in memory and dropped when the buffer is full)")
	f.StringVar(&spoolFull, "spool-full", "fail_closed", "with --spool-dir, when the spool is full: fail_closed (refuse requests that cannot be audited) or fail_open (drop and count events)")
	f.StringVar(&guard.policyFile, "policy-file", env("MCPWATCH_POLICY_FILE", ""), "access policy (YAML, as the gateway's) deciding the client's tools/call, resources/read, prompts/get and lists; reloaded when it changes; empty: no policy")
	f.DurationVar(&guard.policyReload, "policy-reload", 2*time.Second, "how often to check the policy file for changes")
	f.StringVar(&guard.toolPins, "tool-pins", env("MCPWATCH_TOOL_PINS", ""), "tool pin file (JSON, as the gateway's; see `mcpwatch tools`); empty: no tool pinning")
	f.StringVar(&guard.toolPinning, "tool-pinning", env("MCPWATCH_TOOL_PINNING", string(pins.TOFU)), "with --tool-pins: off, audit, tofu or strict (see the gateway's --tool-pinning)")
	f.DurationVar(&bootstrap, "bootstrap-timeout", 5*time.Second, "how long to try creating the topics and loading the control topic at start; the server is started either way")
	f.BoolVar(&noEnforce, "no-enforce", false, "do not follow the control topic: revocations and quarantines are not applied (by default every client message is checked, and refused until the control topic is loaded)")
	return cmd
}

// wrapGuard is what wrap enforces besides the control topic: the gateway's policy and tool pins.
type wrapGuard struct {
	policyFile   string
	policyReload time.Duration
	toolPins     string
	toolPinning  string
}

// runWrap runs the server behind the wrapper and returns its exit status (128+n when killed by
// signal n), once the audit events are flushed. Delivery and enforcement are the gateway's
// (package source): the same spool, the same followers of the control and scores topics.
func runWrap(cmd *cobra.Command, g *globals, cfg stdio.Config, spoolDir, spoolFull string, bootstrap time.Duration, enforce bool, guard wrapGuard, args []string) (int, error) {
	log := g.log.With("component", "wrap")
	sc := source.DefaultConfig()
	sc.Spool.Dir, sc.Spool.Full = spoolDir, spoolFull
	sc.Policy.File, sc.Policy.Reload = guard.policyFile, guard.policyReload
	sc.ToolPins.File, sc.ToolPins.Mode = guard.toolPins, guard.toolPinning
	if guard.toolPins == "" && guard.toolPinning == string(pins.Strict) {
		sc.ToolPins.Mode = string(pins.Off) // strict pins nothing without a pin file; wrap never required one
	}
	set := component.Settings{Type: "wrap", Logger: log, Registerer: g.reg, Health: g.hl, Topics: g.topics(),
		Kafka: g.cfg.KafkaConfig("")}
	// Signals are forwarded to the server, which decides when to stop; wrap follows its exit.
	ctx := context.WithoutCancel(cmd.Context())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	cfg.Signals = sigs

	// A wrap started without Kafka still runs the server: an MCP client cannot do without it.
	bctx, cancel := context.WithTimeout(ctx, bootstrap)
	if err := g.ensureTopicsCtx(bctx); err != nil {
		log.Warn("audit topics not verified; events are buffered until Kafka answers", "err", err)
	}
	cancel()
	src, err := source.Open(set, sc, source.Options{FollowControl: enforce, FollowScores: enforce && guard.policyFile != ""})
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
	lctx, lcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(lctx) }()
	defer func() {
		lcancel()
		if err := <-done; err != nil {
			log.Warn("followers", "err", err)
		}
	}()
	if src.Policy != nil {
		cfg.Policy, cfg.Scores = src.Policy, src
	}
	cfg.ToolPins = src.Pins
	if enforce {
		// Until the control topic is loaded every message is refused (a revoked principal must
		// not slip in while it loads); the wait at start is bounded so the server starts anyway.
		wctx, wcancel := context.WithTimeout(ctx, bootstrap)
		select {
		case <-src.ControlLoaded():
		case <-wctx.Done():
			log.Warn("control topic not loaded yet: client messages are refused until it is")
		}
		wcancel()
		tenant, server := cfg.Tenant, cfg.ServerName
		cfg.Check = func(p event.Principal, _, tool string) error {
			select {
			case <-src.ControlLoaded():
			default:
				return &stdio.Refusal{Rule: "control:not_loaded", Reason: "revocations not loaded yet (control topic unreachable)"}
			}
			if ctl, ok := src.Controls.Check(tenant, p, server, tool, time.Now()); ok {
				return &stdio.Refusal{Rule: "control:" + ctl.Key(), Reason: "access revoked: " + ctl.Reason}
			}
			return nil
		}
	}

	server := exec.Command(args[0], args[1:]...)
	server.Stderr = cmd.ErrOrStderr()
	werr := stdio.Wrap(ctx, cfg, cmd.InOrStdin(), cmd.OutOrStdout(), server, src.Publisher, g.log)
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
