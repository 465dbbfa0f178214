package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mcpwatch/mcpwatch/app"
	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/detectors"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/forward"
	"github.com/mcpwatch/mcpwatch/ingest/gateway"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/processors"
	"github.com/mcpwatch/mcpwatch/response"
	"github.com/mcpwatch/mcpwatch/response/ledger"
	"github.com/mcpwatch/mcpwatch/storage"
	"github.com/mcpwatch/mcpwatch/storage/sink"
)

// A component's flags are bound to the fields of its section of the configuration; each command
// shows only the flags of the components it runs.

func processFlags(g *globals, fs *pflag.FlagSet) {
	c := g.cfg.Section(string(processors.Type)).(*processors.Config)
	fs.StringVar(&c.CatalogFile, "catalog-file", c.CatalogFile, "data catalog (YAML): data classes and sensitivity of resources, tools, prompts and servers, reloaded when it changes")
	g.b.env(fs, "catalog-file", "MCPWATCH_CATALOG_FILE")
	fs.StringVar(&c.DirectoryFile, "directory-file", c.DirectoryFile, "principal directory (.csv or .yaml): department, peer group, roles and attributes by subject or client id, reloaded when it changes")
	g.b.env(fs, "directory-file", "MCPWATCH_DIRECTORY_FILE")
	fs.DurationVar(&c.Reload, "enrich-reload", c.Reload, "how often to check the catalog and directory files for changes")
}

func sinkFlags(g *globals, fs *pflag.FlagSet) {
	c := g.cfg.Section(string(sink.Type)).(*sink.Config)
	fs.IntVar(&c.BatchRows, "sink-batch-rows", c.BatchRows, "write a batch once it holds this many records")
	fs.IntVar(&c.BatchBytes, "sink-batch-bytes", c.BatchBytes, "... or this many bytes of records")
	fs.DurationVar(&c.BatchDelay, "sink-batch-delay", c.BatchDelay, "... or this long after its first record arrived")
	fs.DurationVar(&c.InsertTimeout, "sink-insert-timeout", c.InsertTimeout, "give up on one INSERT after this long and retry the batch")
	fs.Var(retentionValue{&c.Retention}, "sink-retention", "enforce ClickHouse retention as table=days pairs (e.g. "+defaultRetention+"); empty: keep everything")
	fs.DurationVar(&c.RetentionInterval, "sink-retention-interval", c.RetentionInterval, "how often to enforce --sink-retention")
}

func detectFlags(g *globals, fs *pflag.FlagSet) {
	c := &g.cfg.Section(string(detectors.Type)).(*detectors.Config).Rate
	fs.DurationVar(&c.Window, "rate-window", c.Window, "sliding window for call rates")
	fs.Float64Var(&c.Baseline, "rate-baseline", c.Baseline, "calls/s considered normal (score 0)")
	fs.Float64Var(&c.Ceiling, "rate-ceiling", c.Ceiling, "calls/s that score 100")
	fs.Float64Var(&c.Threshold, "finding-threshold", c.Threshold, "lowest score that yields a finding")
}

func respondFlags(g *globals, fs *pflag.FlagSet) {
	c := g.cfg.Section(string(response.TypeRespond)).(*response.Config)
	fs.Float64Var(&c.Threshold, "response-threshold", c.Threshold, "lowest finding score that is acted on (revoked, notified)")
	fs.DurationVar(&c.RevokeFor, "revoke-for", c.RevokeFor, "how long a revocation lasts (0: until lifted)")
	fs.StringVar(&c.WebhookURL, "webhook-url", c.WebhookURL, "alert webhook URL (signing secret from $MCPWATCH_WEBHOOK_SECRET or respond.webhook_secret)")
	g.b.env(fs, "webhook-url", "MCPWATCH_WEBHOOK_URL")
	fs.StringVar(&c.Playbooks, "playbooks", c.Playbooks, "playbook file: decide under its playbooks instead of revoking every finding over the threshold (hot-reloaded)")
	g.b.env(fs, "playbooks", "MCPWATCH_PLAYBOOKS")
	fs.StringVar(&c.Approvers, "approvers", c.Approvers, "keyring of the approvers' public keys, for playbook actions that wait for approval")
	g.b.env(fs, "approvers", "MCPWATCH_APPROVERS")
}

func forwardFlags(g *globals, fs *pflag.FlagSet) {
	c := g.cfg.Section(string(forward.Type)).(*forward.Config)
	s := &c.Syslog
	fs.StringVar(&s.Address, "syslog-address", s.Address, "collector host:port (TLS syslog is usually port 6514)")
	g.b.env(fs, "syslog-address", "MCPWATCH_SYSLOG_ADDRESS")
	fs.StringVar(&s.Transport, "syslog-transport", s.Transport, "tls (TLS 1.3) or tcp (plaintext: audit records readable on the wire; only for a collector on the same host)")
	g.b.env(fs, "syslog-transport", "MCPWATCH_SYSLOG_TRANSPORT")
	fs.StringVar(&s.CAFile, "syslog-ca-file", s.CAFile, "PEM bundle of the CAs that sign the collector's certificate (default: system roots)")
	g.b.env(fs, "syslog-ca-file", "MCPWATCH_SYSLOG_CA_FILE")
	fs.StringVar(&s.ServerName, "syslog-server-name", s.ServerName, "name the collector's certificate must carry (default: the host of --syslog-address)")
	g.b.env(fs, "syslog-server-name", "MCPWATCH_SYSLOG_SERVER_NAME")
	fs.StringVar(&s.CertFile, "syslog-cert-file", s.CertFile, "client certificate (PEM) for mutual TLS")
	g.b.env(fs, "syslog-cert-file", "MCPWATCH_SYSLOG_CERT_FILE")
	fs.StringVar(&s.KeyFile, "syslog-key-file", s.KeyFile, "client certificate's private key (PEM)")
	g.b.env(fs, "syslog-key-file", "MCPWATCH_SYSLOG_KEY_FILE")
	fs.DurationVar(&s.DialTimeout, "syslog-dial-timeout", s.DialTimeout, "timeout of connect plus TLS handshake")
	fs.DurationVar(&s.WriteTimeout, "syslog-write-timeout", s.WriteTimeout, "timeout of each write (64 KiB) to the collector")
	fs.DurationVar(&s.MaxBackoff, "syslog-max-backoff", s.MaxBackoff, "longest wait between reconnection attempts")
	fs.StringVar(&s.Facility, "syslog-facility", s.Facility, "syslog facility: a name (audit, authpriv, local0..local7, ...) or 0-23")
	g.b.env(fs, "syslog-facility", "MCPWATCH_SYSLOG_FACILITY")
	fs.StringVar(&s.Hostname, "syslog-hostname", s.Hostname, "HOSTNAME of the messages")
	g.b.env(fs, "syslog-hostname", "MCPWATCH_SYSLOG_HOSTNAME")
	fs.StringVar(&s.SDID, "syslog-sd-id", s.SDID, "add structured data [SD-ID id=\"<event id>\"]; SD-ID is name@<your IANA enterprise number> (default: no structured data)")
	g.b.env(fs, "syslog-sd-id", "MCPWATCH_SYSLOG_SD_ID")
	fs.BoolVar(&s.BOM, "syslog-bom", s.BOM, "start MSG with a UTF-8 BOM (RFC 5424 6.4); most CEF parsers reject it")
	fs.IntVar(&s.MaxMessage, "syslog-max-message", s.MaxMessage, "largest message in octets; larger records are dead-lettered (configure the collector to accept this size)")
	fs.BoolVar(&c.Findings, "findings", c.Findings, "forward the findings topic too")
	fs.IntVar(&c.MinSeverity, "min-severity", c.MinSeverity, "forward only events and findings of at least this CEF severity (0-10)")
	fs.Var(sourcesValue{&c.Sources}, "sources", "forward only events from these sources, comma-separated (mcp, otel, kernel; default all)")
	fs.IntVar(&c.Batch, "batch", c.Batch, "records per batch (one write, one commit); bounds memory to batch x --syslog-max-message")
	fs.BoolVar(&c.FromEnd, "from-end", c.FromEnd, "a new consumer group starts at the end of the topics instead of the start (skips the retained backlog)")
}

func gatewayFlags(g *globals, fs *pflag.FlagSet) {
	c := g.cfg.Section(string(gateway.Type)).(*gateway.Config)
	fs.StringVar(&c.Listen, "listen", c.Listen, "address to serve MCP on")
	g.b.env(fs, "listen", "MCPWATCH_GATEWAY_LISTEN")
	fs.StringVar(&c.Upstream, "upstream", c.Upstream, "the upstream MCP server's Streamable HTTP URL (several servers, and stdio servers in sandboxes: gateway.upstreams in --config; see docs/gateway.md)")
	g.b.env(fs, "upstream", "MCPWATCH_GATEWAY_UPSTREAM")
	fs.StringVar(&c.ServerName, "server-name", c.ServerName, "name of the upstream in events and quarantines")
	g.b.env(fs, "server-name", "MCPWATCH_GATEWAY_SERVER")
	fs.StringVar(&c.Tenant, "tenant", c.Tenant, "tenant of its principals")
	g.b.env(fs, "tenant", "MCPWATCH_TENANT")
	fs.StringVar(&c.Auth.TokensFile, "tokens-file", c.Auth.TokensFile, "YAML list of bearer tokens (sha256 or token) and their principals (development; exclusive with --oauth-issuer)")
	g.b.env(fs, "tokens-file", "MCPWATCH_GATEWAY_TOKENS")
	fs.StringVar(&c.Policy.File, "policy-file", c.Policy.File, "access policy (YAML, default deny; see `mcpwatch policy check`), reloaded when it changes; required unless --no-policy")
	g.b.env(fs, "policy-file", "MCPWATCH_POLICY_FILE")
	fs.DurationVar(&c.Policy.Reload, "policy-reload", c.Policy.Reload, "how often to check the policy file for changes")
	fs.BoolVar(&c.Policy.None, "no-policy", c.Policy.None, "run WITHOUT an access policy (authentication and revocations only); for development, never in production")
	fs.StringVar(&c.ToolPins.File, "tool-pins", c.ToolPins.File, "tool pin file (JSON; see `mcpwatch tools`): pins each tool definition's SHA-256, reloaded when it changes; empty: no tool pinning")
	g.b.env(fs, "tool-pins", "MCPWATCH_TOOL_PINS")
	fs.StringVar(&c.ToolPins.Mode, "tool-pinning", c.ToolPins.Mode, "with --tool-pins: off, audit (audit changed tools), tofu (pin on first use, block changed tools until approved) or strict (block every tool not approved)")
	g.b.env(fs, "tool-pinning", "MCPWATCH_TOOL_PINNING")
	fs.DurationVar(&c.ToolPins.Reload, "tool-pins-reload", c.ToolPins.Reload, "how often to check the tool pin file for approvals")
	fs.Var(invertedBool{&c.Masking}, "no-masking", "do not mask personal data and secrets; events then carry no tool arguments (debugging only)")
	fs.Lookup("no-masking").NoOptDefVal = "true"
	fs.StringArrayVar(&c.Redact, "redact", c.Redact, "redact tool results before they reach the client, TOOL=CLASS[,CLASS] (repeatable; TOOL may be * or SERVER/TOOL; classes pii, secret or masking kinds such as email, card), e.g. --redact '*=pii' --redact 'db_query=pii,secret'")
	fs.StringVar(&c.RedactOversize, "redact-oversize", c.RedactOversize, "a result to redact that is larger than the inspection limit: block (withhold it, answer a JSON-RPC error) or pass (relay it unredacted, audited)")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", c.MaxBodyBytes, "largest request body accepted and largest response message inspected (and redacted)")
	fs.BoolVar(&c.ShowDeniedTools, "show-denied-tools", c.ShowDeniedTools, "relay tools/list unfiltered (by default tools the caller may not call are removed)")
	fs.Float64Var(&c.Unauthenticated.Rate, "unauth-rate", c.Unauthenticated.Rate, "refused (unauthenticated) requests per second a source address may sustain before 429; negative: no limit")
	fs.IntVar(&c.Unauthenticated.Burst, "unauth-burst", c.Unauthenticated.Burst, "refused requests a source address may send at once before 429")
	fs.StringVar(&c.DeviceHealthHeader, "device-health-header", c.DeviceHealthHeader, "request header trusted to carry device health (only behind a proxy that sets it and strips it from clients); default: device health unknown")
	g.b.env(fs, "device-health-header", "MCPWATCH_DEVICE_HEALTH_HEADER")
	fs.StringSliceVar(&c.TrustedProxies, "trusted-proxy", c.TrustedProxies, "reverse proxy or load balancer in front of the gateway, a CIDR prefix or address (repeatable, or comma-separated): when the TCP peer is one, the client address is the one it forwarded (Forwarded, else X-Forwarded-For; a proxy writing only X-Forwarded-For must strip Forwarded); default: none trusted, headers ignored")
	g.b.env(fs, "trusted-proxy", "MCPWATCH_TRUSTED_PROXIES")
	fs.StringVar(&c.Spool.Dir, "spool-dir", c.Spool.Dir, "directory of the disk spool that keeps audit events while Kafka is unreachable (empty: no spool)")
	g.b.env(fs, "spool-dir", "MCPWATCH_SPOOL_DIR")
	fs.Int64Var(&c.Spool.MaxBytes, "spool-max-bytes", c.Spool.MaxBytes, "spool size limit; when full the gateway refuses calls (or drops events with --spool-full=fail_open)")
	fs.StringVar(&c.Spool.Sync, "spool-sync", c.Spool.Sync, "spool fsync policy: always, interval (every 100 ms) or none")
	fs.StringVar(&c.Spool.Full, "spool-full", c.Spool.Full, "when the spool is full: fail_closed (refuse calls) or fail_open (drop and count events)")
	o := &c.Auth.OAuth
	fs.StringVar(&o.Issuer, "oauth-issuer", o.Issuer, "OAuth 2.1 authorization server issuer; makes the gateway a resource server instead of using --tokens-file")
	g.b.env(fs, "oauth-issuer", "MCPWATCH_OAUTH_ISSUER")
	fs.StringVar(&o.Resource, "oauth-resource", o.Resource, "this gateway's canonical URI (RFC 8707), the audience tokens must name, e.g. https://mcp.example.com/mcp")
	g.b.env(fs, "oauth-resource", "MCPWATCH_OAUTH_RESOURCE")
	fs.Var(&scopesValue{m: &o.Scopes}, "oauth-scopes", "scopes per tool or MCP method, key=scope pairs (repeat a key for several scopes; key * for anything else), e.g. '*=mcp:read,tools/call=mcp:tools,db_query=mcp:db'")
	g.b.env(fs, "oauth-scopes", "MCPWATCH_OAUTH_SCOPES")
	fs.StringSliceVar(&o.RequireAMR, "oauth-require-amr", o.RequireAMR, "refuse tokens whose amr has none of these (e.g. mfa,hwk,otp)")
	g.b.env(fs, "oauth-require-amr", "MCPWATCH_OAUTH_REQUIRE_AMR")
	fs.StringSliceVar(&o.RequireACR, "oauth-require-acr", o.RequireACR, "refuse tokens whose acr is none of these")
	g.b.env(fs, "oauth-require-acr", "MCPWATCH_OAUTH_REQUIRE_ACR")
	fs.StringVar(&o.RoleClaim, "oauth-role-claim", o.RoleClaim, "claim holding the principal's roles (dotted path allowed, e.g. realm_access.roles)")
	g.b.env(fs, "oauth-role-claim", "MCPWATCH_OAUTH_ROLE_CLAIM")
	fs.StringVar(&o.JWKSURL, "oauth-jwks-url", o.JWKSURL, "JWKS URL (default: from the issuer's discovery metadata)")
	g.b.env(fs, "oauth-jwks-url", "MCPWATCH_OAUTH_JWKS_URL")
	fs.StringVar(&o.Introspection.ClientID, "oauth-introspection-client-id", o.Introspection.ClientID, "client id for RFC 7662 introspection of opaque tokens (secret from $"+gateway.IntrospectionSecretEnv+")")
	g.b.env(fs, "oauth-introspection-client-id", "MCPWATCH_OAUTH_INTROSPECTION_CLIENT_ID")
	fs.StringVar(&c.Approvals.Keyring, "approvals-keyring", c.Approvals.Keyring, "approvers' keyring (YAML: approvers: [{id, public_key}]); enables holding calls a policy rule's approval: demands (without it they are refused)")
	g.b.env(fs, "approvals-keyring", "MCPWATCH_APPROVALS_KEYRING")
	fs.StringVar(&c.Approvals.StatusURL, "approvals-status-url", c.Approvals.StatusURL, "the approvals API's base URL as clients reach it; held calls' answers point at <url>/approvals/<id>")
	g.b.env(fs, "approvals-status-url", "MCPWATCH_APPROVALS_STATUS_URL")
}

// componentFlags are the flag sets of the components, for the commands that run them.
var componentFlags = map[component.Type]func(*globals, *pflag.FlagSet){
	processors.Type:      processFlags,
	sink.Type:            sinkFlags,
	detectors.Type:       detectFlags,
	response.TypeRespond: respondFlags,
	response.TypeNotify:  respondFlags, // notify reads the respond section
	forward.Type:         forwardFlags,
	gateway.Type:         gatewayFlags,
	ledger.Type:          ledgerFlags,
}

// runComponents builds types from the configuration and runs them with the operability
// endpoints until the command's context ends.
func (g *globals) runComponents(cmd *cobra.Command, types []component.Type) error {
	ctx := cmd.Context()
	a, err := app.Build(ctx, g.cfg, types, app.Host{Logger: g.log, Registerer: g.reg, Health: g.hl})
	if err != nil {
		return err
	}
	addr, err := obs.Serve(ctx, g.metricsAddr, g.reg, g.hl, g.log)
	if err != nil {
		return err
	}
	if addr != "" {
		g.log.Info("operability endpoints", "metrics", "http://"+addr+"/metrics", "ready", "http://"+addr+"/readyz")
	}
	g.log.Info("running", "components", types, "config", g.cfg.File())
	return a.Run(ctx)
}

// componentCmd is the command that runs one component, with its flags only.
func componentCmd(g *globals, typ component.Type, short, long string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   string(typ),
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return g.runComponents(cmd, []component.Type{typ}) },
	}
	componentFlags[typ](g, cmd.Flags())
	return cmd
}

// respondCmd runs the enforcing stage and, when a webhook URL is set, the notifying one beside
// it, as `mcpwatch respond` always has; `mcpwatch notify` runs the notifier alone, to scale or
// place it apart.
func respondCmd(g *globals) *cobra.Command {
	cmd := componentCmd(g, response.TypeRespond, "Revoke principals for findings over the threshold (control topic), and send signed webhooks when a webhook URL is set", "")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return g.runComponents(cmd, respondTypes(g)) }
	return cmd
}

func respondTypes(g *globals) []component.Type {
	types := []component.Type{response.TypeRespond}
	if f, err := g.cfg.Registry().Lookup(response.TypeNotify); err == nil && f.Enabled(g.cfg.Section(f.Section())) {
		types = append(types, response.TypeNotify)
	}
	return types
}

func runCmd(g *globals) *cobra.Command {
	var only []string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run several components in one process: by default every one the configuration enables",
		Long: `run starts, in one process, the components listed in --components, else those in the
config file's run list, else every component the configuration enables: process, sink, detect and
respond always, notify with a webhook URL, forward with a syslog collector, the gateway with an
upstream. The components still talk only through Kafka, as they do one per process.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			types := app.RunTypes(g.cfg)
			if len(only) > 0 {
				types = nil
				for _, t := range only {
					types = append(types, component.Type(strings.TrimSpace(t)))
				}
			}
			return g.runComponents(cmd, types)
		},
	}
	cmd.Flags().StringSliceVar(&only, "components", nil, "components to run, comma-separated (default: the config's run list, else every enabled one)")
	for _, t := range []component.Type{processors.Type, sink.Type, detectors.Type, response.TypeRespond, gateway.Type} {
		componentFlags[t](g, cmd.Flags())
	}
	return cmd
}

func addStageCommands(root *cobra.Command, g *globals) {
	root.AddCommand(
		componentCmd(g, gateway.Type, "Run the MCP audit gateway in front of an upstream Streamable HTTP server, or several and sandboxed stdio servers (gateway.upstreams in --config)", ""),
		componentCmd(g, processors.Type, "Normalize raw events to CEF and OCSF, enriched (raw topic → events topic)", ""),
		componentCmd(g, sink.Type, "Store events, findings, actions and scores in ClickHouse", ""),
		componentCmd(g, detectors.Type, "Score per-principal call rates and publish findings and scores", ""),
		respondCmd(g),
		componentCmd(g, response.TypeNotify, "Send signed webhooks for findings over the threshold", ""),
		componentCmd(g, forward.Type, "Send normalized events (and findings) to a SIEM as CEF over syslog (RFC 5424, TLS 1.3)",
			`Reads the normalized events topic (and, with --findings, the findings topic) and sends each
record's CEF line to a syslog collector as an RFC 5424 message in an octet-counted frame
(RFC 6587/RFC 5425) over TLS 1.3. Offsets are committed only after a batch was written to a live
connection: delivery is at-least-once up to the collector's socket. See docs/siem.md.`),
		componentCmd(g, ledger.Type, "Chain every response action into the signed audit trail (actions topic → audit topic, exactly once)", ""),
		runCmd(g),
		demoCmd(g),
		queryCmd(g),
		investigateCmd(g),
		wrapCmd(g),
	)
}

// retentionValue reads --sink-retention as table=days pairs, so a typo fails at start-up.
type retentionValue struct{ r *storage.Retention }

func (v retentionValue) String() string {
	if v.r == nil || *v.r == nil {
		return ""
	}
	return v.r.String()
}

func (v retentionValue) Set(s string) error {
	r, err := storage.ParseRetention(s)
	if err != nil {
		return err
	}
	*v.r = r
	return nil
}

func (retentionValue) Type() string { return "table=days,..." }

// sourcesValue reads --sources as a comma-separated list of event sources.
type sourcesValue struct{ s *[]event.Source }

func (v sourcesValue) String() string {
	var out []string
	for _, s := range *v.s {
		out = append(out, string(s))
	}
	return strings.Join(out, ",")
}

func (v sourcesValue) Set(s string) error {
	srcs, err := forward.ParseSources(s)
	if err != nil {
		return err
	}
	*v.s = srcs
	return nil
}

func (sourcesValue) Type() string { return "mcp,otel,kernel" }

// invertedBool is a --no-X flag for a setting X that defaults to true.
type invertedBool struct{ p *bool }

func (v invertedBool) String() string { return fmt.Sprint(!*v.p) }
func (v invertedBool) Set(s string) error {
	b, err := parseBool(s)
	if err != nil {
		return err
	}
	*v.p = !b
	return nil
}
func (invertedBool) Type() string { return "bool" }

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "t", "true":
		return true, nil
	case "0", "f", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", s)
}

// scopesValue reads --oauth-scopes: key=scope pairs, comma-separated, the flag repeatable; a
// repeated key adds scopes. It replaces the scopes from the config file.
type scopesValue struct {
	m     *map[string][]string
	pairs []string
	set   bool
}

func (v *scopesValue) String() string { return strings.Join(v.pairs, ",") }

func (v *scopesValue) Set(s string) error {
	pairs := v.pairs
	if !v.set {
		pairs = nil
	}
	if err := v.Replace(append(pairs, strings.Split(s, ",")...)); err != nil {
		return err
	}
	v.set = true
	return nil
}

func (v *scopesValue) Type() string { return "key=scope,..." }

// GetSlice, Replace and Append make it a [pflag.SliceValue].
func (v *scopesValue) GetSlice() []string { return v.pairs }

func (v *scopesValue) Replace(pairs []string) error {
	m, err := parseScopes(pairs)
	if err != nil {
		return err
	}
	*v.m, v.pairs = m, pairs
	return nil
}

func (v *scopesValue) Append(pair string) error { return v.Set(pair) }

// parseScopes reads key=scope pairs, a repeated key adding scopes.
func parseScopes(pairs []string) (map[string][]string, error) {
	m := map[string][]string{}
	for _, p := range pairs {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%q is not key=scope", p)
		}
		m[k] = append(m[k], strings.Fields(v)...)
	}
	return m, nil
}

// defaultRetention is what `mcpwatch retention` keeps unless told otherwise: findings and actions
// (the record of what was decided and done) longer than raw events.
const defaultRetention = "events=90,findings=365,actions=365,scores=90,events_minute=400"
