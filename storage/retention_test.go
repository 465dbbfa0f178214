package storage

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestParseRetention(t *testing.T) {
	r, err := ParseRetention(" events=90, findings=365d,events_minute=400 ")
	if err != nil || r.String() != "events=90,events_minute=400,findings=365" {
		t.Fatalf("%v %v", r, err)
	}
	for _, bad := range []string{"events", "events=0", "events=-1", "events=x", "profiles=30", "nope=3", "=3"} {
		if _, err := ParseRetention(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// On 18.16 retention drops whole day partitions, and only those entirely older than the limit:
// if it dropped one day too many, evidence would be lost; one too few, and storage grows without
// end. Events are backdated across days, around the boundary to the second.
func TestRetentionDropsOldDayPartitions(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	v, err := ServerVersion(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if FeaturesFor(v).TTL {
		t.Skipf("ClickHouse %s enforces retention by TTL; TestRetentionTTLOnChdb covers it", v)
	}
	s := newSink(t, conn, db)
	now := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	// With 3 days: 2026-11-20 is the first day kept (all of 11-19 is older than now-3d).
	times := map[string]time.Time{
		"old":           now.AddDate(0, 0, -10),
		"day before":    time.Date(2026, 11, 19, 23, 59, 59, 0, time.UTC),
		"first kept":    time.Date(2026, 11, 20, 0, 0, 1, 0, time.UTC),
		"yesterday":     now.AddDate(0, 0, -1),
		"today":         now,
		"another today": now.Add(-time.Hour),
	}
	var recs []*kgo.Record
	for i, name := range slices.Sorted(maps.Keys(times)) {
		e := sampleEvent(i)
		e.Time = times[name]
		e.MCP.Tool = name
		recs = append(recs, rec(t, testTopics.Events, &e))
	}
	if _, err := s.Handle(ctx, recs); err != nil {
		t.Fatal(err)
	}
	r := Retention{TableEvents: 3, "events_minute": 3, TableFindings: 3}

	dry, err := ApplyRetention(ctx, conn, db, r, now, true)
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events"); n != 6 {
		t.Fatalf("dry run dropped rows: %d left", n)
	}
	res, err := ApplyRetention(ctx, conn, db, r, now, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(dry, res, func(a, b RetentionResult) bool { return slices.Equal(a.Dropped, b.Dropped) }) {
		t.Errorf("dry run %v differs from the run %v", dry, res)
	}
	for _, rr := range res {
		want := []string{"20261113", "20261119"}
		if rr.Table == TableFindings {
			want = nil
		}
		if rr.TTL || !slices.Equal(rr.Dropped, want) {
			t.Errorf("%s: %+v, want dropped %v", rr.Table, rr, want)
		}
	}
	_, rows, err := QueryTable(ctx, conn, "SELECT tool FROM "+db+".events ORDER BY time")
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, r := range rows {
		kept = append(kept, r[0])
	}
	if strings.Join(kept, ",") != "first kept,yesterday,another today,today" {
		t.Fatalf("kept %v", kept)
	}
	if n := count(t, conn, "SELECT toUInt64(sum(calls)) FROM "+db+".events_per_minute"); n != 4 {
		t.Fatalf("aggregates keep %d calls, want the 4 of the kept days", n)
	}
	// Idempotent: a second run drops nothing more.
	again, err := ApplyRetention(ctx, conn, db, r, now, false)
	if err != nil || len(again) != 3 || len(again[0].Dropped)+len(again[1].Dropped)+len(again[2].Dropped) != 0 {
		t.Fatalf("second run %+v %v", again, err)
	}
}

// Newer servers get retention as a TTL the server enforces; the statements must be accepted by a
// current ClickHouse and really expire old rows.
func TestRetentionTTLOnChdb(t *testing.T) {
	const db = "mcpw"
	stmts := newerServerSchema(t, db)
	for _, table := range []string{TableEvents, TableFindings, TableActions, TableScores, "events_minute"} {
		stmts = append(stmts, ttlStatements(db, table, 30)...)
	}
	stmts = append(stmts,
		`INSERT INTO mcpw.events (id, time, time_ms, tenant, principal) VALUES ('old', now() - INTERVAL 40 DAY, 0, 'acme', 'alice'), ('new', now(), 0, 'acme', 'alice')`,
		`OPTIMIZE TABLE mcpw.events FINAL`,
	)
	_, res := chdb(t, stmts, []string{
		"SELECT id FROM mcpw.events ORDER BY id",
		"SELECT count() FROM system.tables WHERE database = 'mcpw' AND create_table_query LIKE '%TTL toDateTime(%) + toIntervalDay(30)%'",
	})
	if len(res) != 2 || len(res[0]) != 1 || res[0][0][0] != "new" || res[1][0][0] != "5" {
		t.Fatalf("after TTL: %q", res)
	}
}
