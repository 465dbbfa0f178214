package main

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/policy"
)

func policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Check a policy file, or explain how it decides a request"}
	cmd.AddCommand(policyCheckCmd(), policyExplainCmd())
	return cmd
}

func policyCheckCmd() *cobra.Command {
	var strict bool
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Load a policy file and report errors (with file:line:column) and lint warnings",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := policy.LoadFile(args[0])
			if err != nil {
				return err
			}
			warnings := policy.Check(p)
			for _, w := range warnings {
				fmt.Fprintln(cmd.OutOrStdout(), "warning:", w)
			}
			if strict && len(warnings) > 0 {
				return fmt.Errorf("%d warnings (--strict)", len(warnings))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok, %d warnings\n", args[0], len(warnings))
			return nil
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on warnings too")
	return cmd
}

func policyExplainCmd() *cobra.Command {
	var (
		req          policy.Request
		ip, at, risk string
		amr, classes []string
	)
	cmd := &cobra.Command{
		Use:   "explain FILE",
		Short: "Evaluate one request against a policy and show which rule decided and why",
		Example: `  mcpwatch policy explain policy.yaml --sub alice --roles analyst --ip 192.168.1.7 \
    --time 2026-11-23T10:00:00+09:00 --method tools/call --server sales-db --tool db_query --amr mfa --risk 12`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := policy.LoadFile(args[0])
			if err != nil {
				return err
			}
			if ip != "" {
				if req.SourceIP, err = netip.ParseAddr(ip); err != nil {
					return fmt.Errorf("--ip: %w", err)
				}
			}
			req.Time = time.Now()
			if at != "" {
				if req.Time, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--time wants RFC 3339 such as 2026-11-23T10:00:00+09:00: %w", err)
				}
			}
			if risk != "" {
				if _, err := fmt.Sscan(risk, &req.Risk); err != nil {
					return errors.New("--risk wants a number 0-100")
				}
				req.RiskKnown = true
			}
			req.Principal.AuthMethods, req.DataClasses = amr, classes
			if req.Method == "" {
				return errors.New("--method is required (e.g. tools/call)")
			}
			fmt.Fprint(cmd.OutOrStdout(), p.Explain(req).String())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Tenant, "tenant", "", "tenant")
	f.StringVar(&req.Principal.Subject, "sub", "", "principal subject")
	f.StringVar(&req.Principal.ClientID, "client", "", "OAuth client id")
	f.StringSliceVar(&req.Principal.Roles, "roles", nil, "principal roles")
	f.StringSliceVar(&req.Groups, "groups", nil, "principal groups")
	f.StringSliceVar(&amr, "amr", nil, "authentication methods (amr), e.g. pwd,mfa")
	f.StringVar(&req.DeviceHealth, "device", "", "device health, e.g. compliant")
	f.StringVar(&ip, "ip", "", "client IP address")
	f.StringVar(&at, "time", "", "request time, RFC 3339 (default now)")
	f.StringVar(&req.Method, "method", "", "MCP method, e.g. tools/call")
	f.StringVar(&req.Server, "server", "", "upstream server name")
	f.StringVar(&req.Tool, "tool", "", "tool name (tools/call)")
	f.StringVar(&req.ResourceURI, "resource", "", "resource URI (resources/read)")
	f.StringVar(&req.Prompt, "prompt", "", "prompt name (prompts/get)")
	f.StringSliceVar(&classes, "data-class", nil, "data classes involved, e.g. pii,finance")
	f.StringVar(&risk, "risk", "", "current threat score 0-100 (unknown when omitted)")
	return cmd
}
