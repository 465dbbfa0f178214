package privacy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/internal/event"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	"github.com/mcpwatch/mcpwatch/storage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testDB is a throwaway database with this build's schema. The deployment's read-only user may
// read only the deployment database, so the reader here is the admin user with readonly=2 sent
// with every query: the server refuses writes through it as it does for mcpwatch_ro
// (TestReaderIsReadOnly), as long as the code under test never sends readonly itself, which
// privacy does not.
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

// seed stores events through the real sink stage (the same conversion the pipeline uses).
func (d *testDB) seed(t *testing.T, events []event.Event) {
	t.Helper()
	conn := d.open(t, nil)
	topics := event.TopicNames("seed")
	sink, err := storage.NewSink(context.Background(), conn, storage.SinkConfig{Database: d.name, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	for start := 0; start < len(events); start += 5000 {
		var recs []*kgo.Record
		for i := start; i < min(start+5000, len(events)); i++ {
			b, err := event.Encode(&events[i])
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: topics.Events, Value: b})
		}
		res, err := sink.Handle(context.Background(), recs)
		if err != nil || len(res.Dead) > 0 {
			t.Fatalf("seed: %v, dead %v", err, res.Dead)
		}
	}
}

var seedStart = time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)

// callEvent is a tools/call of tenant acme, i seconds after seedStart.
func callEvent(i int, tool string, latency float64) event.Event {
	return event.Event{
		ID: event.NewID(), Time: seedStart.Add(time.Duration(i) * time.Second), Source: event.SourceMCP, Tenant: "acme",
		Principal: event.Principal{Subject: fmt.Sprintf("user%d", i%50), ClientID: "claude-desktop"},
		MCP:       &event.MCP{Direction: event.DirResponse, Method: "tools/call", Tool: tool, LatencyMS: latency},
		Target:    event.Target{Server: "sales-db"},
		Outcome:   event.Outcome{Result: event.ResultAllowed, PolicyRule: "analysts"},
		Size:      event.Size{Request: 200, Response: 1000 + i%7},
		PII:       map[string]int{"email": i % 3},
	}
}
