package ueba

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	cases := map[string]struct {
		mod  func(*Config)
		want string
	}{
		"defaults":      {func(*Config) {}, ""},
		"gate zero":     {func(c *Config) { c.ConfidenceGate = 0 }, "confidence_gate"},
		"level 101":     {func(c *Config) { c.FindingLevel = 101 }, "finding_level"},
		"no principals": {func(c *Config) { c.MaxPrincipals = 0 }, "max_principals"},
		"glob all":      {func(c *Config) { c.EgressTools = []string{"**"} }, "egress_tools"},
		"bad check":     {func(c *Config) { c.Disabled = []string{"nope"} }, "disabled"},
		"no window":     {func(c *Config) { c.ExfilWindow = 0 }, "exfil_window"},
		"disable rate":  {func(c *Config) { c.Disabled = []string{"rate"}; c.Cooldown = time.Second }, ""},
	}
	for name, c := range cases {
		cfg := DefaultConfig()
		c.mod(&cfg)
		err := cfg.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: got %v, want %q", name, err, c.want)
		}
	}
	if len(Checks()) != nChecks || Checks()[0].Name != "rate" {
		t.Fatal(Checks())
	}
}

func TestGlobAndPrefix(t *testing.T) {
	for _, c := range []struct {
		pat, s string
		ok     bool
	}{{"*send_email*", "acme-mail/Send_Email", true}, {"*upload*", "s3/put", false}, {"*http_post*", "http_post", true}} {
		if globMatch(c.pat, c.s) != c.ok {
			t.Errorf("%q %q", c.pat, c.s)
		}
	}
	for in, want := range map[string]string{"s3://finance-data/q3/x.csv": "s3://finance-data/q3", "file:///reports/q3.pdf": "file:///reports", "file:///etc/shadow": "file:///etc"} {
		if got := resourcePrefix(in); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
