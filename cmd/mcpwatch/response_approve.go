package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/internal/approval"
)

func init() {
	responseSubcommands = append(responseSubcommands,
		func(g *globals) *cobra.Command { return voteCmd(approval.Approve) },
		func(g *globals) *cobra.Command { return voteCmd(approval.Deny) },
		func(g *globals) *cobra.Command { return approvalsCmd() },
		func(g *globals) *cobra.Command { return approverKeyCmd() },
		approvalsServeCmd,
	)
}

// defaultAPI is the approvals API an operator's commands talk to unless told otherwise.
func defaultAPI() string {
	if s := os.Getenv("MCPWATCH_APPROVALS_URL"); s != "" {
		return s
	}
	return "http://127.0.0.1:8390"
}

// apiFlags are how an operator's command reaches the approvals API: its URL and, for an API
// served over TLS, the CA that verifies it and the operator's client certificate.
type apiFlags struct {
	url string
	tls approval.ClientTLSFiles
}

func (a *apiFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&a.url, "api", defaultAPI(), "approvals API base URL (env MCPWATCH_APPROVALS_URL)")
	f.StringVar(&a.tls.Cert, "client-cert", env("MCPWATCH_APPROVALS_CLIENT_CERT", ""),
		"your client certificate (PEM) for an API that requires one (env MCPWATCH_APPROVALS_CLIENT_CERT)")
	f.StringVar(&a.tls.Key, "client-key", env("MCPWATCH_APPROVALS_CLIENT_KEY", ""),
		"its private key (PEM, mode 600; env MCPWATCH_APPROVALS_CLIENT_KEY)")
	f.StringVar(&a.tls.CA, "server-ca", env("MCPWATCH_APPROVALS_SERVER_CA", ""),
		"CA bundle (PEM) that verifies the API's certificate; default the system's (env MCPWATCH_APPROVALS_SERVER_CA)")
}

// client returns the API client; TLS files with a plain http:// URL are refused, since they
// would silently not be used.
func (a *apiFlags) client() (*approval.Client, error) {
	c := &approval.Client{BaseURL: a.url}
	u, err := url.Parse(a.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--api %q: want http(s)://host[:port]", a.url)
	}
	if u.Scheme == "https" {
		tc, err := a.tls.Config()
		if err != nil {
			return nil, err
		}
		c.TLS = tc
	} else if !a.tls.IsZero() {
		return nil, fmt.Errorf("--api %s is plain http: the TLS files (--client-cert, --client-key, --server-ca) need https://", a.url)
	}
	return c, nil
}

// voteCmd is `mcpwatch response approve|deny ID`. Votes go through the approvals API rather than
// straight to Kafka: an approver needs only their key and the API's address, not Kafka
// credentials (least privilege), and the API checks the signature before anything is written,
// so a wrong key is an immediate error rather than an ignored record.
func voteCmd(d approval.Decision) *cobra.Command {
	var api apiFlags
	var keyFile, approver, reason string
	cmd := &cobra.Command{
		Use:   string(d) + " REQUEST_ID",
		Short: "Sign and give your " + string(d) + " vote on an approval request (--reason required)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return errors.New("--reason is required: say why, it goes into the signed audit trail")
			}
			priv, err := approval.LoadPrivateKey(keyFile)
			if err != nil {
				return err
			}
			c, err := api.client()
			if err != nil {
				return err
			}
			defer c.CloseIdleConnections()
			v, err := c.Vote(cmd.Context(), args[0], approver, priv, d, reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", v.Request.ID, v.Reason)
			return nil
		},
	}
	api.register(cmd)
	cmd.Flags().StringVar(&keyFile, "key", "", "your Ed25519 private key (PEM, PKCS #8; mode 600)")
	cmd.Flags().StringVar(&approver, "approver", "", "your key id in the approvers keyring")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required)")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("approver")
	return cmd
}

func approvalsCmd() *cobra.Command {
	var api apiFlags
	var state string
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List approval requests (pending by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := api.client()
			if err != nil {
				return err
			}
			defer c.CloseIdleConnections()
			list, err := c.List(cmd.Context(), state)
			if err != nil {
				return err
			}
			printApprovals(cmd.OutOrStdout(), list)
			return nil
		},
	}
	api.register(cmd)
	cmd.Flags().StringVar(&state, "state", "pending", "pending, approved, denied, expired, consumed or all")
	return cmd
}

func printApprovals(out io.Writer, list []approval.RequestView) {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tVOTES\tDEADLINE\tWHAT\tRULE")
	for _, v := range list {
		r := v.Request
		what := ""
		switch {
		case r.Call != nil:
			what = fmt.Sprintf("%s calls %s/%s %s", r.Call.Subject, r.Call.Server, r.Call.Tool, r.Call.Arguments)
		case r.Action != nil:
			what = fmt.Sprintf("%s %s %s", r.Action.Kind, r.Action.Scope, r.Action.Value)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\n", r.ID, v.State, len(v.Approvals), r.Required,
			r.Deadline.Local().Format(time.DateTime), what, r.Rule)
	}
	_ = tw.Flush()
}

func approverKeyCmd() *cobra.Command {
	var out, id string
	cmd := &cobra.Command{
		Use:   "approver-key",
		Short: "Make an approver's Ed25519 key pair: the private key to --out (mode 600), the keyring entry to stdout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !approval.ValidName(id) {
				return fmt.Errorf("--approver %q: use letters, digits, _ . @ : - (at most 64)", id)
			}
			priv, pub, err := approval.GenerateKey()
			if err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("approver key: %w", err)
			}
			if _, err := f.Write(priv); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "  - id: %s\n    public_key: %s\n", id, pub)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file for the private key (must not exist)")
	cmd.Flags().StringVar(&id, "approver", "", "the approver's key id")
	_ = cmd.MarkFlagRequired("out")
	_ = cmd.MarkFlagRequired("approver")
	return cmd
}

// approvalsServeCmd runs the approvals HTTP API: it follows the approvals topic, takes signed
// votes and records every vote and timeout as an action.
func approvalsServeCmd(g *globals) *cobra.Command {
	var listen, keyring, cert, key, clientCA string
	cmd := &cobra.Command{
		Use:   "approvals-serve",
		Short: "Serve the approvals HTTP API (GET /approvals, GET /approvals/{id}, POST /approvals/{id}/votes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.setup(cmd); err != nil {
				return err
			}
			keys, err := approval.LoadKeyring(keyring)
			if err != nil {
				return err
			}
			return approval.Serve(cmd.Context(), approval.ServeConfig{Kafka: g.kafkaConfig("mcpwatch-approvals-follower"),
				Topics: g.topics(), Keys: keys, Listen: listen, TLSCert: cert, TLSKey: key, ClientCA: clientCA, Reg: g.reg, Log: g.log})
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8390", "address to serve on")
	cmd.Flags().StringVar(&keyring, "keyring", "", "approvers keyring (YAML: approvers: [{id, public_key}])")
	cmd.Flags().StringVar(&cert, "tls-cert", "", "TLS certificate (PEM); with --tls-key the API serves TLS 1.3 only")
	cmd.Flags().StringVar(&key, "tls-key", "", "TLS private key (PEM)")
	cmd.Flags().StringVar(&clientCA, "client-ca", "", "CA bundle (PEM) issuing operators' client certificates: every connection must present one (mTLS; needs --tls-cert). "+
		"Without it reads are open to whoever reaches --listen")
	_ = cmd.MarkFlagRequired("keyring")
	return cmd
}
