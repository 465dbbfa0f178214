package main

import (
	"context"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/forensics"
	"github.com/mcpwatch/mcpwatch/internal/table"
	"github.com/mcpwatch/mcpwatch/storage"
)

// investigate runs one canned investigation as the read-only user and prints its timeline.
func (g *globals) investigate(ctx context.Context, out io.Writer, q forensics.Query, format string) error {
	if _, err := table.ParseFormat(format); err != nil {
		return err // before connecting
	}
	conn, err := storage.Open(ctx, g.clickhouseRO())
	if err != nil {
		return err
	}
	defer conn.Close()
	tl, err := forensics.Investigate(ctx, conn, g.chDatabase, q)
	if err != nil {
		return err
	}
	return tl.Write(out, format)
}

func investigateCmd(g *globals) *cobra.Command {
	var (
		tenant, format, since, until string
		last                         time.Duration
		limit                        int
	)
	cmd := &cobra.Command{
		Use:   "investigate principal|session|resource|sandbox VALUE",
		Short: "Timeline of everything about a principal, MCP session, resource or sandbox in a time window (read-only user)",
		Long: `Merges the events, findings and actions about one subject into a time-ordered timeline with a
summary (counts, first and last seen, tools, source IPs, denials, highest score):

  principal VALUE   a subject or OAuth client id: its calls, denials, findings, actions on it
  session VALUE     one Mcp-Session-Id
  resource PATTERN  a resource URI, tool or prompt; * and ? are wildcards (db://sales/*)
  sandbox VALUE     MCP and kernel events of a sandbox, findings on them, quarantines

The window is --last (default 24h) or --since/--until (UTC).`,
		Example: `  mcpwatch investigate principal mallory --tenant acme --last 72h
  mcpwatch investigate resource 'db://sales/*' --since 2026-11-20 --until 2026-11-21 --format csv`,
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"principal", "session", "resource", "sandbox"},
		RunE: func(cmd *cobra.Command, args []string) error {
			subject, err := forensics.ParseSubject(args[0])
			if err != nil {
				return err
			}
			if last == 0 && since == "" && until == "" {
				last = 24 * time.Hour
			}
			w, err := forensics.ParseWindow(last, since, until, time.Now())
			if err != nil {
				return err
			}
			return g.investigate(cmd.Context(), cmd.OutOrStdout(),
				forensics.Query{Subject: subject, Value: args[1], Tenant: tenant, Window: w, Limit: limit}, format)
		},
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "only this tenant (default: all)")
	f.DurationVar(&last, "last", 0, "window: this long back from now (default 24h)")
	f.StringVar(&since, "since", "", "window start (RFC 3339, '2006-01-02 15:04:05' or '2006-01-02', UTC)")
	f.StringVar(&until, "until", "", "window end, exclusive (default now)")
	f.StringVar(&format, "format", "table", "output: table, csv or json")
	f.IntVar(&limit, "limit", 1000, "most entries of each kind (events, findings, actions) in the timeline")
	return cmd
}
