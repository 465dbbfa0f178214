// Package gateway is the MCP audit gateway as a component: its configuration (one section of
// mcpwatch.yaml, or flags), and the wiring of the HTTP gateway (package mcp) with its upstreams
// — remote servers, or stdio servers launched per session in cgroup v2 sandboxes — its
// authenticator, and the audit delivery and enforcement state every source shares (package
// source).
package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/ingest/ebpf"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
	"github.com/mcpwatch/mcpwatch/ingest/source"
	"github.com/mcpwatch/mcpwatch/internal/approval"
)

// Type is the gateway's component type.
const Type component.Type = "gateway"

// Config is the gateway's section of the config file (see docs/gateway.md and
// deploy/mcpwatch.yaml).
type Config struct {
	// Listen is the address MCP is served on.
	Listen string `yaml:"listen"`
	// Tenant is the tenant of the gateway's principals.
	Tenant string `yaml:"tenant"`
	// Upstream is the one upstream server's Streamable HTTP URL, named ServerName in events and
	// quarantines. Exclusive with Upstreams.
	Upstream   string `yaml:"upstream"`
	ServerName string `yaml:"server_name"`
	// Upstreams are several servers by route: remote (url) or stdio commands launched in
	// sandboxes, one per MCP session.
	Upstreams []Upstream `yaml:"upstreams"`
	// Sandbox configures the sandboxes of every command upstream.
	Sandbox Sandbox `yaml:"sandbox"`
	// EBPF watches the sandboxes in the kernel (processes, file opens, connects) and publishes
	// what they do as raw events tied to the MCP session (docs/ebpf.md).
	EBPF EBPF `yaml:"ebpf"`

	Auth Auth `yaml:"auth"`
	// Approvals holds the tools/call requests a policy rule's `approval:` demands until the
	// approvers have signed. Without a keyring such calls are refused.
	Approvals Approvals `yaml:"approvals"`
	// Spool, Policy and ToolPins are the delivery and enforcement every source shares.
	source.Config `yaml:",inline"`

	// Masking masks personal data and secrets in events; off, events carry no tool arguments
	// (debugging only).
	Masking bool `yaml:"masking"`
	// Redact redacts tool results before they reach the client: TOOL=CLASS[,CLASS] rules (TOOL
	// may be * or SERVER/TOOL; classes pii, secret or masking kinds such as email, card).
	Redact []string `yaml:"redact"`
	// RedactOversize is what happens to a result to redact that is larger than MaxBodyBytes:
	// block (withhold it, answer a JSON-RPC error) or pass (relay it unredacted, audited).
	RedactOversize string `yaml:"redact_oversize"`
	// MaxBodyBytes is the largest request body accepted and response message inspected.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ShowDeniedTools relays tools/list unfiltered (by default tools the caller may not call
	// are removed).
	ShowDeniedTools bool `yaml:"show_denied_tools"`
	// Unauthenticated limits refused (unauthenticated) requests per source address.
	Unauthenticated Unauthenticated `yaml:"unauthenticated"`
	// DeviceHealthHeader is a request header trusted to carry device health; only behind a
	// proxy that sets it and strips it from clients. Empty: device health unknown.
	DeviceHealthHeader string `yaml:"device_health_header"`
	// TrustedProxies are the reverse proxies and load balancers in front of the gateway, CIDR
	// prefixes or addresses: when the TCP peer is one, the client address is the one it
	// forwarded (Forwarded, else X-Forwarded-For). Empty: none trusted, the headers are ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Auth is how the gateway knows who calls: OAuth 2.1 (production) or static tokens
// (development), exactly one.
type Auth struct {
	// TokensFile is a YAML list of bearer tokens (sha256 or token) and their principals.
	TokensFile string `yaml:"tokens_file"`
	OAuth      OAuth  `yaml:"oauth"`
}

// OAuth makes the gateway an OAuth 2.1 resource server.
type OAuth struct {
	// Issuer is the authorization server's issuer; set, it enables OAuth.
	Issuer string `yaml:"issuer"`
	// Resource is this gateway's canonical URI (RFC 8707), the audience tokens must name.
	Resource string `yaml:"resource"`
	// JWKSURL overrides the JWKS URL from the issuer's discovery metadata.
	JWKSURL string `yaml:"jwks_url"`
	// Scopes are the scopes each tool or MCP method needs (key * for anything else).
	Scopes map[string][]string `yaml:"scopes"`
	// RequireAMR refuses tokens whose amr has none of these (e.g. mfa, hwk, otp).
	RequireAMR []string `yaml:"require_amr"`
	// RequireACR refuses tokens whose acr is none of these.
	RequireACR []string `yaml:"require_acr"`
	// StepUpAMR and StepUpACR are what a step-up control (kind step_up on the control topic)
	// demands of the principal's next login, besides being after the control: an amr among
	// StepUpAMR (e.g. mfa), an acr among StepUpACR. Empty: any new login.
	StepUpAMR []string `yaml:"step_up_amr"`
	StepUpACR []string `yaml:"step_up_acr"`
	// RoleClaim is the claim holding the principal's roles (dotted path allowed).
	RoleClaim     string        `yaml:"role_claim"`
	Introspection Introspection `yaml:"introspection"`
	// Revocation revokes, at the authorization server (RFC 7009), the tokens this gateway holds
	// when a revoke control names them. It authenticates as the introspection client.
	Revocation Revocation `yaml:"revocation"`
}

// Introspection is RFC 7662 introspection of opaque tokens, and of JWTs if jwt says so.
type Introspection struct {
	ClientID     string           `yaml:"client_id"`
	ClientSecret component.Secret `yaml:"client_secret"`
	// JWT: off (default), all, or risky (only principals whose threat score is at least
	// min_risk_score, or unknown).
	JWT          string  `yaml:"jwt"`
	MinRiskScore float64 `yaml:"min_risk_score"`
	// CacheTTL is how long an answer is reused (default 30s, at most 5m): a token revoked at the
	// authorization server is refused within it.
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

// Revocation is RFC 7009 revocation at the authorization server.
type Revocation struct {
	Enabled bool   `yaml:"enabled"`
	URL     string `yaml:"url"` // default: revocation_endpoint from discovery
}

// Approvals configures the gateway's approval gate: it follows the approvals topic with the
// gateway's Kafka client, writes requests and claims to it, and counts only votes signed by the
// keyring's approvers (see docs/response.md#approvals).
type Approvals struct {
	// Keyring is the approvers' public keys, the YAML file `mcpwatch response approvals-serve
	// --keyring` reads. Set, it enables the gate.
	Keyring string `yaml:"keyring"`
	// StatusURL is the approvals HTTP API's base URL as clients reach it
	// (https://approvals.example.com): a held call's answer points at
	// <status_url>/approvals/<id>. Empty: the answer names the request but gives no URL.
	StatusURL string `yaml:"status_url"`
	// WaitTimeout bounds writing an approval entry and reading it back from the topic (default
	// 5s, at most 1m); past it the call is refused with 503.
	WaitTimeout time.Duration `yaml:"wait_timeout"`
	// MaxRequests bounds the requests held in memory (default 100000); beyond it new requests,
	// and their calls, are refused.
	MaxRequests int `yaml:"max_requests"`
}

// Enabled reports whether the gate runs.
func (a Approvals) Enabled() bool { return a.Keyring != "" }

// maxApprovalWait bounds approvals.wait_timeout: a client waits that long for the answer.
const maxApprovalWait = time.Minute

func (a Approvals) validate() error {
	if a.Keyring == "" {
		var errs []error
		for _, f := range []struct {
			name string
			set  bool
		}{{"status_url", a.StatusURL != ""}, {"wait_timeout", a.WaitTimeout != 0}, {"max_requests", a.MaxRequests != 0}} {
			if f.set {
				errs = append(errs, component.Fieldf(f.name, "set without keyring (the approvers' public keys), which enables approvals"))
			}
		}
		return errors.Join(errs...)
	}
	var errs []error
	if _, err := approval.LoadKeyring(a.Keyring); err != nil {
		errs = append(errs, component.Field("keyring", err))
	}
	if a.StatusURL != "" {
		if err := checkHTTPURL(a.StatusURL); err != nil {
			errs = append(errs, component.Field("status_url", err))
		} else if u, _ := url.Parse(a.StatusURL); u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, component.Fieldf("status_url", "want the API's base URL without credentials, query or fragment "+
				"(clients are sent to <status_url>/approvals/<id>)"))
		}
	}
	if a.WaitTimeout < 0 || a.WaitTimeout > maxApprovalWait {
		errs = append(errs, component.Fieldf("wait_timeout", "%s: want at most %s (a client waits that long for its answer)", a.WaitTimeout, maxApprovalWait))
	}
	if a.MaxRequests < 0 {
		errs = append(errs, component.Fieldf("max_requests", "must not be negative, got %d", a.MaxRequests))
	}
	return errors.Join(errs...)
}

// Unauthenticated limits refused requests per source address.
type Unauthenticated struct {
	Rate  float64 `yaml:"rate"`  // per second, sustained; negative: no limit
	Burst int     `yaml:"burst"` // at once
}

// Sandbox configures the cgroup v2 sandboxes of command upstreams.
type Sandbox struct {
	CgroupRoot    string        `yaml:"cgroup_root"`    // default: found in /proc/self/mountinfo
	CgroupParent  string        `yaml:"cgroup_parent"`  // default "mcpwatch"
	RequireLimits bool          `yaml:"require_limits"` // refuse sandboxes whose limits cannot apply
	StopGrace     time.Duration `yaml:"stop_grace"`
}

// Upstream is one upstream server: url, or command (with args, env, dir, sandbox).
type Upstream struct {
	Name       string            `yaml:"name"`
	Route      string            `yaml:"route"`
	URL        string            `yaml:"url"`
	Command    string            `yaml:"command"`
	Args       []string          `yaml:"args"`
	Env        map[string]string `yaml:"env"`
	InheritEnv []string          `yaml:"inherit_env"`
	Dir        string            `yaml:"dir"`
	Sandbox    Limits            `yaml:"sandbox"`
	// Egress, if set, is the allow-list of the server's sandboxes, enforced in the kernel
	// (needs ebpf.enabled: true; docs/ebpf.md "Egress enforcement").
	Egress *EgressRules `yaml:"egress"`
}

// EgressRules is a command upstream's egress allow-list.
type EgressRules struct {
	// Allow lists what the server's sandboxes may reach, as CIDR:port, address:port, or :* for
	// any port ("10.0.0.0/8:443", "[2001:db8::/32]:443", "192.0.2.7:*"). Hostnames are refused:
	// nothing resolves them in the kernel. An empty list allows no egress at all.
	Allow []string `yaml:"allow"`
}

// Limits are one command upstream's sandbox limits and session bounds.
type Limits struct {
	Memory      string        `yaml:"memory"` // bytes, or with a unit: 512MiB, 1G
	Pids        int64         `yaml:"pids"`
	CPUs        float64       `yaml:"cpus"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	MaxSessions int           `yaml:"max_sessions"`
	User        string        `yaml:"user"`    // a user name, or uid:gid; empty: the gateway's user
	Network     string        `yaml:"network"` // none: no network; empty: the host's
}

// IntrospectionSecretEnv holds the introspection client's secret by default: never a flag,
// which would show in process listings.
const IntrospectionSecretEnv = "MCPWATCH_OAUTH_INTROSPECTION_SECRET"

// DefaultConfig returns the defaults: 127.0.0.1:8787, masking on, a disk spool in the user's
// cache directory that fails closed when full, tools the caller may not call hidden. No
// upstream: the gateway runs only once one is configured.
func DefaultConfig() *Config {
	c := &Config{
		Listen: "127.0.0.1:8787", Tenant: mcp.DefaultTenant, ServerName: "default",
		Config:          source.DefaultConfig(),
		Masking:         true,
		RedactOversize:  string(mcp.OversizeBlock),
		MaxBodyBytes:    mcp.DefaultMaxBodyBytes,
		Unauthenticated: Unauthenticated{Rate: mcp.DefaultUnauthRate, Burst: mcp.DefaultUnauthBurst},
		Auth:            Auth{OAuth: OAuth{Introspection: Introspection{ClientSecret: component.SecretFromEnv(IntrospectionSecretEnv)}}},
	}
	c.Spool.Dir = defaultSpoolDir()
	return c
}

// defaultSpoolDir is a per-user cache directory, so a gateway started without settings keeps
// its audit spool across restarts.
func defaultSpoolDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "mcpwatch", "spool")
}

// hasCommand reports whether some upstream is a stdio command launched in a sandbox.
// hasEgressRules reports whether some command upstream has an egress allow-list.
func (c *Config) hasEgressRules() bool {
	for _, u := range c.Upstreams {
		if u.Command != "" && u.Egress != nil {
			return true
		}
	}
	return false
}

func (c *Config) hasCommand() bool {
	for _, u := range c.Upstreams {
		if u.Command != "" {
			return true
		}
	}
	return false
}

// Enabled reports whether an upstream is configured.
func (c *Config) Enabled() bool { return c.Upstream != "" || len(c.Upstreams) > 0 }

// Validate reports everything that cannot work, each problem naming its field. Zero trust: no
// policy file is an error unless policy.none says so, and no authentication is an error.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add(component.Field("listen", err))
	}
	if c.Tenant == "" || strings.Contains(c.Tenant, "/") {
		add(component.Fieldf("tenant", "%q: required, and without '/' (record keys are tenant/principal)", c.Tenant))
	}
	switch {
	case c.Upstream == "" && len(c.Upstreams) == 0:
		add(component.Fieldf("upstream", "give upstream (one server's URL) or upstreams (several servers by route)"))
	case c.Upstream != "" && len(c.Upstreams) > 0:
		add(component.Fieldf("upstream", "upstream and upstreams are exclusive (list the server under upstreams)"))
	case c.Upstream != "":
		if err := checkHTTPURL(c.Upstream); err != nil {
			add(component.Field("upstream", err))
		}
		if c.ServerName == "" {
			add(component.Fieldf("server_name", "required: quarantines and events name the upstream by it"))
		}
	}
	names, routes := map[string]bool{}, map[string]bool{}
	for i, u := range c.Upstreams {
		at := fmt.Sprintf("upstreams[%d]", i)
		add(component.Under(at, u.validate()))
		if names[u.Name] && u.Name != "" {
			add(component.Fieldf(at+".name", "%q is used twice", u.Name))
		}
		if routes[u.Route] && u.Route != "" {
			add(component.Fieldf(at+".route", "%q is used twice", u.Route))
		}
		names[u.Name], routes[u.Route] = true, true
	}
	if c.Sandbox.StopGrace < 0 {
		add(component.Fieldf("sandbox.stop_grace", "must not be negative"))
	}
	add(component.Under("ebpf", c.EBPF.validate(c.hasCommand())))
	if c.hasEgressRules() && c.EBPF.Enabled != EBPFOn {
		add(component.Fieldf("ebpf.enabled", "an upstream has an egress allow-list, which the kernel enforces: set true "+
			"(with auto or false the server would run unrestricted)"))
	}
	add(component.Under("auth", c.Auth.validate()))
	add(component.Under("approvals", c.Approvals.validate()))
	add(c.Config.Validate())
	if c.Policy.File == "" && !c.Policy.None {
		add(component.Fieldf("policy.file", "required (zero trust: every call is denied unless a policy allows it); "+
			"set policy.none (--no-policy) to run without one for development"))
	}
	for i, r := range c.Redact {
		if _, err := mcp.ParseRedactRule(r); err != nil {
			add(component.Field(fmt.Sprintf("redact[%d]", i), err))
		}
	}
	switch mcp.OversizeAction(c.RedactOversize) {
	case mcp.OversizeBlock, mcp.OversizePass:
	default:
		add(component.Fieldf("redact_oversize", "%q: want block or pass", c.RedactOversize))
	}
	if c.MaxBodyBytes < 1 {
		add(component.Fieldf("max_body_bytes", "must be positive, got %d", c.MaxBodyBytes))
	}
	if c.Unauthenticated.Burst < 0 {
		add(component.Fieldf("unauthenticated.burst", "must not be negative"))
	}
	for i, p := range c.TrustedProxies {
		if _, err := mcp.ParseTrustedProxy(p); err != nil {
			add(component.Field(fmt.Sprintf("trusted_proxies[%d]", i), err))
		}
	}
	return errors.Join(errs...)
}

func (a Auth) validate() error {
	o := a.OAuth
	if o.Issuer == "" {
		if o.Resource != "" || len(o.Scopes) > 0 || len(o.RequireAMR) > 0 || len(o.RequireACR) > 0 || o.JWKSURL != "" || o.Introspection.ClientID != "" ||
			o.Introspection.JWT != "" || o.Revocation.Enabled {
			return component.Fieldf("oauth.issuer", "the other oauth settings need an issuer")
		}
		if a.TokensFile == "" {
			return component.Fieldf("tokens_file", "give oauth.issuer (production) or tokens_file (development): "+
				"default deny, no authentication, no access")
		}
		return nil
	}
	var errs []error
	if a.TokensFile != "" {
		errs = append(errs, component.Fieldf("tokens_file", "tokens_file and oauth.issuer are exclusive"))
	}
	if o.Resource == "" {
		errs = append(errs, component.Fieldf("oauth.resource", "required with an issuer: this gateway's canonical URI, the audience tokens must name"))
	}
	errs = append(errs, component.Field("oauth.introspection.client_secret", o.Introspection.ClientSecret.Validate()))
	in := o.Introspection
	switch oauth.JWTIntrospection(in.JWT) {
	case "", oauth.JWTIntrospectOff:
	case oauth.JWTIntrospectAll, oauth.JWTIntrospectRisky:
		if in.ClientID == "" {
			errs = append(errs, component.Fieldf("oauth.introspection.jwt", "%q needs client_id and client_secret "+
				"(the gateway's confidential client at the authorization server)", in.JWT))
		}
	default:
		errs = append(errs, component.Fieldf("oauth.introspection.jwt", "%q: want off, all or risky", in.JWT))
	}
	if in.MinRiskScore != 0 && oauth.JWTIntrospection(in.JWT) != oauth.JWTIntrospectRisky {
		errs = append(errs, component.Fieldf("oauth.introspection.min_risk_score", "applies only with jwt: risky"))
	}
	if in.MinRiskScore < 0 || in.MinRiskScore > 100 {
		errs = append(errs, component.Fieldf("oauth.introspection.min_risk_score", "%v: want a threat score from 0 to 100", in.MinRiskScore))
	}
	if in.CacheTTL < 0 || in.CacheTTL > oauth.MaxIntrospectTTL {
		errs = append(errs, component.Fieldf("oauth.introspection.cache_ttl", "%s: want at most %s (a revoked token stays usable that long)",
			in.CacheTTL, oauth.MaxIntrospectTTL))
	}
	if o.Revocation.Enabled && in.ClientID == "" {
		errs = append(errs, component.Fieldf("oauth.revocation.enabled", "needs introspection.client_id and client_secret "+
			"(the gateway revokes as its confidential client)"))
	}
	if o.Revocation.URL != "" && !o.Revocation.Enabled {
		errs = append(errs, component.Fieldf("oauth.revocation.url", "set without enabled: true"))
	}
	return errors.Join(errs...)
}

func (u Upstream) validate() error {
	var errs []error
	if u.Name == "" {
		errs = append(errs, component.Fieldf("name", "required (events, policies and quarantines name the server by it)"))
	}
	if !strings.HasPrefix(u.Route, "/") {
		errs = append(errs, component.Fieldf("route", "%q: want a path prefix such as /mcp/files", u.Route))
	}
	switch {
	case u.URL == "" && u.Command == "":
		errs = append(errs, component.Fieldf("url", "give url (a remote Streamable HTTP server) or command (a stdio server to launch)"))
	case u.URL != "" && u.Command != "":
		errs = append(errs, component.Fieldf("command", "give url or command, not both"))
	case u.URL != "":
		if err := checkHTTPURL(u.URL); err != nil {
			errs = append(errs, component.Field("url", err))
		}
		if len(u.Args) > 0 || len(u.Env) > 0 || len(u.InheritEnv) > 0 || u.Dir != "" || u.Sandbox != (Limits{}) || u.Egress != nil {
			errs = append(errs, component.Fieldf("url", "args, env, inherit_env, dir, sandbox and egress apply to command upstreams only"))
		}
	default:
		if _, err := exec.LookPath(u.Command); err != nil {
			errs = append(errs, component.Field("command", err))
		}
		if _, err := parseBytes(u.Sandbox.Memory); err != nil {
			errs = append(errs, component.Field("sandbox.memory", err))
		}
		if u.Sandbox.Pids < 0 || u.Sandbox.CPUs < 0 || u.Sandbox.IdleTimeout < 0 || u.Sandbox.MaxSessions < 0 {
			errs = append(errs, component.Fieldf("sandbox", "limits must not be negative"))
		}
		if _, err := parseUser(u.Sandbox.User); err != nil {
			errs = append(errs, component.Field("sandbox.user", err))
		}
		if u.Egress != nil {
			if _, err := ebpf.ParseAllowRules(u.Egress.Allow); err != nil {
				errs = append(errs, component.Field("egress.allow", err))
			}
		}
		if n := sandbox.Network(u.Sandbox.Network); n != sandbox.NetworkHost && n != sandbox.NetworkNone {
			errs = append(errs, component.Fieldf("sandbox.network", "%q: want none, or leave it out for the host's network", u.Sandbox.Network))
		}
		for k := range u.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				errs = append(errs, component.Fieldf("env", "invalid variable name %q", k))
			}
		}
	}
	return errors.Join(errs...)
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL, which may carry credentials
		}
		return fmt.Errorf("does not parse: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want http(s)://host[:port]/path", u.Redacted())
	}
	return nil
}
