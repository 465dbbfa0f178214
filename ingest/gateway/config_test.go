package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/app"
	"github.com/mcpwatch/mcpwatch/ingest/gateway"
)

// Config errors must say where — the file, the line and column of the setting — and what to do.
// If this failed, an operator would hunt through a long upstream list for the typo.
func TestConfigErrors(t *testing.T) {
	const head = "gateway:\n  auth: {tokens_file: t.yaml}\n  policy: {none: true}\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", "  upstreams:\n    - name: a\n      route: /a\n      url: http://x\n      urls: http://y\n", `g.yaml:8:7: unknown key "urls"`},
		{"no upstream", "  listen: 127.0.0.1:0\n", "gateway.upstream: give upstream"},
		{"neither", "  upstreams:\n    - name: a\n      route: /a\n      url: http://x\n    - name: b\n      route: /b\n", "gateway.upstreams[1].url: give url"},
		{"both", "  upstreams:\n    - name: a\n      route: /a\n      url: http://x\n      command: sh\n", "g.yaml:8:16: gateway.upstreams[0].command: give url or command, not both"},
		{"upstream and upstreams", "  upstream: http://x\n  upstreams:\n    - name: a\n      route: /a\n      url: http://x\n", "g.yaml:4:13: gateway.upstream: upstream and upstreams are exclusive"},
		{"no name", "  upstreams:\n    - route: /a\n      url: http://x\n", "gateway.upstreams[0].name: required"},
		{"twice", "  upstreams:\n    - {name: a, route: /a, url: http://x}\n    - {name: a, route: /b, url: http://x}\n", `g.yaml:6:14: gateway.upstreams[1].name: "a" is used twice`},
		{"route", "  upstreams:\n    - name: a\n      route: a\n      url: http://x\n", `g.yaml:6:14: gateway.upstreams[0].route: "a": want a path prefix`},
		{"url", "  upstreams:\n    - name: a\n      route: /a\n      url: ftp://x\n", `g.yaml:7:12: gateway.upstreams[0].url: "ftp://x": want http(s)`},
		{"missing command", "  upstreams:\n    - name: a\n      route: /a\n      command: /no/such/server\n", "gateway.upstreams[0].command: "},
		{"memory", "  upstreams:\n    - name: a\n      route: /a\n      command: sh\n      sandbox: {memory: 12 parsecs}\n", "g.yaml:8:25: gateway.upstreams[0].sandbox.memory"},
		{"url with limits", "  upstreams:\n    - name: a\n      route: /a\n      url: http://x\n      sandbox: {pids: 3}\n", "command upstreams only"},
		{"user", "  upstreams:\n    - name: a\n      route: /a\n      command: sh\n      sandbox: {user: no-such-user-here}\n", `gateway.upstreams[0].sandbox.user: user: unknown user no-such-user-here`},
		{"uid:gid", "  upstreams:\n    - name: a\n      route: /a\n      command: sh\n      sandbox: {user: \"1000:staff\"}\n", `sandbox.user: "staff" is not a numeric id`},
		{"network", "  upstreams:\n    - name: a\n      route: /a\n      command: sh\n      sandbox: {network: bridge}\n", `g.yaml:8:26: gateway.upstreams[0].sandbox.network: "bridge": want none`},
		{"duration", "  upstreams:\n    - name: a\n      route: /a\n      command: sh\n      sandbox: {idle_timeout: soon}\n", "g.yaml:8:31: want a duration such as 30m or 1h: time: invalid duration \"soon\""},
		{"redact", "  upstream: http://x\n  redact: ['*=pii,nonsense']\n", "gateway.redact[0]: "},
		{"spool", "  upstream: http://x\n  spool: {full: sometimes}\n", `gateway.spool.full: "sometimes": want fail_closed or fail_open`},
		{"strict pins", "  upstream: http://x\n  tool_pins: {mode: strict}\n", "gateway.tool_pins.file: strict pinning needs a pin file"},
		{"pin mode", "  upstream: http://x\n  tool_pins: {file: p.json, mode: sometimes}\n", "gateway.tool_pins.mode"},
		{"trusted proxy", "  upstream: http://x\n  trusted_proxies: [10.0.0.0/8, proxy.internal]\n", `gateway.trusted_proxies[1]: "proxy.internal": want a CIDR prefix or an IP address`},
		{"jwt introspection mode", "  upstream: http://x\n  auth:\n    oauth:\n      issuer: https://as\n      resource: https://gw/mcp\n      introspection: {client_id: gw, jwt: sometimes}\n",
			`g.yaml:8:43: gateway.auth.oauth.introspection.jwt: "sometimes": want off, all or risky`},
		{"jwt introspection without client", "  upstream: http://x\n  auth: {oauth: {issuer: https://as, resource: https://gw/mcp, introspection: {jwt: all}}}\n",
			`gateway.auth.oauth.introspection.jwt: "all" needs client_id and client_secret`},
		{"min risk score", "  upstream: http://x\n  auth: {oauth: {issuer: https://as, resource: https://gw/mcp, introspection: {client_id: gw, jwt: risky, min_risk_score: 150}}}\n",
			"gateway.auth.oauth.introspection.min_risk_score: 150: want a threat score from 0 to 100"},
		{"min risk score without risky", "  upstream: http://x\n  auth: {oauth: {issuer: https://as, resource: https://gw/mcp, introspection: {client_id: gw, jwt: all, min_risk_score: 50}}}\n",
			"gateway.auth.oauth.introspection.min_risk_score: applies only with jwt: risky"},
		{"introspection cache ttl", "  upstream: http://x\n  auth: {oauth: {issuer: https://as, resource: https://gw/mcp, introspection: {client_id: gw, cache_ttl: 10m}}}\n",
			"gateway.auth.oauth.introspection.cache_ttl: 10m0s: want at most 5m0s"},
		{"revocation without client", "  upstream: http://x\n  auth: {oauth: {issuer: https://as, resource: https://gw/mcp, revocation: {enabled: true}}}\n",
			"gateway.auth.oauth.revocation.enabled: needs introspection.client_id"},
		{"approvals without keyring", "  upstream: http://x\n  approvals: {status_url: https://approvals.example.com}\n",
			"g.yaml:5:27: gateway.approvals.status_url: set without keyring"},
		{"approvals status url", "  upstream: http://x\n  approvals: {keyring: testdata/approvers.yaml, status_url: approvals.example.com}\n",
			`gateway.approvals.status_url: "approvals.example.com": want http(s)://host[:port]/path`},
		{"approvals keyring not a keyring", "  upstream: http://x\n  approvals: {keyring: testdata/config_approvals.yaml}\n",
			`gateway.approvals.keyring: approvers keyring testdata/config_approvals.yaml: [1:1] unknown field "gateway"`},
		{"literal secret", "  upstream: http://x\n  auth: {tokens_file: t.yaml, oauth: {introspection: {client_secret: s3cret}}}\n", "a secret is never written in the config file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := app.NewConfig(app.Components())
			src := head + tc.yaml
			if strings.Contains(tc.yaml, "  auth:") {
				src = strings.Replace(src, "  auth: {tokens_file: t.yaml}\n", "", 1)
			}
			err := c.Load("g.yaml", []byte(src))
			if err == nil {
				err = c.Validate([]string{"gateway"})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v\nwant %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Error("the error echoes a secret")
			}
		})
	}
}

// Zero trust in the config: no authentication, or no policy without saying so, is an error; and
// OAuth and static tokens exclude each other.
func TestConfigZeroTrust(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*gateway.Config)
		want string
	}{
		{"no auth", func(c *gateway.Config) { c.Policy.None = true }, "auth.tokens_file: give oauth.issuer (production) or tokens_file"},
		{"no policy", func(c *gateway.Config) { c.Auth.TokensFile = "t.yaml" }, "policy.file: required (zero trust"},
		{"policy and none", func(c *gateway.Config) { c.Auth.TokensFile, c.Policy.File, c.Policy.None = "t.yaml", "p.yaml", true }, "policy.none: a policy file and none are exclusive"},
		{"both auths", func(c *gateway.Config) {
			c.Policy.None, c.Auth.TokensFile, c.Auth.OAuth.Issuer, c.Auth.OAuth.Resource = true, "t.yaml", "https://as", "https://gw/mcp"
		}, "tokens_file: tokens_file and oauth.issuer are exclusive"},
		{"oauth without resource", func(c *gateway.Config) { c.Policy.None, c.Auth.OAuth.Issuer = true, "https://as" }, "auth.oauth.resource: required"},
		{"oauth settings without issuer", func(c *gateway.Config) {
			c.Policy.None, c.Auth.TokensFile, c.Auth.OAuth.Resource = true, "t.yaml", "https://gw/mcp"
		}, "auth.oauth.issuer: the other oauth settings need an issuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := gateway.DefaultConfig()
			c.Upstream = "http://127.0.0.1:1/mcp"
			tc.mod(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v\nwant %q", err, tc.want)
			}
		})
	}
	c := gateway.DefaultConfig()
	if gateway.NewFactory().Enabled(c) {
		t.Fatal("a gateway without an upstream is enabled")
	}
	c.Upstream, c.Auth.TokensFile, c.Policy.File = "http://127.0.0.1:1/mcp", "t.yaml", "p.yaml"
	if err := c.Validate(); err != nil || !gateway.NewFactory().Enabled(c) {
		t.Fatalf("a complete config: %v", err)
	}
}

// The approvals section as a deployment writes it: every setting lands, and the keyring loads.
// If this failed, a gateway configured for approvals would start without its gate and refuse
// every call a rule holds.
func TestConfigApprovals(t *testing.T) {
	c := app.NewConfig(app.Components())
	if err := c.LoadFile("testdata/config_approvals.yaml"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate([]string{"gateway"}); err != nil {
		t.Fatal(err)
	}
	a := c.Section("gateway").(*gateway.Config).Approvals
	if a != (gateway.Approvals{Keyring: "testdata/approvers.yaml", StatusURL: "https://approvals.example.com/", WaitTimeout: 10 * time.Second, MaxRequests: 5000}) || !a.Enabled() {
		t.Fatalf("approvals %+v", a)
	}
}

// A broken approvals section is refused with every problem at its line, in words that say
// what to fix, and without echoing the credentials in the URL. If this failed, a typo in the
// keyring path would surface only when the first held call is refused.
func TestConfigApprovalsErrors(t *testing.T) {
	c := app.NewConfig(app.Components())
	err := c.LoadFile("testdata/config_approvals_bad.yaml")
	if err == nil {
		err = c.Validate([]string{"gateway"})
	}
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"config_approvals_bad.yaml:6:14: gateway.approvals.keyring: approvers keyring: open testdata/no-such-keyring.yaml: no such file or directory",
		"config_approvals_bad.yaml:7:17: gateway.approvals.status_url: want the API's base URL without credentials, query or fragment",
		"config_approvals_bad.yaml:8:19: gateway.approvals.wait_timeout: 5m0s: want at most 1m0s",
		"config_approvals_bad.yaml:9:19: gateway.approvals.max_requests: must not be negative, got -1",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error\n%v\nlacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Error("the error echoes the URL's password")
	}
}

// The ebpf section as a deployment writes it: every setting lands; enabled takes YAML's true and
// false as well as auto. If this failed, kernel monitoring would silently stay off, or a plain
// `enabled: true` would be refused.
func TestConfigEBPF(t *testing.T) {
	c := app.NewConfig(app.Components())
	if err := c.LoadFile("testdata/config_ebpf.yaml"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate([]string{"gateway"}); err != nil {
		t.Fatal(err)
	}
	e := c.Section("gateway").(*gateway.Config).EBPF
	if e != (gateway.EBPF{Enabled: gateway.EBPFAuto, RingBytes: 16 << 20, QueueLen: 4096, Hold: 5 * time.Second}) || !e.On() {
		t.Fatalf("ebpf %+v", e)
	}
	for src, want := range map[string]gateway.EBPFMode{"true": gateway.EBPFOn, "false": gateway.EBPFOff, "AUTO": gateway.EBPFAuto, `"true"`: gateway.EBPFOn} {
		c := app.NewConfig(app.Components())
		y := "gateway:\n  upstreams: [{name: a, route: /a, command: sh}]\n  ebpf: {enabled: " + src + "}\n"
		if err := c.Load("g.yaml", []byte(y)); err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got := c.Section("gateway").(*gateway.Config).EBPF.Enabled; got != want {
			t.Errorf("enabled: %s read as %q, want %q", src, got, want)
		}
	}
	if gateway.DefaultConfig().EBPF.On() {
		t.Error("kernel monitoring on by default")
	}
}

// A broken ebpf section is refused with every problem at its line: true without a command
// upstream (nothing to watch), a ring size the kernel refuses, a negative queue, a hold longer
// than memory should keep events, and a mode that is none of the three. If this failed, the
// gateway would fail at start with a kernel error, or keep events in memory for hours.
func TestConfigEBPFErrors(t *testing.T) {
	c := app.NewConfig(app.Components())
	err := c.LoadFile("testdata/config_ebpf_bad.yaml")
	if err == nil {
		err = c.Validate([]string{"gateway"})
	}
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"config_ebpf_bad.yaml:6:14: gateway.ebpf.enabled: true, but no upstream is a command",
		"config_ebpf_bad.yaml:7:17: gateway.ebpf.ring_bytes: 5000: want a power of two of at least 4096",
		"config_ebpf_bad.yaml:8:16: gateway.ebpf.queue_len: must not be negative, got -1",
		"config_ebpf_bad.yaml:9:11: gateway.ebpf.hold: 2m0s: want at most 1m0s",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error\n%v\nlacks %q", err, want)
		}
	}
	c = app.NewConfig(app.Components())
	err = c.Load("g.yaml", []byte("gateway:\n  ebpf: {enabled: sometimes}\n"))
	if err == nil || !strings.Contains(err.Error(), "g.yaml:2:19") || !strings.Contains(err.Error(), "want true, false or auto") {
		t.Errorf("mode sometimes: %v", err)
	}
}
