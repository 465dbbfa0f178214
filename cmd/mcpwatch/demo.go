package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/internal/demo"
)

func demoCmd(g *globals) *cobra.Command {
	var o demo.Options
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole pipeline with a demo MCP server and demo traffic, then show what it saw and did",
		Long: `demo migrates ClickHouse, starts every stage, the gateway in front of a demo MCP server and a
webhook receiver, then drives traffic through the gateway: a few analysts working normally and one
principal that starts scraping the sales database. It waits until mcpwatch has detected the
scraper, sent a signed webhook, revoked the principal and refused its next call, prints the
forensic SQL it runs as the read-only user with the results, and exits non-zero if any of that did
not happen. As root with cgroup v2 and eBPF, a third act follows: a second upstream, acme-docs, runs
in a sandbox watched in the kernel with no egress allowed; its compromised dependency reads an SSH
key and tries to send it out; mcpwatch reports it from the kernel events, quarantines (freezes) the
sandbox and refuses the caller's next call to it. Without root, cgroup v2 or eBPF the demo says
"act 3 skipped: <reason>" and ends after the second act.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Config, o.Out, o.Log, o.Registry, o.Health = g.cfg, cmd.OutOrStdout(), g.log, g.reg, g.hl
			o.MetricsAddr, o.Migrate, o.ReadOnly = g.metricsAddr, g.migrate, g.clickhouseRO()
			// The third act's sandboxed server is this binary, serving acme-docs on stdio.
			if exe, err := os.Executable(); err == nil {
				o.DocsServer = []string{exe, "--log-level", "error", "demo", "docs-server"}
			}
			return demo.Run(cmd.Context(), o)
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:    "docs-server",
		Short:  "The demo's acme-docs MCP server on stdio (launched by the demo in a sandbox)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE:   func(cmd *cobra.Command, _ []string) error { return demo.ServeDocsStdio(cmd.Context()) },
	})
	f := cmd.Flags()
	detectFlags(g, f)
	respondFlags(g, f)
	f.StringSliceVar(&o.Users, "users", []string{"alice", "bob", "carol"}, "well-behaved demo principals")
	f.StringVar(&o.Scraper, "scraper", "mallory", "the misbehaving demo principal")
	f.StringVar(&o.DocsUser, "docs-user", "dave", "the principal who calls the compromised sandboxed server (act 3)")
	f.IntVar(&o.Calls, "calls", 12, "tool calls per well-behaved principal")
	f.DurationVar(&o.Gap, "gap", 2500*time.Millisecond, "pause between a well-behaved principal's calls")
	f.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "give up if the demo has not completed by then")
	return cmd
}
