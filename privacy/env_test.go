package privacy

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/chtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// seed stores events through the real sink stage (the same conversion the pipeline uses).
func seed(t *testing.T, db *chtest.DB, events []event.Event) {
	t.Helper()
	topics := event.TopicNames("seed")
	recs := chtest.Records(t, topics.Events, events)
	var batches [][]*kgo.Record
	for start := 0; start < len(recs); start += 5000 {
		batches = append(batches, recs[start:min(start+5000, len(recs))])
	}
	db.Store(t, topics, batches...)
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
