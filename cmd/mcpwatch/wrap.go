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
	o := stdio.RunOptions{Source: source.DefaultConfig()}
	o.Source.Spool.Dir = ""
	var subject string
	var noEnforce bool
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
			c := &o.Config
			c.Principal.Subject = subject
			if host, err := os.Hostname(); err == nil {
				c.Observer = host
			}
			if err := c.Validate(); err != nil {
				return err
			}
			if c.ServerName == "" {
				c.ServerName = filepath.Base(args[0])
			}
			if o.Source.ToolPins.File == "" && o.Source.ToolPins.Mode == string(pins.Strict) {
				o.Source.ToolPins.Mode = string(pins.Off) // strict pins nothing without a pin file
			}
			o.Enforce, o.EnsureTopics = !noEnforce, g.ensureTopicsCtx
			o.Settings = component.Settings{Type: "wrap", Logger: g.log.With("component", "wrap"), Registerer: g.reg,
				Health: g.hl, Topics: g.topics(), Kafka: g.cfg.KafkaConfig("")}
			// Signals go to the server, which decides when to stop; wrap follows its exit.
			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
			defer signal.Stop(sigs)
			c.Signals = sigs
			server := exec.Command(args[0], args[1:]...)
			server.Stderr = cmd.ErrOrStderr()
			code, err := stdio.Run(context.WithoutCancel(cmd.Context()), o, cmd.InOrStdin(), cmd.OutOrStdout(), server)
			if err == nil && code != 0 {
				osExit(code) // after Run's flushes and closes
			}
			return err
		},
	}
	f := cmd.Flags()
	c, sc := &o.Config, &o.Source
	f.StringVar(&c.ServerName, "server-name", env("MCPWATCH_WRAP_SERVER", ""), "name of the server in events and quarantines (default: the command's base name)")
	f.StringVar(&c.Tenant, "tenant", env("MCPWATCH_TENANT", mcp.DefaultTenant), "tenant of the principal")
	f.StringVar(&subject, "subject", env("MCPWATCH_WRAP_SUBJECT", ""), "principal subject (default: the OS user running wrap)")
	f.BoolVar(&c.NoMasking, "no-masking", false, "do not mask personal data and secrets; events then carry no tool arguments (debugging only)")
	f.IntVar(&c.MaxLineBytes, "max-line-bytes", stdio.DefaultMaxLineBytes, "longest message audited; longer ones are passed on and audited as uninspected")
	f.DurationVar(&c.Grace, "grace", stdio.DefaultGrace, "how long the server gets to exit after its input ends, and again after SIGTERM")
	f.StringVar(&sc.Spool.Dir, "spool-dir", env("MCPWATCH_WRAP_SPOOL_DIR", ""), "disk spool keeping audit events while Kafka is unreachable (one directory per running wrap; empty: none, events are buffered in memory and dropped when the buffer is full)")
	f.StringVar(&sc.Spool.Full, "spool-full", sc.Spool.Full, "with --spool-dir, when the spool is full: fail_closed (refuse requests that cannot be audited) or fail_open (drop and count events)")
	f.StringVar(&sc.Policy.File, "policy-file", env("MCPWATCH_POLICY_FILE", ""), "access policy (YAML, as the gateway's) deciding the client's tools/call, resources/read, prompts/get and lists; reloaded when it changes; empty: no policy")
	f.DurationVar(&sc.Policy.Reload, "policy-reload", sc.Policy.Reload, "how often to check the policy file for changes")
	f.StringVar(&sc.ToolPins.File, "tool-pins", env("MCPWATCH_TOOL_PINS", ""), "tool pin file (JSON, as the gateway's; see `mcpwatch tools`); empty: no tool pinning")
	f.StringVar(&sc.ToolPins.Mode, "tool-pinning", env("MCPWATCH_TOOL_PINNING", string(pins.TOFU)), "with --tool-pins: off, audit, tofu or strict (see the gateway's --tool-pinning)")
	f.DurationVar(&o.Bootstrap, "bootstrap-timeout", 5*time.Second, "how long to try creating the topics and loading the control topic at start; the server is started either way")
	f.BoolVar(&noEnforce, "no-enforce", false, "do not follow the control topic: revocations and quarantines are not applied (by default every client message is checked, and refused until the control topic is loaded)")
	return cmd
}
