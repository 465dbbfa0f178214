package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/internal/pins"
	"github.com/mcpwatch/mcpwatch/internal/table"
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
			return table.WriteAligned(cmd.OutOrStdout(), pins.ListColumns, f.List(pendingOnly))
		},
	}
	cmd.Flags().StringVar(&file, "pins", env("MCPWATCH_TOOL_PINS", ""), "tool pin file (the gateway's --tool-pins)")
	cmd.Flags().BoolVar(&pendingOnly, "pending", false, "only tools awaiting approval")
	return cmd
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
