package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/mcpwatch/mcpwatch/detectors"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/internal/pins"
	"github.com/mcpwatch/mcpwatch/internal/pipeline"
	"github.com/mcpwatch/mcpwatch/response"
)

// stageFlags are the knobs of the pipeline stages and the gateway.
type stageFlags struct {
	rate    detectors.RateConfig
	respond response.Config
	gateway mcp.Config
	tokens  string
	oauth   oauthFlags

	policyFile         string
	policyReload       time.Duration
	noPolicy           bool
	noMasking          bool
	deviceHealthHeader string
	spool              pipeline.SpoolConfig
	toolPins           string
	toolPinning        string
	toolPinsReload     time.Duration
	enrich             enrichFlags
	redact             []string
	redactOversize     string
	sink               sinkFlags
	gatewayFile        string // --config: several upstreams, sandboxed commands (gatewayconfig.go)
}

// enrichFlags are the process stage's enrichment files (see docs/enrichment.md).
type enrichFlags struct {
	catalog, directory string
	reload             time.Duration
}

func (s *stageFlags) registerEnrich(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.enrich.catalog, "catalog-file", env("MCPWATCH_CATALOG_FILE", ""), "process: data catalog (YAML): data classes and sensitivity of resources, tools, prompts and servers, reloaded when it changes")
	f.StringVar(&s.enrich.directory, "directory-file", env("MCPWATCH_DIRECTORY_FILE", ""), "process: principal directory (.csv or .yaml): department, peer group, roles and attributes by subject or client id, reloaded when it changes")
	f.DurationVar(&s.enrich.reload, "enrich-reload", 2*time.Second, "process: how often to check the catalog and directory files for changes")
}

// oauthFlags configure the gateway as an OAuth 2.1 resource server. Secrets come from the
// environment only.
type oauthFlags struct {
	issuer, resource, jwksURL, roleClaim string
	scopes, requireAMR, requireACR       []string
	introspectionClientID                string
}

func (s *stageFlags) registerStages(cmd *cobra.Command) {
	s.rate = detectors.DefaultRateConfig()
	s.respond = response.DefaultConfig()
	f := cmd.Flags()
	f.DurationVar(&s.rate.Window, "rate-window", s.rate.Window, "detector: sliding window for call rates")
	f.Float64Var(&s.rate.Baseline, "rate-baseline", s.rate.Baseline, "detector: calls/s considered normal (score 0)")
	f.Float64Var(&s.rate.Ceiling, "rate-ceiling", s.rate.Ceiling, "detector: calls/s that score 100")
	f.Float64Var(&s.rate.Threshold, "finding-threshold", s.rate.Threshold, "detector: lowest score that yields a finding")
	f.Float64Var(&s.respond.Threshold, "response-threshold", s.respond.Threshold, "responder: lowest finding score that revokes the principal")
	f.StringVar(&s.respond.WebhookURL, "webhook-url", env("MCPWATCH_WEBHOOK_URL", ""), "responder: alert webhook URL (signing secret from $MCPWATCH_WEBHOOK_SECRET)")
	f.DurationVar(&s.respond.RevokeFor, "revoke-for", s.respond.RevokeFor, "responder: how long a revocation lasts (0: until lifted)")
	s.sink.register(cmd)
}

func (s *stageFlags) registerGateway(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.gateway.Listen, "listen", env("MCPWATCH_GATEWAY_LISTEN", "127.0.0.1:8787"), "gateway: address to serve MCP on")
	f.StringVar(&s.gateway.Upstream, "upstream", env("MCPWATCH_GATEWAY_UPSTREAM", ""), "gateway: upstream MCP server's Streamable HTTP URL")
	f.StringVar(&s.gatewayFile, "config", env("MCPWATCH_GATEWAY_CONFIG", ""), "gateway: YAML file of upstream servers by name and route, remote (url) or stdio commands launched in cgroup v2 sandboxes (see docs/gateway.md); replaces --upstream and --server-name")
	f.StringVar(&s.gateway.ServerName, "server-name", env("MCPWATCH_GATEWAY_SERVER", "default"), "gateway: name of the upstream in events and quarantines")
	f.StringVar(&s.gateway.Tenant, "tenant", env("MCPWATCH_TENANT", mcp.DefaultTenant), "gateway: tenant of its principals")
	f.StringVar(&s.tokens, "tokens-file", env("MCPWATCH_GATEWAY_TOKENS", ""), "gateway: YAML list of bearer tokens (sha256 or token) and their principals (development; exclusive with --oauth-issuer)")
	f.StringVar(&s.policyFile, "policy-file", env("MCPWATCH_POLICY_FILE", ""), "gateway: access policy (YAML, default deny; see `mcpwatch policy check`), reloaded when it changes; required unless --no-policy")
	f.DurationVar(&s.policyReload, "policy-reload", 2*time.Second, "gateway: how often to check the policy file for changes")
	f.StringVar(&s.toolPins, "tool-pins", env("MCPWATCH_TOOL_PINS", ""), "gateway: tool pin file (JSON; see `mcpwatch tools`): pins each tool definition's SHA-256, reloaded when it changes; empty: no tool pinning")
	f.StringVar(&s.toolPinning, "tool-pinning", env("MCPWATCH_TOOL_PINNING", string(pins.TOFU)), "gateway: with --tool-pins: off, audit (audit changed tools), tofu (pin on first use, block changed tools until approved) or strict (block every tool not approved)")
	f.DurationVar(&s.toolPinsReload, "tool-pins-reload", 2*time.Second, "gateway: how often to check the tool pin file for approvals")
	f.BoolVar(&s.noPolicy, "no-policy", false, "gateway: run WITHOUT an access policy (authentication and revocations only); for development, never in production")
	f.BoolVar(&s.noMasking, "no-masking", false, "gateway: do not mask personal data and secrets; events then carry no tool arguments (debugging only)")
	f.StringArrayVar(&s.redact, "redact", nil, "gateway: redact tool results before they reach the client, TOOL=CLASS[,CLASS] (repeatable; TOOL may be * or SERVER/TOOL; classes pii, secret or masking kinds such as email, card), e.g. --redact '*=pii' --redact 'db_query=pii,secret'")
	f.StringVar(&s.redactOversize, "redact-oversize", string(mcp.OversizeBlock), "gateway: a result to redact that is larger than the inspection limit: block (withhold it, answer a JSON-RPC error) or pass (relay it unredacted, audited)")
	f.Int64Var(&s.gateway.MaxBodyBytes, "max-body-bytes", mcp.DefaultMaxBodyBytes, "gateway: largest request body accepted and largest response message inspected (and redacted)")
	f.BoolVar(&s.gateway.ShowDeniedTools, "show-denied-tools", false, "gateway: relay tools/list unfiltered (by default tools the caller may not call are removed)")
	f.Float64Var(&s.gateway.Unauthenticated.Rate, "unauth-rate", mcp.DefaultUnauthRate, "gateway: refused (unauthenticated) requests per second a source address may sustain before 429; negative: no limit")
	f.IntVar(&s.gateway.Unauthenticated.Burst, "unauth-burst", mcp.DefaultUnauthBurst, "gateway: refused requests a source address may send at once before 429")
	f.StringVar(&s.deviceHealthHeader, "device-health-header", env("MCPWATCH_DEVICE_HEALTH_HEADER", ""), "gateway: request header trusted to carry device health (only behind a proxy that sets it and strips it from clients); default: device health unknown")
	f.StringVar(&s.spool.Dir, "spool-dir", env("MCPWATCH_SPOOL_DIR", defaultSpoolDir()), "gateway: directory of the disk spool that keeps audit events while Kafka is unreachable (empty: no spool)")
	f.Int64Var(&s.spool.MaxBytes, "spool-max-bytes", 1<<30, "gateway: spool size limit; when full the gateway refuses calls (or drops events with --spool-full=fail_open)")
	f.StringVar(&s.spool.Sync, "spool-sync", "interval", "gateway: spool fsync policy: always, interval (every 100 ms) or none")
	f.StringVar(&s.spool.FullMode, "spool-full", "fail_closed", "gateway: when the spool is full: fail_closed (refuse calls) or fail_open (drop and count events)")
	o := &s.oauth
	f.StringVar(&o.issuer, "oauth-issuer", env("MCPWATCH_OAUTH_ISSUER", ""), "gateway: OAuth 2.1 authorization server issuer; makes the gateway a resource server instead of using --tokens-file")
	f.StringVar(&o.resource, "oauth-resource", env("MCPWATCH_OAUTH_RESOURCE", ""), "gateway: this gateway's canonical URI (RFC 8707), the audience tokens must name, e.g. https://mcp.example.com/mcp")
	f.StringSliceVar(&o.scopes, "oauth-scopes", splitEnv("MCPWATCH_OAUTH_SCOPES"), "gateway: scopes per tool or MCP method, key=scope pairs (repeat a key for several scopes; key * for anything else), e.g. '*=mcp:read,tools/call=mcp:tools,db_query=mcp:db'")
	f.StringSliceVar(&o.requireAMR, "oauth-require-amr", splitEnv("MCPWATCH_OAUTH_REQUIRE_AMR"), "gateway: refuse tokens whose amr has none of these (e.g. mfa,hwk,otp)")
	f.StringSliceVar(&o.requireACR, "oauth-require-acr", splitEnv("MCPWATCH_OAUTH_REQUIRE_ACR"), "gateway: refuse tokens whose acr is none of these")
	f.StringVar(&o.roleClaim, "oauth-role-claim", env("MCPWATCH_OAUTH_ROLE_CLAIM", ""), "gateway: claim holding the principal's roles (dotted path allowed, e.g. realm_access.roles)")
	f.StringVar(&o.jwksURL, "oauth-jwks-url", env("MCPWATCH_OAUTH_JWKS_URL", ""), "gateway: JWKS URL (default: from the issuer's discovery metadata)")
	f.StringVar(&o.introspectionClientID, "oauth-introspection-client-id", env("MCPWATCH_OAUTH_INTROSPECTION_CLIENT_ID", ""), "gateway: client id for RFC 7662 introspection of opaque tokens (secret from $"+introspectionSecretEnv+")")
}

// introspectionSecretEnv holds the introspection client's secret: never a flag, which would show
// in process listings.
const introspectionSecretEnv = "MCPWATCH_OAUTH_INTROSPECTION_SECRET"

func splitEnv(name string) []string {
	v := os.Getenv(name)
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// parseScopes reads --oauth-scopes: key=scope pairs, a repeated key adding scopes.
func parseScopes(pairs []string) (map[string][]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := map[string][]string{}
	for _, p := range pairs {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("--oauth-scopes: %q is not key=scope", p)
		}
		m[k] = append(m[k], strings.Fields(v)...)
	}
	return m, nil
}

// gatewayConfig is the gateway's configuration from the flags: OAuth when --oauth-issuer is set,
// static tokens from --tokens-file otherwise.
func (s *stageFlags) gatewayConfig() (*mcp.Config, error) {
	gw := s.gateway
	gw.NoMasking = s.noMasking
	gw.DeviceHealthHeader = s.deviceHealthHeader
	for _, r := range s.redact {
		rule, err := mcp.ParseRedactRule(r)
		if err != nil {
			return nil, fmt.Errorf("gateway: --redact: %w", err)
		}
		gw.Redact = append(gw.Redact, rule)
	}
	gw.RedactOversize = mcp.OversizeAction(s.redactOversize)
	o := s.oauth
	if o.issuer == "" {
		if o.resource != "" || len(o.scopes) > 0 || len(o.requireAMR) > 0 || len(o.requireACR) > 0 {
			return nil, fmt.Errorf("gateway: --oauth-* flags need --oauth-issuer")
		}
		tokens, err := loadTokens(s.tokens)
		if err != nil {
			return nil, err
		}
		gw.Tokens = tokens
		return &gw, nil
	}
	if s.tokens != "" {
		return nil, fmt.Errorf("gateway: --tokens-file and --oauth-issuer are exclusive")
	}
	scopes, err := parseScopes(o.scopes)
	if err != nil {
		return nil, err
	}
	oc := &oauth.Config{
		Issuer: o.issuer, Resource: o.resource, JWKSURL: o.jwksURL, RoleClaim: o.roleClaim,
		RequiredScopes: scopes, RequireAMR: o.requireAMR, RequireACR: o.requireACR,
	}
	if o.introspectionClientID != "" {
		oc.Introspection = oauth.Introspection{ClientID: o.introspectionClientID, ClientSecretEnv: introspectionSecretEnv}
	}
	if err := oc.Validate(); err != nil {
		return nil, fmt.Errorf("gateway oauth: %w", err)
	}
	gw.OAuth = oc
	return &gw, nil
}

// applyPolicy puts the gateway's policy into cfg. The gateway is zero-trust: without
// --policy-file it refuses to start unless --no-policy says so explicitly, and then warns loudly.
func (s *stageFlags) applyPolicy(g *globals, cfg *pipeline.Config) error {
	switch {
	case s.policyFile != "" && s.noPolicy:
		return fmt.Errorf("gateway: --policy-file and --no-policy are exclusive")
	case s.policyFile != "":
		cfg.PolicyFile, cfg.PolicyReload = s.policyFile, s.policyReload
	case s.noPolicy:
		g.log.Warn("GATEWAY RUNNING WITHOUT AN ACCESS POLICY (--no-policy): every authenticated principal may call every tool; " +
			"only revocations and scopes are enforced. Never do this in production.")
	default:
		return fmt.Errorf("gateway: --policy-file is required (zero trust: every call is denied unless a policy allows it); " +
			"pass --no-policy to run without one for development")
	}
	mode := pins.Off // without the flags (library callers): no pinning
	if s.toolPinning != "" {
		m, err := pins.ParseMode(s.toolPinning)
		if err != nil {
			return fmt.Errorf("gateway: --tool-pinning: %w", err)
		}
		mode = m
	}
	if s.toolPins != "" && mode != pins.Off {
		cfg.ToolPinsFile, cfg.ToolPinning, cfg.ToolPinsReload = s.toolPins, mode, s.toolPinsReload
	} else if mode == pins.Strict {
		return fmt.Errorf("gateway: --tool-pinning strict needs --tool-pins FILE")
	}
	cfg.Spool = s.spool
	if s.spool.Dir == "" {
		g.log.Warn("gateway without an audit spool (--spool-dir empty): events are dropped and counted if Kafka stays unreachable")
	}
	if s.noMasking {
		g.log.Warn("gateway masking disabled (--no-masking): events carry no tool arguments")
	}
	return nil
}

// tokenFile is one entry of --tokens-file.
type tokenFile struct {
	SHA256   string   `yaml:"sha256"`
	Token    string   `yaml:"token"`
	Subject  string   `yaml:"sub"`
	ClientID string   `yaml:"client_id"`
	Roles    []string `yaml:"roles"`
}

func loadTokens(path string) ([]mcp.StaticToken, error) {
	if path == "" {
		return nil, fmt.Errorf("gateway: --tokens-file is required (default deny: no tokens, no access)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var entries []tokenFile
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	out := make([]mcp.StaticToken, 0, len(entries))
	for _, e := range entries {
		out = append(out, mcp.StaticToken{SHA256: e.SHA256, Token: e.Token,
			Principal: event.Principal{Subject: e.Subject, ClientID: e.ClientID, Roles: e.Roles}})
	}
	return out, nil
}

func (g *globals) pipelineConfig(sf *stageFlags, stages []string) pipeline.Config {
	cfg := pipeline.Config{
		Kafka: g.kafkaConfig(""), Topics: g.topics(), Partitions: g.partitions, Replication: g.replication,
		RetentionHours: g.retentionHours, ClickHouse: g.clickhouse(), Stages: stages, GroupPrefix: g.topicPrefix,
	}
	if sf != nil {
		cfg.Rate, cfg.Respond = sf.rate, sf.respond
		cfg.CatalogFile, cfg.DirectoryFile, cfg.EnrichReload = sf.enrich.catalog, sf.enrich.directory, sf.enrich.reload
		cfg.Sink = sf.sink.options
		cfg.Respond.WebhookSecret = os.Getenv("MCPWATCH_WEBHOOK_SECRET")
	}
	return cfg
}

// runPipeline builds and runs cfg with the operability endpoints until the command's context ends.
func (g *globals) runPipeline(cmd *cobra.Command, cfg pipeline.Config) error {
	ctx := cmd.Context()
	p, err := pipeline.Build(ctx, cfg, g.reg, g.hl, g.log)
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
	return p.Run(ctx)
}

func stageCmd(g *globals, name, short string) *cobra.Command {
	sf := &stageFlags{}
	cmd := &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.runPipeline(cmd, g.pipelineConfig(sf, []string{name}))
		},
	}
	sf.registerStages(cmd)
	if name == pipeline.StageProcess {
		sf.registerEnrich(cmd)
	}
	return cmd
}

func gatewayCmd(g *globals) *cobra.Command {
	sf := &stageFlags{}
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the MCP audit gateway in front of an upstream Streamable HTTP server, or several and sandboxed stdio servers (--config)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			gw, err := sf.gatewayConfig()
			if err != nil {
				return err
			}
			cfg := g.pipelineConfig(nil, nil)
			cfg.Gateway = gw
			if err := sf.applyPolicy(g, &cfg); err != nil {
				return err
			}
			release, err := sf.applyGatewayFile(g, &cfg)
			if err != nil {
				return err
			}
			defer release()
			return g.runPipeline(cmd, cfg)
		},
	}
	sf.registerGateway(cmd)
	return cmd
}

func runCmd(g *globals) *cobra.Command {
	sf := &stageFlags{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run every pipeline stage in one process (and the gateway when --upstream is set)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := g.pipelineConfig(sf, pipeline.AllStages)
			if sf.gateway.Upstream != "" || sf.gatewayFile != "" {
				gw, err := sf.gatewayConfig()
				if err != nil {
					return err
				}
				cfg.Gateway = gw
				if err := sf.applyPolicy(g, &cfg); err != nil {
					return err
				}
				release, err := sf.applyGatewayFile(g, &cfg)
				if err != nil {
					return err
				}
				defer release()
			}
			return g.runPipeline(cmd, cfg)
		},
	}
	sf.registerStages(cmd)
	sf.registerEnrich(cmd)
	sf.registerGateway(cmd)
	return cmd
}

func addStageCommands(root *cobra.Command, g *globals) {
	root.AddCommand(
		gatewayCmd(g),
		stageCmd(g, pipeline.StageProcess, "Normalize raw events to CEF (raw topic → events topic)"),
		stageCmd(g, pipeline.StageSink, "Store events, findings and actions in ClickHouse"),
		stageCmd(g, pipeline.StageDetect, "Score per-principal call rates and publish findings"),
		stageCmd(g, pipeline.StageRespond, "Revoke principals and send signed webhooks for findings over the threshold"),
		runCmd(g),
		demoCmd(g),
		queryCmd(g),
		investigateCmd(g),
		wrapCmd(g),
	)
}

// defaultSpoolDir is a per-user cache directory, so a gateway started without flags keeps its
// audit spool across restarts.
func defaultSpoolDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "mcpwatch", "spool")
}
