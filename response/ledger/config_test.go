package ledger

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/component/componenttest"
	"github.com/mcpwatch/mcpwatch/event"
)

// Bad settings are refused with the field to fix; the ledger runs unasked only with a key, and a
// key file that is named but missing or not a key fails the build of the component, naming the
// field, without quoting the file. If this fails, `mcpwatch run` either starts a ledger that
// cannot sign or silently leaves the audit trail unwritten when the operator asked for one.
func TestConfig(t *testing.T) {
	for name, c := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"dedup":     {func(c *Config) { c.DedupWindow = 0 }, "dedup_window"},
		"batch":     {func(c *Config) { c.MaxBatch = 200_000 }, "max_batch"},
		"bothource": {func(c *Config) { c.Key = component.Secret{Env: "X", File: "y"} }, "key"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mod(cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want %q", err, c.want)
			}
		})
	}
	t.Setenv(KeyEnv, "")
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	f := NewFactory()
	if f.Enabled(cfg) {
		t.Fatal("enabled without a key")
	}
	dir := t.TempDir()
	cfg.Key = component.Secret{File: filepath.Join(dir, "missing.pem")}
	if !f.Enabled(cfg) {
		t.Fatal("a configured key file does not enable the ledger")
	}
	set := componenttest.Settings(t, Type, []string{"127.0.0.1:1"}, event.TopicNames("cfg"))
	if _, err := f.Create(context.Background(), set, cfg); err == nil || !strings.Contains(err.Error(), "key") {
		t.Fatalf("missing key file: %v", err)
	}
	notKey := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notKey, []byte("secret-looking text"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Key.File = notKey
	if _, err := f.Create(context.Background(), set, cfg); err == nil || strings.Contains(err.Error(), "secret-looking") {
		t.Fatalf("not a key: %v", err)
	}
	k := mustKey(t)
	pem, _ := k.MarshalPrivatePEM()
	t.Setenv(KeyEnv, string(pem))
	cfg = DefaultConfig()
	if !f.Enabled(cfg) {
		t.Fatal("a key in the environment does not enable the ledger")
	}
	c, err := f.Create(context.Background(), set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
