package source

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/component/componenttest"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Settings a person can get wrong are refused with the field to fix.
func TestConfigValidate(t *testing.T) {
	for name, c := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"spool full":         {func(c *Config) { c.Spool.Full = "sometimes" }, "spool.full"},
		"spool sync":         {func(c *Config) { c.Spool.Sync = "hourly" }, "spool.sync"},
		"spool size":         {func(c *Config) { c.Spool.MaxBytes = -1 }, "spool.max_bytes"},
		"policy and none":    {func(c *Config) { c.Policy.File, c.Policy.None = "p.yaml", true }, "policy.none"},
		"policy reload":      {func(c *Config) { c.Policy.Reload = 0 }, "policy.reload"},
		"pin mode":           {func(c *Config) { c.ToolPins.Mode = "sometimes" }, "tool_pins.mode"},
		"strict without pin": {func(c *Config) { c.ToolPins.Mode = "strict" }, "tool_pins.file"},
		"pins reload":        {func(c *Config) { c.ToolPins.Reload = -time.Second }, "tool_pins.reload"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mod(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want %q", err, c.want)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func produce(t *testing.T, brokers []string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// The source as the gateway and wrap use it: it follows the control and scores topics (risk
// unknown until the scores are loaded, then 0 for a principal never scored), loads the policy,
// and delivers audit events through the spool to the raw topic, all of them by Close. If this
// failed, a gateway could serve before revocations are known, or lose the events of its last
// calls at shutdown.
func TestSourceFollowsAndDelivers(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := event.TopicNames("fake")
	brokers := c.ListenAddrs()
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "setup"})
	if err != nil {
		t.Fatal(err)
	}
	if err := kafkaio.EnsureTopics(context.Background(), cl, kafkaio.Topics(names, 1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	revoke := event.Control{ID: event.NewID(), Time: time.Now(), Kind: event.ControlRevoke, Scope: event.ScopeSubject, Tenant: "acme", Value: "mallory", Reason: "test"}
	ctl, _ := kafkaio.RecordOf(names.Control, revoke.Key(), &revoke)
	sc := event.Score{Tenant: "acme", Subject: "bob", Score: 42, Time: time.Now()}
	scr, _ := kafkaio.RecordOf(names.Scores, sc.Key(), &sc)
	produce(t, brokers, ctl, scr)

	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte("version: 1\nrules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Spool.Dir, cfg.Policy.File = filepath.Join(dir, "spool"), policyFile
	src, err := Open(componenttest.Settings(t, "test", brokers, names), cfg, Options{FollowControl: true, FollowScores: true})
	if err != nil {
		t.Fatal(err)
	}
	if src.Policy == nil || src.Pins != nil {
		t.Fatalf("policy %v pins %v", src.Policy, src.Pins)
	}
	if _, known := src.Risk("acme", "bob"); known {
		t.Fatal("risk known before the scores topic was read")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := src.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-src.ControlLoaded():
	default:
		t.Fatal("ready but the control topic not loaded")
	}
	if r, known := src.Risk("acme", "bob"); !known || r != 42 {
		t.Fatalf("bob's risk %v %v", r, known)
	}
	if r, known := src.Risk("acme", "alice"); !known || r != 0 {
		t.Fatalf("a principal never scored: %v %v, want a known 0", r, known)
	}
	if _, revoked := src.Controls.Check("acme", event.Principal{Subject: "mallory"}, "s", "t", time.Now()); !revoked {
		t.Fatal("mallory's revocation not followed")
	}
	const n = 50
	for i := range n {
		src.Publisher.Publish(ctx, &event.Event{Schema: event.SchemaVersion, ID: event.NewID(), Time: time.Now(), Source: event.SourceMCP,
			Tenant: "acme", Principal: event.Principal{Subject: "alice"}, Attributes: map[string]string{"i": string(rune('a' + i%26))}})
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer fcancel()
	if err := src.Close(fctx); err != nil {
		t.Fatal(err)
	}
	rc, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "reader"}, kgo.ConsumeTopics(names.Raw),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := 0
	for got < n && fctx.Err() == nil {
		fs := rc.PollFetches(fctx)
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == "acme/alice" {
				got++
			}
		})
	}
	if got != n {
		t.Fatalf("%d of %d audit events on the raw topic after Close", got, n)
	}
}
