package mcp

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"

	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/mask"
	"github.com/mcpwatch/mcpwatch/internal/pins"
)

// Defaults for [Config].
const (
	DefaultMaxBodyBytes = 4 << 20
	DefaultMaxPending   = 65536
	DefaultTenant       = "default"
)

var errConflictingAuth = errors.New("give static tokens or OAuth, not both")

// StepUpDemand is what a step-up control demands of an authentication: one of AMR among the
// token's "amr" and, when ACR is set, the token's "acr" among ACR. Empty: any authentication made
// after the control.
type StepUpDemand struct {
	AMR []string
	ACR []string
}

// Config configures a [Gateway] in front of one upstream MCP server.
type Config struct {
	// Listen is the address the gateway serves on; used by the command, not by the handler.
	Listen string
	// Upstream is the URL of the upstream server's Streamable HTTP endpoint. Every request is
	// forwarded to exactly this URL whatever path the client used, except the paths the
	// authenticator publishes itself ([WellKnown], e.g. RFC 9728 metadata), which never go upstream.
	Upstream string
	// ServerName names the upstream in events and in server and tool quarantines.
	ServerName string
	// Tenant the gateway's principals belong to. Default [DefaultTenant].
	Tenant string
	// Observer identifies this gateway replica in events. Default: the host name.
	Observer string
	// MaxBodyBytes bounds a POST body and the part of any single response message the gateway
	// inspects. Default [DefaultMaxBodyBytes].
	MaxBodyBytes int64
	// MaxPending bounds the requests awaiting a response (and the sessions) the gateway tracks
	// to pair responses with requests. Default [DefaultMaxPending].
	MaxPending int
	// Tokens are the static bearer tokens, for [NewStaticTokens]: development and demos.
	Tokens []StaticToken
	// OAuth, when set, makes the gateway an OAuth 2.1 resource server ([NewOAuth]). Exclusive
	// with Tokens. See [NewAuthenticator].
	OAuth *oauth.Config
	// Transport carries requests to the upstream; nil means a dedicated [http.Transport].
	Transport http.RoundTripper

	// Policy decides every governed request (tools/call, resources/*, prompts/get, the lists)
	// once authentication, revocations and scopes have passed: usually a [*policy.Store]. Nil
	// means no policy evaluation (authentication and revocations only); the command refuses to
	// run a gateway without one unless told so explicitly.
	Policy Decider
	// Actions takes the action records of the sandbox quarantines a [Router] applies and lifts
	// (frozen, thawed, failed), for the audit trail and the latency of quarantines. Nil: only the
	// audit events say it.
	Actions ActionPublisher
	// StepUp is what a step-up control (kind step_up) demands of the principal's next
	// authentication, besides being after the control.
	StepUp StepUpDemand
	// Approvals holds the tools/call requests a policy rule allows only once approved (the rule's
	// `approval:`): see approval.go. Nil: such calls are refused, never forwarded unapproved.
	Approvals *approval.Gate
	// Scores gives the principal's live threat score, the policy's risk. Nil: risk unknown.
	Scores RiskLookup
	// DeviceHealthHeader names a request header the gateway trusts to carry the client device's
	// health (set by a device-posture proxy in front of it, which must strip it from clients).
	// Empty: device health is unknown, which fails device_health conditions closed.
	DeviceHealthHeader string
	// TrustedProxies are the reverse proxies and load balancers (see [ParseTrustedProxy]) whose
	// Forwarded or X-Forwarded-For headers the gateway believes: when the TCP peer is one, the
	// client's address (events, policy source_ip conditions, the unauthenticated limit) is the
	// one they forwarded. Empty: no proxy is trusted, the headers are ignored and the peer is the
	// client.
	TrustedProxies []netip.Prefix
	// DataClasses labels targets for the policy's data_class conditions and the events, keyed by
	// "tool:<name>", "resource:<uri>" or "prompt:<name>". Masking adds "pii" and "secret" when it
	// finds personal data or credentials in a request's arguments.
	DataClasses map[string][]string
	// Mask configures the masking of arguments and reasons before events leave the gateway.
	// Nil means [mask.Config]'s defaults.
	Mask *mask.Config
	// NoMasking turns masking off: events then carry no arguments at all. For debugging only.
	NoMasking bool
	// Redact names the data to redact from tool results before they reach the client (see
	// redact.go): the tools/call results of the tools a rule names are rewritten with their
	// personal data or secrets replaced, and the response's event counts what was replaced.
	// Empty: results are relayed as the upstream sent them.
	Redact []RedactRule
	// RedactOversize says what happens to a result that must be redacted but is larger than
	// MaxBodyBytes, too large to scan: [OversizeBlock] (the default) withholds it and answers the
	// call with a JSON-RPC error, [OversizePass] relays it unredacted. Both are audited.
	RedactOversize OversizeAction
	// ShowDeniedTools relays tools/list results unfiltered. By default the gateway removes the
	// tools the caller may not call (the policy denies it, a pin blocks it, a quarantine covers
	// it), so that agents are not offered tools they cannot use.
	ShowDeniedTools bool
	// Unauthenticated limits requests that fail authentication or carry none, per source
	// address. The zero value means [DefaultUnauthRate] and [DefaultUnauthBurst].
	Unauthenticated UnauthLimit

	// ToolPins, when set, pins the upstream's tool definitions: every tools/list result is
	// checked against it, a changed definition is audited, and (per its mode) calls to a tool
	// whose definition is not approved are refused. See pins.go. Nil: no pinning.
	ToolPins *pins.Store

	// Route is the path prefix this gateway serves under a [Router], carried in events
	// ([event.Target.Route]). Empty for a gateway of its own.
	Route string
	// Sandboxes, when set, names the sandbox serving each session: events of the session carry it
	// ([event.Target.Sandbox]) and sandbox quarantines refuse its calls. Set by [NewRouter] for
	// sandboxed upstreams.
	Sandboxes SandboxLookup
}

// SandboxLookup names the sandbox serving an MCP session, "" when there is none.
type SandboxLookup interface {
	SandboxOf(session string) string
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Upstream == "" {
		errs = append(errs, errors.New("upstream URL is required"))
	} else if u, err := url.Parse(c.Upstream); err != nil {
		errs = append(errs, fmt.Errorf("upstream URL: %w", err))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("upstream URL %q: want http(s)://host[:port]/path", u.Redacted()))
	}
	if c.ServerName == "" {
		errs = append(errs, errors.New("server name is required: quarantines and events name the upstream by it"))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("max body bytes must not be negative"))
	}
	if c.MaxPending < 0 {
		errs = append(errs, errors.New("max pending must not be negative"))
	}
	if err := validateRedact(c.Redact, c.RedactOversize); err != nil {
		errs = append(errs, err)
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			errs = append(errs, errors.New("trusted proxies: an invalid prefix"))
			break
		}
	}
	if err := c.Unauthenticated.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.OAuth != nil {
		if len(c.Tokens) > 0 {
			errs = append(errs, errConflictingAuth)
		}
		if err := c.OAuth.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("oauth: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Tenant == "" {
		c.Tenant = DefaultTenant
	}
	if c.Observer == "" {
		c.Observer, _ = os.Hostname()
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	return c
}
