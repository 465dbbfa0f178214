package privacy

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/chtest"
)

// poolDB seeds 10,000 calls of tool "common" (latency 0..1999 ms), 9,999 of tool "rare", and 600
// replayed copies of "rare" events (at-least-once delivery writes them twice).
func poolDB(t *testing.T) *chtest.DB {
	t.Helper()
	db := chtest.New(t)
	var evs []event.Event
	for i := range 10_000 {
		evs = append(evs, callEvent(i, "common", float64(i%2000)))
	}
	for i := range 9_999 {
		evs = append(evs, callEvent(i, "rare", 5))
	}
	evs = append(evs, evs[10_000:10_600]...) // replays: same ids
	seed(t, db, evs)
	return db
}

// trueClampedSum is the exact sum of the "common" latencies clamped to [0, 1000].
func trueClampedSum() float64 {
	var s float64
	for i := range 10_000 {
		s += math.Min(float64(i%2000), 1000)
	}
	return s
}

func newEngine(t *testing.T, db *chtest.DB, budget float64) *Engine {
	t.Helper()
	e, err := New(db.Reader, db.Admin, Config{Database: db.Name, Budget: budget, Period: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// The source document's floor: a pool under 10,000 records gets no answer (replayed duplicates
// do not count twice), 10,000 do; answers are close to the truth at ε = 0.5 and clamping bounds
// one record's influence; refusals cost no budget.
func TestPoolFloorAndAnswers(t *testing.T) {
	db := poolDB(t)
	e := newEngine(t, db, 10)
	ctx := context.Background()

	_, err := e.Query(ctx, Request{Analyst: "ann", Aggregate: Count, Filter: "tool = 'rare'"})
	if !errors.Is(err, ErrPoolTooSmall) {
		t.Fatalf("9,999 records (plus 600 replays): got %v, want ErrPoolTooSmall", err)
	}
	if s, _ := e.Spent(ctx, "ann"); s != 0 {
		t.Fatalf("a refused query spent %v", s)
	}
	a, err := e.Query(ctx, Request{Analyst: "ann", Aggregate: Count, Filter: "tool = 'common'", Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	// Laplace(0, 2): |noise| > 40 has probability e^-20.
	if math.Abs(a.Value-10_000) > 40 || a.Value != math.Round(a.Value) || a.Scale != 2 || a.Epsilon != DefaultEpsilon {
		t.Fatalf("count answer %+v", a)
	}
	// Both tools together: 19,999 distinct records.
	a, err = e.Query(ctx, Request{Analyst: "ann", Aggregate: Count, Filter: "tool IN ('common', 'rare')"})
	if err != nil || math.Abs(a.Value-19_999) > 40 {
		t.Fatalf("count of both: %+v %v", a, err)
	}

	// sum(clamp(latency, 0, 1000)): Δ = 1000, scale 2000 at ε 0.5, so |noise| < 40,000 with
	// probability 1 - e^-20. Without clamping the sum would be 9,995,000, far outside.
	want := trueClampedSum()
	a, err = e.Query(ctx, Request{Analyst: "ann", Aggregate: Sum, Column: "latency_ms", Lower: 0, Upper: 1000, Filter: "tool = 'common'"})
	if err != nil || math.Abs(a.Value-want) > 40_000 || a.Sensitivity != 1000 || a.Scale != 2000 {
		t.Fatalf("sum: %+v %v (true %v)", a, err, want)
	}
	// mean: true 749.95; noise of the sum (scale 4000) over ~10,000 records: well under 20.
	a, err = e.Query(ctx, Request{Analyst: "ann", Aggregate: Mean, Column: "latency_ms", Lower: 0, Upper: 1000, Filter: "tool = 'common'"})
	if err != nil || math.Abs(a.Value-want/10_000) > 20 {
		t.Fatalf("mean: %+v %v (true %v)", a, err, want/10_000)
	}
	// A window that leaves fewer than 10,000 records is refused like any small pool.
	_, err = e.Query(ctx, Request{Analyst: "ann", Aggregate: Count, Filter: "tool = 'common'",
		Since: seedStart, Until: seedStart.Add(9999 * time.Second)})
	if !errors.Is(err, ErrPoolTooSmall) {
		t.Fatalf("windowed: %v", err)
	}
	if s, _ := e.Spent(ctx, "ann"); math.Abs(s-4*DefaultEpsilon) > 1e-9 {
		t.Fatalf("spent %v after 4 answers at ε 0.5", s)
	}
	// A literal crafted to break out of its quotes is just a value that matches nothing.
	_, err = e.Query(ctx, Request{Analyst: "ann", Aggregate: Count, Filter: `tool = 'x\' OR 1=1 OR tool = \'common'`})
	if !errors.Is(err, ErrPoolTooSmall) {
		t.Fatalf("injection attempt: %v", err)
	}
}

// Spending until refused: a budget of 2 buys exactly four answers at ε 0.5; the fifth query and
// a query needing more than what is left are refused, and the ledger says so.
func TestBudgetExhaustion(t *testing.T) {
	db := poolDB(t)
	e := newEngine(t, db, 2)
	ctx := context.Background()
	req := Request{Analyst: "bob", Aggregate: Count, Filter: "tool = 'common'"}
	for i := range 3 {
		a, err := e.Query(ctx, req)
		if err != nil {
			t.Fatalf("query %d: %v", i+1, err)
		}
		if want := 2 - float64(i+1)*0.5; math.Abs(a.Remaining-want) > 1e-9 {
			t.Fatalf("query %d: remaining %v, want %v", i+1, a.Remaining, want)
		}
	}
	big := req
	big.Epsilon = 1
	if _, err := e.Query(ctx, big); !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("ε 1 with 0.5 left: %v", err)
	}
	if _, err := e.Query(ctx, req); err != nil {
		t.Fatalf("last 0.5: %v", err)
	}
	if _, err := e.Query(ctx, req); !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("fifth query: %v", err)
	}
	if r, _ := e.Remaining(ctx, "bob"); r != 0 {
		t.Fatalf("remaining %v", r)
	}
	// Another analyst has their own budget.
	if _, err := e.Query(ctx, Request{Analyst: "carol", Aggregate: Count, Filter: "tool = 'common'"}); err != nil {
		t.Fatal(err)
	}
	counts := ledgerCounts(t, db.Admin, db.Name, "bob")
	if counts["reserved"] != 6 || counts["released"] != 2 || counts["answered"] != 4 {
		t.Fatalf("ledger rows %v, want 6 reserved, 2 released, 4 answered", counts)
	}
	// A period later the budget is back (rolling window).
	later, _ := New(db.Reader, db.Admin, Config{Database: db.Name, Budget: 2, Period: 24 * time.Hour,
		Now: func() time.Time { return time.Now().Add(25 * time.Hour) }})
	if r, _ := later.Remaining(ctx, "bob"); r != 2 {
		t.Fatalf("remaining a period later %v", r)
	}
}

func ledgerCounts(t *testing.T, conn driver.Conn, db, analyst string) map[string]int {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT status, count() FROM "+db+".privacy_budget FINAL WHERE analyst = ? GROUP BY status", analyst)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n uint64
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		out[s] = int(n)
	}
	return out
}

// Concurrent queries of one analyst, through two engines as if from two processes, must never
// spend more than the budget; and refusals caused by the race give the budget back, so the
// analyst can still spend exactly all of it afterwards.
func TestConcurrentSpendNeverOverspends(t *testing.T) {
	db := poolDB(t)
	engines := []*Engine{newEngine(t, db, 2), newEngine(t, db, 2)}
	ctx := context.Background()
	req := Request{Analyst: "dave", Aggregate: Count, Filter: "tool = 'common'"}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		answered int
	)
	for i := range 12 {
		wg.Go(func() {
			_, err := engines[i%2].Query(ctx, req)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				answered++
			case !errors.Is(err, ErrBudgetExhausted):
				t.Errorf("query: %v", err)
			}
		})
	}
	wg.Wait()
	if answered > 4 {
		t.Fatalf("%d concurrent answers at ε 0.5 with a budget of 2", answered)
	}
	if answered == 0 {
		t.Fatal("every concurrent query was refused: contention retries do not work")
	}
	spent, err := engines[0].Spent(ctx, "dave")
	if err != nil || math.Abs(spent-float64(answered)*0.5) > 1e-9 {
		t.Fatalf("spent %v after %d answers (%v)", spent, answered, err)
	}
	t.Logf("%d of 12 concurrent queries answered", answered)
	for answered < 4 {
		if _, err := engines[1].Query(ctx, req); err != nil {
			t.Fatalf("after the race, answer %d: %v", answered+1, err)
		}
		answered++
	}
	if _, err := engines[0].Query(ctx, req); !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("over budget after the race: %v", err)
	}
}

// The engine's reader must be unable to write, enforced by the server: an INSERT through it
// fails with ClickHouse's READONLY code (164). (That a client cannot lift readonly itself holds
// for mcpwatch_ro, whose profile sets it; forensics' TestReadOnlyUser checks that user.)
func TestReaderIsReadOnly(t *testing.T) {
	db := chtest.New(t)
	ctx := context.Background()
	b, err := db.Reader.PrepareBatch(ctx, "INSERT INTO "+db.Name+".privacy_budget (id, analyst, epsilon)")
	if err == nil {
		defer func() { _ = b.Close() }()
		if err = b.Append("x", "eve", -100.0); err == nil {
			err = b.Send()
		}
	}
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) || ex.Code != 164 {
		t.Fatalf("INSERT through the reader: %v, want server exception 164", err)
	}
	// An engine whose "writer" is read-only cannot reserve, so it answers nothing (fail closed).
	e, _ := New(db.Reader, db.Reader, Config{Database: db.Name})
	if _, err := e.Query(ctx, Request{Analyst: "eve", Aggregate: Count}); !errors.As(err, &ex) || ex.Code != 164 {
		t.Fatalf("engine with a read-only writer: %v", err)
	}
}

// Requests the engine must refuse before reserving anything.
func TestRequestValidation(t *testing.T) {
	e, err := New(nopConn{}, nopConn{}, Config{Database: "db", Budget: 2})
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]Request{
		"no analyst":        {Aggregate: Count},
		"bad aggregate":     {Analyst: "a", Aggregate: "median"},
		"count with column": {Analyst: "a", Aggregate: Count, Column: "latency_ms"},
		"sum no column":     {Analyst: "a", Aggregate: Sum, Lower: 0, Upper: 1},
		"sum bad column":    {Analyst: "a", Aggregate: Sum, Column: "raw", Lower: 0, Upper: 1},
		"sum no bounds":     {Analyst: "a", Aggregate: Sum, Column: "latency_ms"},
		"sum inverted":      {Analyst: "a", Aggregate: Mean, Column: "latency_ms", Lower: 5, Upper: 1},
		"sum infinite":      {Analyst: "a", Aggregate: Sum, Column: "latency_ms", Lower: 0, Upper: math.Inf(1)},
		"negative ε":        {Analyst: "a", Aggregate: Count, Epsilon: -1},
		"ε over budget":     {Analyst: "a", Aggregate: Count, Epsilon: 3},
		"bad filter":        {Analyst: "a", Aggregate: Count, Filter: "1; SELECT 1"},
		"empty window":      {Analyst: "a", Aggregate: Count, Since: seedStart, Until: seedStart},
	} {
		if _, err := e.Query(context.Background(), r); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("%s: %v, want ErrInvalidQuery", name, err)
		}
	}
	if _, err := New(nopConn{}, nopConn{}, Config{Database: "a;b"}); err == nil {
		t.Error("bad database accepted")
	}
	if _, err := New(nopConn{}, nopConn{}, Config{Database: "a", Budget: -1}); err == nil {
		t.Error("negative budget accepted")
	}
}

// nopConn fails the test's expectations loudly if the engine touches it.
type nopConn struct{ driver.Conn }
