package forward_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/forward"
	"github.com/mcpwatch/mcpwatch/normalize"
)

// The forwarding stage refuses configurations that would send nowhere, weaken TLS silently or
// produce messages a collector cannot parse, and says which setting to fix.
func TestStageConfigValidate(t *testing.T) {
	for name, c := range map[string]struct {
		mod  func(*forward.Config)
		want string
	}{
		"no address":          {func(*forward.Config) {}, "syslog.address: required"},
		"tls options on tcp":  {func(c *forward.Config) { c.Syslog.Transport, c.Syslog.CAFile = "tcp", "ca.pem" }, "TLS settings given with plain TCP"},
		"unknown transport":   {func(c *forward.Config) { c.Syslog.Transport = "udp" }, "want tls or tcp"},
		"cert without key":    {func(c *forward.Config) { c.Syslog.CertFile = "c.pem" }, "both the certificate and the key"},
		"bad facility":        {func(c *forward.Config) { c.Syslog.Facility = "local9" }, "syslog.facility: syslog facility"},
		"bad source":          {func(c *forward.Config) { c.Sources = []event.Source{"mcp", "smtp"} }, "sources[1]"},
		"bad severity":        {func(c *forward.Config) { c.MinSeverity = 11 }, "min_severity"},
		"hostname with space": {func(c *forward.Config) { c.Syslog.Hostname = "my host" }, "hostname"},
		"sd-id without PEN":   {func(c *forward.Config) { c.Syslog.SDID = "mcpwatch" }, "enterprise number"},
		"no batch":            {func(c *forward.Config) { c.Batch = 0 }, "batch"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := forward.DefaultConfig()
			if name != "no address" {
				cfg.Syslog.Address = "siem.example.com:6514"
			}
			c.mod(cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
	cfg := forward.DefaultConfig()
	if forward.NewFactory().Enabled(cfg) {
		t.Fatal("forwarding enabled without a collector")
	}
	cfg.Syslog.Address, cfg.Findings, cfg.Sources, cfg.MinSeverity = "siem.example.com:6514", true, []event.Source{"mcp", "kernel"}, 4
	if err := cfg.Validate(); err != nil || !forward.NewFactory().Enabled(cfg) {
		t.Fatalf("valid config: %v", err)
	}
}

// The finding renderer agrees with the forward stage's header reader: signature and severity
// (from the score) come back out of the line.
func TestFindingCEF(t *testing.T) {
	line := normalize.FindingCEF(event.Finding{ID: "f1", Time: time.Unix(1737536772, 0), Detector: "rate", Score: 86,
		Summary: "burst | x=y", Tenant: "acme", Principal: event.Principal{Subject: "mallory"}})
	sig, sev, ok := forward.Header(line)
	if !ok || sig != "MCP-6001" || sev != 9 {
		t.Fatalf("Header(%q) = %q %d %v", line, sig, sev, ok)
	}
	for _, want := range []string{"externalId=f1", "suser=mallory", `msg=burst | x\=y`, "cs1=rate", "cfp1=86"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
}
