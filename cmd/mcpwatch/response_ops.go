package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/response/ops"
)

func init() {
	responseSubcommands = append(responseSubcommands, responseListCmd, responseRevokeCmd, responseQuarantineCmd, responseLiftCmd)
}

// opsFlags are the flags every state-changing operator command takes.
type opsFlags struct {
	operator, reason, finding, tenant string
	allTenants                        bool
}

func (o *opsFlags) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.reason, "reason", "", "why, in words (required; recorded in the audit trail)")
	f.StringVar(&o.operator, "operator", os.Getenv("USER"), "who is acting, recorded as operator:<id>")
	f.StringVar(&o.finding, "finding", "", "the id of the finding that prompted this, if any")
	f.StringVar(&o.tenant, "tenant", mcp.DefaultTenant, "tenant of the principal, server or sandbox")
	f.BoolVar(&o.allTenants, "all-tenants", false, "apply to every tenant (the control's tenant is empty)")
}

func (o *opsFlags) tenantValue() string {
	if o.allTenants {
		return ""
	}
	return o.tenant
}

func (g *globals) opsClient() *ops.Client {
	return ops.NewClient(g.kafkaConfig("mcpwatch-response-cli"), g.topics(), g.log)
}

// target is the one --<scope> flag given among scopes.
func target(cmd *cobra.Command, vals map[event.ControlScope]*string, order []event.ControlScope) (event.ControlScope, string, error) {
	var scope event.ControlScope
	var value string
	n := 0
	for _, s := range order {
		if cmd.Flags().Changed(string(s)) {
			scope, value = s, *vals[s]
			n++
		}
	}
	if n != 1 {
		names := ""
		for i, s := range order {
			if i > 0 {
				names += ", "
			}
			names += "--" + string(s)
		}
		return "", "", fmt.Errorf("give exactly one of %s", names)
	}
	return scope, value, nil
}

func controlCmd(g *globals, kind event.ControlKind, use, short string, scopes []event.ControlScope, help map[event.ControlScope]string) *cobra.Command {
	var o opsFlags
	var dur time.Duration
	var permanent bool
	vals := map[event.ControlScope]*string{}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			scope, value, err := target(cmd, vals, scopes)
			if err != nil {
				return err
			}
			ctl, a, err := ops.PlanControl(ops.Request{Operator: o.operator, Reason: o.reason, FindingID: o.finding,
				Tenant: o.tenantValue(), Kind: kind, Scope: scope, Value: value, For: dur, Permanent: permanent}, time.Now())
			if err != nil {
				return err
			}
			if err := g.ensureTopics(cmd); err != nil {
				return err
			}
			if err := g.opsClient().Issue(cmd.Context(), ctl, a); err != nil {
				return err
			}
			until := "permanently (until lifted)"
			if ctl.Expires != nil {
				until = "until " + ctl.Expires.Format(time.RFC3339)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s %q %s\nkey: %s\naction: %s\n", kind, scope, ctl.Value, until, ctl.Key(), a.ID)
			return nil
		},
	}
	for _, s := range scopes {
		vals[s] = new(string)
		cmd.Flags().StringVar(vals[s], string(s), "", help[s])
	}
	o.bind(cmd)
	cmd.Flags().DurationVar(&dur, "for", 0, fmt.Sprintf("how long it lasts (default %s)", ops.DefaultFor))
	cmd.Flags().BoolVar(&permanent, "permanent", false, "never expire: only `mcpwatch response lift` ends it")
	return cmd
}

func responseRevokeCmd(g *globals) *cobra.Command {
	return controlCmd(g, event.ControlRevoke, "revoke (--subject S | --client C | --token JTI) --reason TEXT",
		"Revoke a subject, client or token at every gateway", []event.ControlScope{event.ScopeSubject, event.ScopeClient, event.ScopeToken},
		map[event.ControlScope]string{event.ScopeSubject: "the subject (user) to refuse", event.ScopeClient: "the OAuth client id to refuse (every user of it)",
			event.ScopeToken: "the token id (jti) to refuse"})
}

func responseQuarantineCmd(g *globals) *cobra.Command {
	return controlCmd(g, event.ControlQuarantine, "quarantine (--sandbox ID | --server NAME | --tool NAME) --reason TEXT",
		"Quarantine a sandbox, server or tool: calls refused at every gateway, sandboxes frozen", []event.ControlScope{event.ScopeSandbox, event.ScopeServer, event.ScopeTool},
		map[event.ControlScope]string{event.ScopeSandbox: "the sandbox id to freeze", event.ScopeServer: "the server name: new calls refused, its sandboxes frozen",
			event.ScopeTool: `the tool: a bare name, or "server/tool"`})
}

func responseLiftCmd(g *globals) *cobra.Command {
	var o opsFlags
	var subject, client, token, sandbox, server, tool string
	cmd := &cobra.Command{
		Use:   "lift [KEY] --reason TEXT",
		Short: "Lift a control by its key (as `list` prints it), or every control on one --subject/--client/--token/--sandbox/--server/--tool",
		Example: "  mcpwatch response lift revoke/subject/default/alice --reason \"false positive, checked with alice\"\n" +
			"  mcpwatch response lift --server files --reason \"patched\"",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l := ops.Lift{Operator: o.operator, Reason: o.reason, FindingID: o.finding}
			if _, err := ops.PlanLift(l, event.Control{}, time.Now()); err != nil {
				return err // no reason or operator: refuse before reading anything
			}
			var key string
			var scope event.ControlScope
			var value string
			vals := map[event.ControlScope]*string{event.ScopeSubject: &subject, event.ScopeClient: &client, event.ScopeToken: &token,
				event.ScopeSandbox: &sandbox, event.ScopeServer: &server, event.ScopeTool: &tool}
			order := []event.ControlScope{event.ScopeSubject, event.ScopeClient, event.ScopeToken, event.ScopeSandbox, event.ScopeServer, event.ScopeTool}
			if len(args) == 1 {
				key = args[0]
				if _, _, _, _, err := ops.ParseKey(key); err != nil {
					return err
				}
			} else {
				var err error
				if scope, value, err = target(cmd, vals, order); err != nil {
					return errors.New("give a control KEY, or exactly one of --subject, --client, --token, --sandbox, --server, --tool")
				}
			}
			if err := g.ensureTopics(cmd); err != nil {
				return err
			}
			c := g.opsClient()
			cs, err := c.Controls(cmd.Context())
			if err != nil {
				return err
			}
			sel, err := ops.Select(cs, key, o.tenantValue(), scope, value)
			if err != nil {
				return err
			}
			acts, err := c.Lift(cmd.Context(), l, sel)
			for _, a := range acts {
				fmt.Fprintf(cmd.OutOrStdout(), "lifted %s (action %s)\n", a.Target, a.ID)
			}
			return err
		},
	}
	for _, s := range []struct {
		p    *string
		name string
	}{{&subject, "subject"}, {&client, "client"}, {&token, "token"}, {&sandbox, "sandbox"}, {&server, "server"}, {&tool, "tool"}} {
		cmd.Flags().StringVar(s.p, s.name, "", "lift every control on this "+s.name)
	}
	o.bind(cmd)
	return cmd
}

func responseListCmd(g *globals) *cobra.Command {
	var asJSON, all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the controls in force (revocations, quarantines, step-ups) from the control topic",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.ensureTopics(cmd); err != nil { // a deployment never started has no topic to read
				return err
			}
			cs, err := g.opsClient().Controls(cmd.Context())
			if err != nil {
				return err
			}
			now := time.Now()
			rows := ops.Rows(cs, now, all)
			if asJSON {
				return ops.WriteJSON(cmd.OutOrStdout(), rows)
			}
			return ops.WriteTable(cmd.OutOrStdout(), rows, now)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	cmd.Flags().BoolVar(&all, "all", false, "include expired controls not yet lifted")
	return cmd
}
