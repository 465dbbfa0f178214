package forensics

import (
	"context"
	"iter"
	"maps"
	"testing"

	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/chtest"
	"github.com/mcpwatch/mcpwatch/storage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// store writes the seed through the real sink stage (the conversion the pipeline uses), with
// mallory's events delivered twice, as a sink retry after a crash would.
func store(t *testing.T, db *chtest.DB, s seedData) {
	t.Helper()
	topics := event.TopicNames("seed")
	recs := chtest.Records(t, topics.Events, s.events)
	recs = append(recs, chtest.Records(t, topics.Findings, s.findings)...)
	recs = append(recs, chtest.Records(t, topics.Actions, s.actions)...)
	recs = append(recs, chtest.Records(t, topics.Scores, s.scores)...)
	recs = append(recs, chtest.Records(t, topics.Profiles, s.profiles)...)
	db.Store(t, topics, recs, recs[30+2:30+2+30]) // the replay: mallory again
}

func storageQuery(ctx context.Context, d *chtest.DB, sql string, args ...any) ([]string, [][]string, error) {
	return storage.QueryTable(ctx, d.Reader, sql, args...)
}

func mapsKeys[V any](m map[string]V) iter.Seq[string] { return maps.Keys(m) }
