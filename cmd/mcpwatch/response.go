package main

import (
	"github.com/spf13/cobra"
)

// responseCmd groups the operator's response commands. Each subcommand lives in its own
// response_*.go file and registers itself in responseSubcommands.
func responseCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "response", Short: "Operate the response side: list, revoke, quarantine, lift, approve, deny, verify"}
	for _, sub := range responseSubcommands {
		cmd.AddCommand(sub(g))
	}
	return cmd
}

// responseSubcommands are the constructors of the `mcpwatch response` subcommands.
var responseSubcommands []func(*globals) *cobra.Command
