package mcp

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	good := Config{Upstream: "http://127.0.0.1:9000/mcp", ServerName: "files"}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, tc := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"no upstream":     {func(c *Config) { c.Upstream = "" }, "upstream URL is required"},
		"relative":        {func(c *Config) { c.Upstream = "/mcp" }, "want http(s)"},
		"other scheme":    {func(c *Config) { c.Upstream = "ftp://x/mcp" }, "want http(s)"},
		"password hidden": {func(c *Config) { c.Upstream = "ws://u:hunter2@x/" }, "u:xxxxx@"},
		"no server name":  {func(c *Config) { c.ServerName = "" }, "server name"},
		"negative limit":  {func(c *Config) { c.MaxBodyBytes = -1 }, "max body"},
	} {
		t.Run(name, func(t *testing.T) {
			c := good
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	d := good.withDefaults()
	if d.MaxBodyBytes != DefaultMaxBodyBytes || d.Tenant != DefaultTenant || d.MaxPending != DefaultMaxPending {
		t.Fatalf("defaults: %+v", d)
	}
}
