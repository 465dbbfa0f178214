package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/internal/pins"
)

func toolsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tools", Short: "List and approve the gateway's tool-definition pins"}
	cmd.AddCommand(toolsListCmd(), toolsApproveCmd())
	return cmd
}

func toolsListCmd() *cobra.Command {
	var file string
	var pendingOnly bool
	cmd := &cobra.Command{
		Use:   "list --pins FILE",
		Short: "Print each server's pinned tools and the changed definitions awaiting approval",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, _, err := pins.Read(file, false)
			if err != nil {
				return err
			}
			return listPins(cmd.OutOrStdout(), f, pendingOnly)
		},
	}
	cmd.Flags().StringVar(&file, "pins", env("MCPWATCH_TOOL_PINS", ""), "tool pin file (the gateway's --tool-pins)")
	cmd.Flags().BoolVar(&pendingOnly, "pending", false, "only tools awaiting approval")
	return cmd
}

// listPins prints one line per tool: its state (ok, changed, unapproved), the pinned and seen
// hashes (first 12 digits), and who approved the pin when.
func listPins(w io.Writer, f *pins.File, pendingOnly bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tTOOL\tSTATE\tPINNED\tSEEN\tAPPROVED BY\tAPPROVED AT")
	for _, s := range f.ServerNames() {
		var tools []string
		for t := range f.Servers[s] {
			tools = append(tools, t)
		}
		slices.Sort(tools)
		for _, t := range tools {
			p := f.Servers[s][t]
			state := "ok"
			switch {
			case p.SHA256 == "":
				state = "unapproved"
			case p.Pending():
				state = "changed"
			}
			if pendingOnly && state == "ok" {
				continue
			}
			at := ""
			if !p.ApprovedAt.IsZero() {
				at = p.ApprovedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s, t, state, short(p.SHA256), short(p.SeenSHA256), p.ApprovedBy, at)
		}
	}
	return tw.Flush()
}

func short(h string) string {
	if h == "" {
		return "-"
	}
	return h[:min(12, len(h))]
}

func toolsApproveCmd() *cobra.Command {
	var file, server, tool, sha, by string
	cmd := &cobra.Command{
		Use:   "approve --pins FILE --server S --tool T [--sha256 H]",
		Short: "Pin a tool to the definition the gateway last saw (or to --sha256); running gateways unblock it on their next reload",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" || server == "" || tool == "" {
				return errors.New("--pins, --server and --tool are required")
			}
			if by == "" {
				by = os.Getenv("USER")
			}
			if by == "" {
				return errors.New("cannot tell who approves: $USER is empty; pass --by")
			}
			p, err := pins.Approve(file, server, tool, sha, by, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s pinned to %s by %s\n", server, tool, p.SHA256, p.ApprovedBy)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "pins", env("MCPWATCH_TOOL_PINS", ""), "tool pin file (the gateway's --tool-pins)")
	f.StringVar(&server, "server", "", "server name (the gateway's --server-name)")
	f.StringVar(&tool, "tool", "", "tool name")
	f.StringVar(&sha, "sha256", "", "pin this definition hash instead of the one the gateway last saw")
	f.StringVar(&by, "by", "", "who approves (default $USER)")
	return cmd
}
