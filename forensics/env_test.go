package forensics

import (
	"context"
	"iter"
	"maps"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/internal/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	"github.com/mcpwatch/mcpwatch/storage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testDB is a throwaway database with this build's schema. The deployment's read-only user may
// read only the deployment database, so the reader here is the admin user with readonly=2 sent
// with every query: the server refuses writes through it as it does for mcpwatch_ro
// (TestReadOnlyUser), as long as the code under test never sends readonly itself, which
// forensics does not.
type testDB struct {
	name           string
	admin, reader  driver.Conn
	addr, user, pw string
}

func newTestDB(t *testing.T) *testDB {
	t.Helper()
	env := testenv.ClickHouse(t)
	ctx := context.Background()
	admin, err := storage.Open(ctx, storage.Options{Addr: env.Addr, User: env.AdminUser, Password: env.AdminPassword, DialTimeout: 5 * time.Second})
	if err != nil {
		testenv.Missing(t, "ClickHouse", err.Error())
	}
	t.Cleanup(func() { _ = admin.Close() })
	db := &testDB{name: "mcpwatch_test_" + testenv.Unique(t), admin: admin, addr: env.Addr, user: env.AdminUser, pw: env.AdminPassword}
	if err := storage.CreateDatabase(ctx, admin, db.name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := storage.DropDatabase(context.Background(), admin, db.name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if _, err := storage.Migrate(ctx, admin, db.name); err != nil {
		t.Fatal(err)
	}
	db.reader = db.open(t, clickhouse.Settings{"readonly": 2})
	return db
}

func (d *testDB) open(t *testing.T, settings clickhouse.Settings) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{d.addr}, Settings: settings,
		Auth: clickhouse.Auth{Database: d.name, Username: d.user, Password: d.pw}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// store writes the seed through the real sink stage (the conversion the pipeline uses), with
// mallory's events delivered twice, as a sink retry after a crash would.
func (d *testDB) store(t *testing.T, s seedData) {
	t.Helper()
	conn := d.open(t, nil)
	topics := event.TopicNames("seed")
	sink, err := storage.NewSink(context.Background(), conn, storage.SinkConfig{Database: d.name, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	add := func(topic string, b []byte, err error) {
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Value: b})
	}
	for i := range s.events {
		b, err := event.Encode(&s.events[i])
		add(topics.Events, b, err)
	}
	for i := range s.findings {
		b, err := event.Encode(&s.findings[i])
		add(topics.Findings, b, err)
	}
	for i := range s.actions {
		b, err := event.Encode(&s.actions[i])
		add(topics.Actions, b, err)
	}
	for _, batch := range [][]*kgo.Record{recs, recs[30+2 : 30+2+30]} { // the replay: mallory again
		// Like the stage, retry what failed in transit: the sink writes each record once, so a
		// retried batch stores nothing twice.
		var res kafkaio.Result
		var err error
		for attempt := 1; attempt <= 5; attempt++ {
			if res, err = sink.Handle(context.Background(), batch); err == nil {
				break
			}
			t.Logf("seed attempt %d: %v", attempt, err)
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil || len(res.Dead) > 0 {
			t.Fatalf("seed: %v, dead %v", err, res.Dead)
		}
	}
}

func storageQuery(ctx context.Context, d *testDB, sql string, args ...any) ([]string, [][]string, error) {
	return storage.QueryTable(ctx, d.reader, sql, args...)
}

func mapsKeys[V any](m map[string]V) iter.Seq[string] { return maps.Keys(m) }
