package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Scores from the scores topic land in the scores table with their components; a tombstone on
// that compacted topic is skipped, not dead-lettered; a replayed score is not written twice.
func TestSinkWritesScores(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	s := newSink(t, conn, db)
	sc := sampleScore(0)
	r := rec(t, testTopics.Scores, &sc)
	tomb := &kgo.Record{Topic: testTopics.Scores, Key: []byte("acme/bob")}
	for range 2 {
		res, err := s.Handle(ctx, []*kgo.Record{r, tomb})
		if err != nil || len(res.Dead) != 0 {
			t.Fatalf("res %+v err %v", res, err)
		}
	}
	var (
		id, tenant, subject string
		score               float64
		names               []string
		values              []float64
		tm                  time.Time
		timeMS              uint64
	)
	err := conn.QueryRow(ctx, "SELECT id, tenant, subject, score, component_names, component_values, time, time_ms FROM "+db+".scores").
		Scan(&id, &tenant, &subject, &score, &names, &values, &tm, &timeMS)
	if err != nil {
		t.Fatal(err)
	}
	if id != ScoreID(&sc) || tenant != "acme" || subject != "alice" || score != 42.5 ||
		!slices.Equal(names, []string{"frequency", "sensitivity", "user_risk"}) || !slices.Equal(values, []float64{0.9, 0.75, 0.2}) ||
		!tm.Equal(sc.Time.Truncate(time.Second)) || timeMS != uint64(sc.Time.UnixMilli()) {
		t.Errorf("score read back as %s %s %s %v %v %v %v %d", id, tenant, subject, score, names, values, tm, timeMS)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".scores"); n != 1 {
		t.Fatalf("%d score rows after a replay, want 1", n)
	}
}

// At-least-once delivery hands the sink the same records again after a crash or a retry. The
// sink must not write them again (the per-minute aggregates would count them twice), including
// repeats inside one batch. Copies that do get in by another way (two writers racing) must still
// read back once through the dedup views and FINAL.
func TestSinkReplayWritesOnce(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	s := newSink(t, conn, db)
	var recs []*kgo.Record
	for i := range 50 {
		e := sampleEvent(i)
		e.Principal.Subject = []string{"alice", "bob"}[i%2]
		recs = append(recs, rec(t, testTopics.Events, &e))
	}
	recs = append(recs, recs[3]) // the same record twice in one recs
	f := sampleFinding()
	a := sampleAction(f.ID)
	sc := sampleScore(1)
	recs = append(recs, rec(t, testTopics.Findings, &f), rec(t, testTopics.Actions, &a), rec(t, testTopics.Scores, &sc))

	for range 3 {
		if res, err := s.Handle(ctx, recs); err != nil || len(res.Dead) != 0 {
			t.Fatalf("res %+v err %v", res, err)
		}
	}
	for table, want := range map[string]uint64{"events": 50, "findings": 1, "actions": 1, "scores": 1} {
		if n := count(t, conn, "SELECT count() FROM "+db+"."+table); n != want {
			t.Errorf("%s without FINAL: %d rows after three deliveries, want %d", table, n, want)
		}
	}
	if n := count(t, conn, "SELECT toUInt64(sum(calls)) FROM "+db+".events_per_minute"); n != 50 {
		t.Errorf("dashboard counts %d calls, want 50", n)
	}

	// A second writer racing the first gets past the lookup: force the copies in.
	var ev eventRows
	for _, r := range recs[:50] {
		var e event.Event
		if err := event.Decode(r.Value, &e); err != nil {
			t.Fatal(err)
		}
		if err := ev.add(&e, r.Value, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.insert(ctx, &batch{table: TableEvents, cols: ev.columns(), recs: recs[:50]}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events"); n != 100 {
		t.Fatalf("forced copies: %d rows, want 100 (else the rest proves nothing)", n)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events_dedup"); n != 50 {
		t.Errorf("events_dedup: %d rows, want 50", n)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events FINAL WHERE tenant = 'acme' AND principal = 'alice'"); n != 25 {
		t.Errorf("FINAL with a key filter: %d rows, want 25", n)
	}
	if err := conn.Exec(ctx, "OPTIMIZE TABLE "+db+".events FINAL"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events"); n != 50 {
		t.Fatalf("after merge: %d rows, want 50", n)
	}
}

// One row the server refuses fails the whole INSERT on 18.16. The sink must find it by bisection,
// dead-letter only that record with the server's reason, and store every other row once. The
// refusal is made real with a column the server computes on INSERT and that throws for one tool
// (as a CHECK constraint does on newer servers), so nothing is written before the refusal.
func TestSinkBisectsPoisonRows(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	if err := conn.Exec(ctx, "ALTER TABLE "+db+".events ADD COLUMN poison_check UInt8 MATERIALIZED throwIf(tool = 'poison')"); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, conn, db)
	var batch []*kgo.Record
	poisoned := map[int]bool{17: true, 61: true, 62: true}
	for i := range 100 {
		e := sampleEvent(i)
		if poisoned[i] {
			e.MCP.Tool = "poison"
		}
		batch = append(batch, rec(t, testTopics.Events, &e))
	}
	res, err := s.Handle(ctx, batch)
	if err != nil {
		t.Fatalf("a refused row failed the batch: %v", err)
	}
	var got []int
	for _, d := range res.Dead {
		i := slices.Index(batch, d.Record)
		got = append(got, i)
		var ex *clickhouse.Exception
		if !kafkaio.IsPermanent(d.Reason) || !errors.As(d.Reason, &ex) || ex.Code != 395 ||
			!strings.Contains(d.Reason.Error(), fmt.Sprintf("@%d", d.Record.Offset)) {
			t.Errorf("dead letter %d: %v; want a permanent error carrying the server's exception 395", i, d.Reason)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []int{17, 61, 62}) {
		t.Fatalf("dead-lettered %v, want [17 61 62]", got)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".events"); n != 97 {
		t.Fatalf("%d rows stored, want the 97 good ones", n)
	}
	if n := count(t, conn, "SELECT uniqExact(id) FROM "+db+".events"); n != 97 {
		t.Fatalf("%d distinct ids, want 97", n)
	}
}

// Which failures bisect: only those that blame the data. A server or network problem must retry
// the batch, never dead-letter it.
func TestIsRowData(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&clickhouse.Exception{Code: 395}, true},
		{&clickhouse.Exception{Code: 6}, true},
		{fmt.Errorf("wrapped: %w", &clickhouse.Exception{Code: 469}), true},
		{fmt.Errorf("column x: %w: %w", errRowData, errors.New("converting")), true},
		{&clickhouse.Exception{Code: 252}, false}, // TOO_MANY_PARTS
		{&clickhouse.Exception{Code: 241}, false}, // MEMORY_LIMIT_EXCEEDED
		{&clickhouse.Exception{Code: 60}, false},  // UNKNOWN_TABLE
		{&clickhouse.Exception{Code: 16}, false},  // NO_SUCH_COLUMN_IN_TABLE
		{&clickhouse.Exception{Code: 497}, false}, // ACCESS_DENIED
		{&clickhouse.Exception{Code: 9999}, false},
		{context.DeadlineExceeded, false},
		{errors.New("read: connection reset by peer"), false},
	} {
		if got := isRowData(c.err); got != c.want {
			t.Errorf("%v: %v, want %v", c.err, got, c.want)
		}
	}
}

// The dashboard aggregates must agree with the events they summarise: per minute, tool and
// result, the calls, denied, bytes and latency quantiles from events_per_minute equal the same
// figures computed from the events table.
func TestDashboardAggregates(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	s := newSink(t, conn, db)
	var batch []*kgo.Record
	for i := range 300 {
		e := sampleEvent(i) // one per second: five minutes
		e.MCP.Tool = []string{"db_query", "send_mail", "read_file"}[i%3]
		e.Outcome.Result = []event.Result{event.ResultAllowed, event.ResultAllowed, event.ResultDenied, event.ResultError}[i%4]
		e.MCP.LatencyMS = float64(i % 50)
		e.Size.Request = i
		batch = append(batch, rec(t, testTopics.Events, &e))
	}
	// In two INSERTs, so the aggregate table holds two partial rows per key until it merges.
	for _, part := range [][]*kgo.Record{batch[:150], batch[150:]} {
		if _, err := s.Handle(ctx, part); err != nil {
			t.Fatal(err)
		}
	}
	want := func(q string) [][]string {
		_, rows, err := QueryTable(ctx, conn, q)
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	fromView := want(`SELECT minute, tool, toString(result), calls, denied, errors, request_bytes, arrayMap(x -> round(x, 3), latency_ms_p50_p90_p99)
		FROM ` + db + `.events_per_minute ORDER BY minute, tool, result`)
	fromEvents := want(`SELECT toStartOfMinute(time) AS minute, tool, toString(result), count(), countIf(result = 'denied'), countIf(result = 'error'),
		sum(request_bytes), arrayMap(x -> round(x, 3), quantilesTDigestIf(0.5, 0.9, 0.99)(latency_ms, toUInt8(latency_ms > 0)))
		FROM ` + db + `.events FINAL GROUP BY minute, tool, result ORDER BY minute, tool, result`)
	if len(fromView) < 20 || !slices.EqualFunc(fromView, fromEvents, slices.Equal[[]string]) {
		t.Fatalf("events_per_minute:\n%v\nfrom events:\n%v", fromView, fromEvents)
	}
	if n := count(t, conn, "SELECT toUInt64(sum(denied)) FROM "+db+".events_per_minute WHERE tenant = 'acme'"); n != 75 {
		t.Fatalf("denied %d, want 75", n)
	}
}

// The write-once lookup runs before every INSERT, so its cost must follow the batch, not the
// table: it may read the granules of the batch's principals in the batch's time window, never a
// granule of every principal of the tenant (which, in a tenant with thousands of principals,
// would be most of a day's partition per batch).
func TestSinkLookupReadsTheBatchsPrincipals(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	const principals, total = 64, 64 * 20_000
	if err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.events (id, tenant, principal, time, time_ms)
		SELECT toString(number), 'acme', concat('p-', toString(number %% %d)), toDateTime('2026-11-23 00:00:00', 'UTC') + intDiv(number, %d), 0
		FROM system.numbers LIMIT %d`, db, principals, principals, total)); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, conn, db)
	var recs []*kgo.Record
	for i := range 2 {
		e := sampleEvent(i)
		e.Principal.Subject = fmt.Sprintf("p-%d", i+1)
		e.Time = time.Date(2026, 11, 23, 2, 0, i, 0, time.UTC)
		recs = append(recs, rec(t, testTopics.Events, &e))
	}
	var rows eventRows
	for _, r := range recs {
		var e event.Event
		if err := event.Decode(r.Value, &e); err != nil {
			t.Fatal(err)
		}
		if err := rows.add(&e, r.Value, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	var read uint64
	pctx := clickhouse.Context(ctx, clickhouse.WithProgress(func(p *clickhouse.Progress) { read += p.Rows }))
	stored, err := s.stored(pctx, &batch{table: TableEvents, cols: rows.columns(), recs: recs})
	if err != nil || len(stored) != 0 {
		t.Fatalf("stored %v err %v", stored, err)
	}
	if read == 0 || read > 8*8192 {
		t.Fatalf("the lookup of 2 events read %d of %d rows; want a few granules of their 2 principals", read, total)
	}
	t.Logf("lookup read %d of %d rows", read, total)
}
