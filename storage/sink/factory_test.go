package sink

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/storage"
)

// The sink's settings are refused with the field to fix, retention per table included; the
// factory's round trip to a real ClickHouse is the acceptance test's (package app).
func TestConfigValidate(t *testing.T) {
	for name, c := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"rows":               {func(c *Config) { c.BatchRows = 0 }, "batch_rows"},
		"bytes":              {func(c *Config) { c.BatchBytes = -1 }, "batch_bytes"},
		"delay":              {func(c *Config) { c.BatchDelay = -time.Second }, "batch_delay"},
		"insert timeout":     {func(c *Config) { c.InsertTimeout = time.Millisecond }, "insert_timeout"},
		"retention table":    {func(c *Config) { c.Retention = storage.Retention{"evnets": 3} }, "retention.evnets: not a table"},
		"retention days":     {func(c *Config) { c.Retention = storage.Retention{"events": 0} }, "retention.events: days must be at least 1"},
		"retention interval": {func(c *Config) { c.Retention, c.RetentionInterval = storage.Retention{"events": 3}, time.Second }, "retention_interval"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mod(cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want %q", err, c.want)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}
