package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/response/playbook"
)

func playbookCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "playbook", Short: "Check a response playbook file, or explain how it treats a finding"}
	cmd.AddCommand(playbookCheckCmd(), playbookExplainCmd())
	return cmd
}

func playbookCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE",
		Short: "Load a playbook file and report its errors with file:line:column",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := playbook.LoadFile(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok, %d playbooks\n", args[0], len(s.Playbooks))
			return nil
		},
	}
}

func playbookExplainCmd() *cobra.Command {
	var findingFile string
	cmd := &cobra.Command{
		Use:     "explain FILE --finding finding.json",
		Short:   "Show which playbooks match a finding, and for each other the first condition that failed",
		Example: "  mcpwatch playbook explain playbooks.yaml --finding finding.json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := playbook.LoadFile(args[0])
			if err != nil {
				return err
			}
			f, err := playbook.ReadFinding(findingFile)
			if err != nil {
				return fmt.Errorf("--finding: %w", err)
			}
			fmt.Fprint(cmd.OutOrStdout(), s.Explain(f).String())
			return nil
		},
	}
	cmd.Flags().StringVar(&findingFile, "finding", "", "a finding record as JSON (as on the findings topic)")
	_ = cmd.MarkFlagRequired("finding")
	return cmd
}
