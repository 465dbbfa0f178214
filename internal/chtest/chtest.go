// Package chtest gives integration tests a throwaway ClickHouse database with this build's
// schema on the server started by `deploy/local/stack.sh`, and a way to fill it through the real
// sink. Like internal/testenv, a missing server skips the test outside CI and fails it under
// CI=true.
package chtest

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	"github.com/mcpwatch/mcpwatch/storage"
)

// DB is a migrated database dropped when the test ends. The deployment's read-only user may
// read only the deployment database, so Reader is the admin user with readonly=2 sent with every
// query: the server refuses writes through it as it does for mcpwatch_ro, as long as the code
// under test never sends readonly itself.
type DB struct {
	Name          string
	Admin, Reader driver.Conn

	addr, user, pw string
}

// New creates and migrates a database unique to t.
func New(t *testing.T) *DB {
	t.Helper()
	env := testenv.ClickHouse(t)
	ctx := context.Background()
	admin, err := storage.Open(ctx, storage.Options{Addr: env.Addr, User: env.AdminUser, Password: env.AdminPassword, DialTimeout: 5 * time.Second})
	if err != nil {
		testenv.Missing(t, "ClickHouse", err.Error())
	}
	t.Cleanup(func() { _ = admin.Close() })
	db := &DB{Name: "mcpwatch_test_" + testenv.Unique(t), Admin: admin, addr: env.Addr, user: env.AdminUser, pw: env.AdminPassword}
	if err := storage.CreateDatabase(ctx, admin, db.Name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := storage.DropDatabase(context.Background(), admin, db.Name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if _, err := storage.Migrate(ctx, admin, db.Name); err != nil {
		t.Fatal(err)
	}
	db.Reader = db.Open(t, clickhouse.Settings{"readonly": 2})
	return db
}

// Open returns another connection to the database as the admin user with settings.
func (d *DB) Open(t *testing.T, settings clickhouse.Settings) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{d.addr}, Settings: settings,
		Auth: clickhouse.Auth{Database: d.Name, Username: d.user, Password: d.pw}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Store writes records through the real sink (the conversion the pipeline uses), in batches as
// given. Like the stage, it retries a batch that failed in transit: the sink writes each record
// once, so a retried batch stores nothing twice. Any dead letter fails the test.
func (d *DB) Store(t *testing.T, topics event.Topics, batches ...[]*kgo.Record) {
	t.Helper()
	sink, err := storage.NewSink(context.Background(), d.Open(t, nil), storage.SinkConfig{Database: d.Name, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	for _, batch := range batches {
		var res kafkaio.Result
		for attempt := 1; attempt <= 5; attempt++ {
			if res, err = sink.Handle(context.Background(), batch); err == nil {
				break
			}
			t.Logf("store attempt %d: %v", attempt, err)
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil || len(res.Dead) > 0 {
			t.Fatalf("store: %v, dead %v", err, res.Dead)
		}
	}
}

// Records encodes values as records of topic.
func Records[T event.Record](t *testing.T, topic string, values []T) []*kgo.Record {
	t.Helper()
	out := make([]*kgo.Record, len(values))
	for i := range values {
		b, err := event.Encode(&values[i])
		if err != nil {
			t.Fatal(err)
		}
		out[i] = &kgo.Record{Topic: topic, Value: b}
	}
	return out
}
