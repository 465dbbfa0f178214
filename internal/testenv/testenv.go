// Package testenv gives integration tests the real services started by `deploy/local/stack.sh`.
// Outside CI a missing service skips the test; under CI=true it fails it, so a CI run can never
// pass by not testing.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
)

// InCI reports whether tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing fails the test under CI and skips it otherwise.
func Missing(t testing.TB, service, why string) {
	t.Helper()
	msg := service + " not available (" + why + "); start it with `deploy/local/stack.sh start` and `eval \"$(deploy/local/stack.sh env)\"`"
	if InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Kafka returns the brokers of the real Kafka, checked reachable.
func Kafka(t testing.TB) []string {
	t.Helper()
	var brokers []string
	for _, b := range strings.Split(os.Getenv("MCPWATCH_KAFKA_BROKERS"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	if len(brokers) == 0 {
		Missing(t, "Kafka", "MCPWATCH_KAFKA_BROKERS is empty")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		Missing(t, "Kafka", err.Error())
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		Missing(t, "Kafka", "ping "+strings.Join(brokers, ",")+": "+err.Error())
	}
	return brokers
}

// Topics returns topic names unique to this test, so tests sharing one broker never see each
// other's records. Those the test created on the real broker are deleted when it ends: thousands
// of leftover topics would make every later broker start slow.
func Topics(t testing.TB) event.Topics {
	t.Helper()
	return event.TopicNames(TopicPrefix(t))
}

// TopicPrefix returns a topic prefix unique to this test, for commands that take
// --topic-prefix; the topics under it are deleted when the test ends, as with [Topics].
func TopicPrefix(t testing.TB) string {
	t.Helper()
	prefix := "test-" + Unique(t)
	t.Cleanup(func() { deleteTopics(t, event.TopicNames(prefix).All()) })
	return prefix
}

// deleteTopics removes topics from the broker MCPWATCH_KAFKA_BROKERS names, if any; topics the
// test never created are not an error.
func deleteTopics(t testing.TB, names []string) {
	brokers := strings.Split(os.Getenv("MCPWATCH_KAFKA_BROKERS"), ",")
	if brokers[0] == "" {
		return
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).DeleteTopics(ctx, names...)
	if err != nil {
		t.Logf("cleanup: delete topics: %v", err)
		return
	}
	for _, r := range resp {
		if r.Err != nil && !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
			t.Logf("cleanup: delete topic %s: %v", r.Topic, r.Err)
		}
	}
}

// Unique returns a short identifier unique to this test run, safe for topic and database names.
func Unique(t testing.TB) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return name + "_" + hex.EncodeToString(b[:])
}

// ClickHouseEnv is how to reach the real ClickHouse and as whom.
type ClickHouseEnv struct {
	Addr                     string
	Database                 string // the deployment database (for permission tests)
	AdminUser, AdminPassword string // creates and drops test databases
	User, Password           string // the writer
	ROUser, ROPassword       string // the read-only forensic user
}

// ClickHouse returns the real ClickHouse's address and credentials.
func ClickHouse(t testing.TB) ClickHouseEnv {
	t.Helper()
	e := ClickHouseEnv{
		Addr:          os.Getenv("MCPWATCH_CLICKHOUSE_ADDR"),
		Database:      envOr("MCPWATCH_CLICKHOUSE_DATABASE", "mcpwatch"),
		AdminUser:     envOr("MCPWATCH_CLICKHOUSE_ADMIN_USER", "default"),
		AdminPassword: os.Getenv("MCPWATCH_CLICKHOUSE_ADMIN_PASSWORD"),
		User:          envOr("MCPWATCH_CLICKHOUSE_USER", "mcpwatch"),
		Password:      os.Getenv("MCPWATCH_CLICKHOUSE_PASSWORD"),
		ROUser:        envOr("MCPWATCH_CLICKHOUSE_RO_USER", "mcpwatch_ro"),
		ROPassword:    os.Getenv("MCPWATCH_CLICKHOUSE_RO_PASSWORD"),
	}
	if e.Addr == "" {
		Missing(t, "ClickHouse", "MCPWATCH_CLICKHOUSE_ADDR is empty")
	}
	return e
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// WorldExecutable returns a copy of the test binary that any user may run, for tests that start
// it as a server under another user: the build directory is the builder's alone.
func WorldExecutable(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "mcpwatch-exe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	b, err := os.ReadFile(exe)
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	path := filepath.Join(dir, filepath.Base(exe))
	if err == nil {
		err = os.WriteFile(path, b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}
