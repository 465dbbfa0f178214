package app

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/detectors"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/forward"
	"github.com/mcpwatch/mcpwatch/ingest/gateway"
	"github.com/mcpwatch/mcpwatch/processors"
	"github.com/mcpwatch/mcpwatch/response"
	"github.com/mcpwatch/mcpwatch/storage"
	"github.com/mcpwatch/mcpwatch/storage/sink"
)

func load(t *testing.T, name string) (*Config, error) {
	t.Helper()
	c := NewConfig(Components())
	if err := c.LoadFile(filepath.Join("testdata", name)); err != nil {
		return c, err
	}
	var sections []string
	for _, typ := range RunTypes(c) {
		f, _ := c.reg.Lookup(typ)
		sections = append(sections, f.Section())
	}
	return c, c.Validate(sections)
}

// Every section of a full file lands in its struct, and what the file leaves out keeps its
// default: a config file that silently lost a setting would run a deployment on defaults.
func TestLoadFull(t *testing.T) {
	t.Setenv("SOAR_SECRET", "whsec_"+strings.Repeat("QUJD", 8))
	c, err := load(t, "config_full.yaml")
	if err == nil {
		err = c.Validate(c.reg.Sections())
	}
	if err != nil {
		t.Fatal(err)
	}
	if want := (Kafka{Brokers: []string{"10.0.0.1:9092", "10.0.0.2:9092"}, TopicPrefix: "prod", GroupPrefix: "prod",
		Partitions: 12, Replication: 3, RetentionHours: 72}); !reflect.DeepEqual(c.Kafka, want) {
		t.Errorf("kafka %+v", c.Kafka)
	}
	if c.ClickHouse.Addr != "ch.internal:9000" || c.ClickHouse.Password != (component.Secret{File: "/run/secrets/ch"}) ||
		c.ClickHouse.ReadOnlyUser != "mcpwatch_ro" {
		t.Errorf("clickhouse %+v", c.ClickHouse)
	}
	if c.Telemetry != (Telemetry{LogFormat: "json", LogLevel: "warn", MetricsAddr: ""}) {
		t.Errorf("telemetry %+v", c.Telemetry)
	}
	if !reflect.DeepEqual(c.Run, []component.Type{"process", "sink"}) || !reflect.DeepEqual(RunTypes(c), c.Run) {
		t.Errorf("run %v", c.Run)
	}
	if p := c.Section("process").(*processors.Config); p.CatalogFile != "/etc/mcpwatch/catalog.yaml" || p.DirectoryFile != "" || p.Reload != 5*time.Second {
		t.Errorf("process %+v", p)
	}
	s := c.Section("sink").(*sink.Config)
	if s.BatchRows != 5000 || s.BatchDelay != 250*time.Millisecond || s.BatchBytes != 16<<20 ||
		!reflect.DeepEqual(s.Retention, storage.Retention{"events": 30, "findings": 365}) {
		t.Errorf("sink %+v", s)
	}
	r := c.Section("respond").(*response.Config)
	if r.Threshold != 90 || r.RevokeFor != 15*time.Minute || r.MaxAge != time.Hour || r.WebhookSecretFrom != component.SecretFromEnv("SOAR_SECRET") {
		t.Errorf("respond %+v", r)
	}
	if d := c.Section("detect").(*detectors.Config); d.Rate.Window != 30*time.Second || d.Rate.Baseline != 2 {
		t.Errorf("detect %+v", d)
	}
	g := c.Section("gateway").(*gateway.Config)
	if g.Listen != "127.0.0.1:9787" || g.Tenant != "acme" || len(g.Upstreams) != 1 || g.Upstreams[0].URL != "https://crm.internal/mcp" ||
		g.Auth.OAuth.Issuer != "https://idp.example.com" || !reflect.DeepEqual(g.Auth.OAuth.Scopes, map[string][]string{"*": {"mcp:read"}, "db_query": {"mcp:db"}}) ||
		g.Auth.OAuth.Introspection.ClientSecret != (component.Secret{File: "/run/secrets/introspect"}) ||
		g.Policy.File != "/etc/mcpwatch/policy.yaml" || g.Policy.Reload != 2*time.Second ||
		g.Spool.Dir != "/var/lib/mcpwatch/spool" || g.Spool.Full != "fail_open" || g.Spool.Sync != "interval" ||
		!reflect.DeepEqual(g.Redact, []string{"*=pii"}) || !g.Masking || g.MaxBodyBytes != 4<<20 {
		t.Errorf("gateway %+v", g)
	}
	f := c.Section("forward").(*forward.Config)
	if f.Syslog.Address != "siem.example.com:6514" || f.Syslog.CAFile != "/etc/ssl/siem-ca.pem" || f.Syslog.Facility != "local4" ||
		f.Syslog.Transport != "tls" || !f.Findings || !reflect.DeepEqual(f.Sources, []event.Source{event.SourceMCP}) || f.Batch != 1000 {
		t.Errorf("forward %+v", f)
	}
}

func TestLoadEmpty(t *testing.T) {
	c, err := load(t, "config_empty.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def := NewConfig(Components())
	if !reflect.DeepEqual(c.Kafka, def.Kafka) || !reflect.DeepEqual(c.Components, def.Components) {
		t.Fatal("an empty file changed the defaults")
	}
	// Unasked, run starts the stages that need nothing more, not those that need a peer.
	if got := RunTypes(c); !reflect.DeepEqual(got, []component.Type{"process", "sink", "detect", "respond"}) {
		t.Fatalf("run %v", got)
	}
}

// Each broken file is refused with every problem, each at its file:line:column, in words for
// the person who wrote the YAML. The secret in a literal is never echoed.
func TestLoadErrors(t *testing.T) {
	for name, want := range map[string][]string{
		"config_unknown_key.yaml":     {"config_unknown_key.yaml:3:3: unknown key \"partitons\""},
		"config_unknown_section.yaml": {"config_unknown_section.yaml:1:1: unknown section \"sinks\" (known: kafka, clickhouse, telemetry, run, process, sink"},
		"config_bad_type.yaml":        {"config_bad_type.yaml:2:15: want a whole number, got a string"},
		"config_literal_secret.yaml":  {"config_literal_secret.yaml:2:13: a secret is never written in the config file"},
		"config_two_docs.yaml":        {"config_two_docs.yaml:3:1: more than one YAML document"},
		"config_duplicate.yaml":       {"config_duplicate.yaml:3:1: key \"sink\" given twice"},
		"config_syntax.yaml":          {"config_syntax.yaml:2:"},
		"config_bad_values.yaml": {
			"config_bad_values.yaml:2:15: kafka.partitions: must be at least 1, got 0",
			"config_bad_values.yaml:4:33: sink.retention.bogus: not a table retention applies to",
			"config_bad_values.yaml:4:23: sink.retention.events: days must be at least 1, got 0",
			"config_bad_values.yaml:6:14: respond.threshold: must be in [0, 100], got 120",
			"config_bad_values.yaml:10:15: forward.syslog.facility: syslog facility \"nope\"",
			"config_bad_values.yaml:11:18: forward.sources[1]: \"foo\": want mcp, otel or kernel",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, name)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\nlacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Error("the error echoes the secret")
			}
		})
	}
}

// A duration without a unit is refused rather than read as nanoseconds.
func TestDurationNeedsUnit(t *testing.T) {
	c := NewConfig(Components())
	err := c.Load("d.yaml", []byte("sink:\n  batch_delay: 5\n"))
	if err == nil || !strings.Contains(err.Error(), "d.yaml:2:16") {
		t.Fatalf("got %v", err)
	}
}

// Validation errors about values that did not come from the file name the setting, not a line.
func TestValidateDefaultsWithoutPosition(t *testing.T) {
	c := NewConfig(Components())
	c.Section("sink").(*sink.Config).BatchRows = 0 // as a flag would set it
	err := c.Validate([]string{"sink"})
	if err == nil || err.Error() != "sink.batch_rows: must be at least 1, got 0" {
		t.Fatalf("got %v", err)
	}
}

func TestRegistryComplete(t *testing.T) {
	r := Components()
	for _, typ := range r.Types() {
		f, err := r.Lookup(typ)
		if err != nil {
			t.Fatal(err)
		}
		cfg := f.CreateDefaultConfig()
		if reflect.ValueOf(cfg).Kind() != reflect.Pointer {
			t.Errorf("%s: default config %T is not a pointer: YAML and flags could not set it", typ, cfg)
		}
		if f.Section() == string(typ) {
			if err := cfg.Validate(); err != nil && f.Enabled(cfg) {
				t.Errorf("%s: an enabled default config does not validate: %v", typ, err)
			}
		}
	}
}

// The annotated example under deploy/ is what people copy: it must load and validate as
// documented, every section of it. (Its sandboxed upstream runs node: where node is missing,
// only that check may fail.)
func TestDeployExample(t *testing.T) {
	c := NewConfig(Components())
	if err := c.LoadFile("../deploy/mcpwatch.yaml"); err != nil {
		t.Fatal(err)
	}
	err := c.Validate(c.reg.Sections())
	for _, e := range component.Flatten(err) {
		if !strings.Contains(e.Error(), "forward.syslog.address") && !strings.Contains(e.Error(), `exec: "node"`) {
			t.Error(e)
		}
	}
	g := c.Section("gateway").(*gateway.Config)
	if len(g.Upstreams) != 2 || g.Upstreams[0].URL == "" || g.Upstreams[1].Command != "node" {
		t.Fatalf("example gateway: want a url upstream and a command upstream, got %+v", g.Upstreams)
	}
	// Every default the example shows is the real default: a comment that lies is worse than none.
	def := NewConfig(Components())
	if dg := def.Section("gateway").(*gateway.Config); len(g.TrustedProxies) != len(dg.TrustedProxies) {
		t.Errorf("the example's gateway.trusted_proxies %v is not the default %v", g.TrustedProxies, dg.TrustedProxies)
	}
	for _, s := range []string{"process", "sink", "detect", "respond", "forward"} {
		if s == "process" {
			continue // the example points at the demo's files
		}
		if !reflect.DeepEqual(c.Section(s), def.Section(s)) {
			t.Errorf("the example's %s section differs from the defaults:\n%+v\n%+v", s, c.Section(s), def.Section(s))
		}
	}
	if !reflect.DeepEqual(c.Kafka, def.Kafka) || !reflect.DeepEqual(c.Telemetry, def.Telemetry) || !reflect.DeepEqual(c.ClickHouse, def.ClickHouse) {
		t.Errorf("the example's shared sections differ from the defaults")
	}
}

// FuzzLoad: a config file is operator input, but a hostile or mangled one (a bad merge, a
// truncated ConfigMap) must yield an error, never a panic, and a file that loads must validate or
// be refused with an *Error.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/config_*.yaml")
	files = append(files, "../deploy/mcpwatch.yaml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("kafka: &a\n  brokers: [*a]\n"))
	f.Add([]byte("gateway:\n  upstreams:\n    - {name: a, route: /a, url: http://x}\n    - *b\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		c := NewConfig(Components())
		if err := c.Load("f.yaml", src); err != nil {
			return
		}
		for _, e := range component.Flatten(c.Validate(c.reg.Sections())) {
			var ce *Error
			if !errors.As(e, &ce) {
				t.Fatalf("validation error %T %v is not placed", e, e)
			}
		}
	})
}
