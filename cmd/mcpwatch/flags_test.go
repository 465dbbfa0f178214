package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/detectors"
	"github.com/mcpwatch/mcpwatch/ingest/gateway"
	"github.com/mcpwatch/mcpwatch/storage/sink"
)

// configFor parses args as the command line would and settles the configuration, without
// running anything.
func configFor(t *testing.T, args ...string) (*globals, error) {
	t.Helper()
	root, g := newCLI()
	sub, rest, err := root.Find(args)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.ParseFlags(rest); err != nil {
		return g, err
	}
	return g, g.setup(sub)
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Defaults, then the file, then MCPWATCH_* variables, then flags: a deployment's config file
// sets the baseline, the environment of one replica adjusts it, a flag on the command line wins.
// If this failed, an operator's flag or a container's variable would be silently overridden by
// the mounted file.
func TestSettingsPrecedence(t *testing.T) {
	file := writeFile(t, "mcpwatch.yaml", `kafka:
  brokers: [file:9092]
  topic_prefix: fromfile
  partitions: 6
sink:
  batch_rows: 111
  batch_delay: 3s
detect:
  rate:
    window: 20s
`)
	t.Setenv("MCPWATCH_KAFKA_BROKERS", "env1:9092,env2:9092")
	t.Setenv("MCPWATCH_TOPIC_PREFIX", "")
	g, err := configFor(t, "--config", file, "--partitions", "9", "sink", "--sink-batch-rows", "222")
	if err != nil {
		t.Fatal(err)
	}
	c := g.cfg
	if !slices.Equal(c.Kafka.Brokers, []string{"env1:9092", "env2:9092"}) {
		t.Errorf("brokers %v: the environment must override the file", c.Kafka.Brokers)
	}
	if c.Kafka.TopicPrefix != "fromfile" {
		t.Errorf("topic prefix %q: an empty variable must not override the file", c.Kafka.TopicPrefix)
	}
	if c.Kafka.Partitions != 9 {
		t.Errorf("partitions %d: the flag must override the file", c.Kafka.Partitions)
	}
	s := c.Section("sink").(*sink.Config)
	if s.BatchRows != 222 || s.BatchDelay != 3*time.Second || s.BatchBytes != 16<<20 {
		t.Errorf("sink %+v: flag, file, default", s)
	}
	if w := c.Section("detect").(*detectors.Config).Rate.Window; w != 20*time.Second {
		t.Errorf("detect window %s from the file", w)
	}
	// The flag also overrides the environment.
	g, err = configFor(t, "--kafka", "flag:9092", "process")
	if err != nil || !slices.Equal(g.cfg.Kafka.Brokers, []string{"flag:9092"}) {
		t.Fatalf("brokers %v, %v", g.cfg.Kafka.Brokers, err)
	}
	// $MCPWATCH_CONFIG names the file when --config does not.
	t.Setenv("MCPWATCH_CONFIG", file)
	if g, err = configFor(t, "process"); err != nil || g.cfg.Kafka.Partitions != 6 {
		t.Fatalf("config from the environment: %v, partitions %d", err, g.cfg.Kafka.Partitions)
	}
}

// A broken config file stops every command with its position.
func TestConfigFileErrors(t *testing.T) {
	file := writeFile(t, "bad.yaml", "sink:\n  batch_rowz: 1\n")
	if _, err := configFor(t, "--config", file, "sink"); err == nil || !strings.Contains(err.Error(), "bad.yaml:2:3: unknown key \"batch_rowz\"") {
		t.Fatalf("got %v", err)
	}
	if _, err := configFor(t, "--config", filepath.Join(t.TempDir(), "none.yaml"), "sink"); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Fatalf("missing file: %v", err)
	}
}

// Each stage command shows only its own flags: `mcpwatch detect --help` listing the sink's and
// the responder's knobs made every command's help a wall of settings that do nothing there.
func TestCommandsShowOnlyTheirFlags(t *testing.T) {
	own := map[string][]string{
		"process": {"catalog-file", "directory-file", "enrich-reload"},
		"sink":    {"sink-batch-rows", "sink-retention"},
		"detect":  {"rate-window", "finding-threshold"},
		"respond": {"response-threshold", "revoke-for", "webhook-url"},
		"notify":  {"response-threshold", "webhook-url"},
		"forward": {"syslog-address", "findings"},
		"gateway": {"upstream", "policy-file", "oauth-issuer", "spool-dir"},
	}
	root, _ := newCLI()
	for name, flags := range own {
		cmd, _, err := root.Find([]string{name})
		if err != nil || cmd.Name() != name {
			t.Fatalf("%s: %v", name, err)
		}
		for _, f := range flags {
			if cmd.LocalFlags().Lookup(f) == nil {
				t.Errorf("%s lacks --%s", name, f)
			}
		}
		for other, oflags := range own {
			if other == name || (name == "notify" && other == "respond") || (name == "respond" && other == "notify") {
				continue
			}
			for _, f := range oflags {
				if cmd.LocalFlags().Lookup(f) != nil && !slices.Contains(flags, f) {
					t.Errorf("%s shows %s's flag --%s", name, other, f)
				}
			}
		}
	}
}

// The gateway's flags reach its config section: OAuth with scopes, redaction, rate limits,
// masking. If this failed, `mcpwatch gateway --oauth-issuer ...` would start with the wrong scopes
// or silently fall back to static tokens.
func TestGatewayFlags(t *testing.T) {
	g, err := configFor(t, "gateway", "--upstream", "http://127.0.0.1:1/mcp", "--policy-file", "p.yaml",
		"--oauth-issuer", "https://as.example", "--oauth-resource", "https://gw.example/mcp",
		"--oauth-scopes", "*=mcp:read,tools/call=mcp:tools,db_query=mcp:db", "--oauth-scopes", "db_query=mcp:audit mcp:x",
		"--oauth-require-amr", "mfa", "--redact", "*=pii", "--redact", "crm/db_query=pii,secret", "--redact-oversize", "pass",
		"--show-denied-tools", "--unauth-rate", "-1", "--no-masking", "--tool-pins", "pins.json", "--tool-pinning", "strict",
		"--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "192.0.2.1,2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	c := g.cfg.Section("gateway").(*gateway.Config)
	o := c.Auth.OAuth
	if o.Issuer != "https://as.example" || !slices.Equal(o.RequireAMR, []string{"mfa"}) ||
		!slices.Equal(o.Scopes["db_query"], []string{"mcp:db", "mcp:audit", "mcp:x"}) || !slices.Equal(o.Scopes["*"], []string{"mcp:read"}) {
		t.Errorf("oauth %+v", o)
	}
	if !slices.Equal(c.Redact, []string{"*=pii", "crm/db_query=pii,secret"}) || c.RedactOversize != "pass" || !c.ShowDeniedTools ||
		c.Unauthenticated.Rate != -1 || c.Masking || c.Policy.File != "p.yaml" || c.ToolPins.Mode != "strict" || c.ToolPins.File != "pins.json" ||
		!slices.Equal(c.TrustedProxies, []string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32"}) {
		t.Errorf("gateway %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("valid flags refused: %v", err)
	}
	if _, err := configFor(t, "gateway", "--oauth-scopes", "tools/call"); err == nil || !strings.Contains(err.Error(), "key=scope") {
		t.Errorf("malformed scopes: %v", err)
	}
}

// The gateway is zero trust from the command line: no policy file, no gateway, unless
// --no-policy says so. If this failed, a forgotten flag would run a gateway that lets every
// authenticated principal call every tool.
func TestGatewayRequiresPolicy(t *testing.T) {
	tokens := writeFile(t, "t.yaml", "- token: x0123456789abcdef\n  sub: a\n")
	_, err := runCLI(t, "--metrics-addr", "", "gateway", "--upstream", "http://127.0.0.1:1/mcp", "--tokens-file", tokens)
	if err == nil || !strings.Contains(err.Error(), "gateway.policy.file: required (zero trust") {
		t.Fatalf("no policy: %v", err)
	}
	_, err = runCLI(t, "--metrics-addr", "", "gateway", "--upstream", "http://127.0.0.1:1/mcp", "--tokens-file", tokens, "--no-policy", "--policy-file", "p.yaml")
	if err == nil || !strings.Contains(err.Error(), "exclusive") {
		t.Fatalf("--policy-file with --no-policy: %v", err)
	}
}

// `mcpwatch respond` runs the webhook stage beside the enforcing one when a webhook URL is set,
// as it did before the two became components of their own; without one it enforces alone.
func TestRespondRunsNotifyWithWebhook(t *testing.T) {
	g, err := configFor(t, "respond")
	if err != nil || !slices.Equal(respondTypes(g), []component.Type{"respond"}) {
		t.Fatalf("without a webhook: %v %v", respondTypes(g), err)
	}
	g, err = configFor(t, "respond", "--webhook-url", "https://soar.example.com/hook")
	if err != nil || !slices.Equal(respondTypes(g), []component.Type{"respond", "notify"}) {
		t.Fatalf("with a webhook: %v %v", respondTypes(g), err)
	}
}
