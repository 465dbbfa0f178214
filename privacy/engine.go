// Package privacy answers aggregate questions about MCP audit events with differential privacy:
// count, sum and mean over the events table with Laplace noise at a chosen ε (default 0.5), a
// refusal when fewer than 10,000 records match, and a per-analyst privacy budget kept in a
// ClickHouse ledger. `mcpwatch query --dp` is one caller; [Engine.Query] is the API a Grafana
// backend plugin (or any service that authenticates its analysts) calls. docs/privacy.md explains
// the guarantees and their limits.
package privacy

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/storage"
)

// Defaults of the source document and of mcpwatch.
const (
	// DefaultEpsilon is the per-query ε of the source document.
	DefaultEpsilon = 0.5
	// MinPool is the fewest records a query's filter must match to be answered at all.
	MinPool = 10_000
	// DefaultBudget is the ε an analyst may spend per period unless configured otherwise.
	DefaultBudget = 5.0
	// DefaultPeriod is the rolling accounting window of the budget.
	DefaultPeriod = 30 * 24 * time.Hour
)

// Errors an [Engine] returns; each wraps one of these sentinels.
var (
	// ErrBudgetExhausted: answering would take the analyst over their budget for the period.
	ErrBudgetExhausted = errors.New("privacy budget exhausted")
	// ErrPoolTooSmall: fewer than [MinPool] records match; nothing is released.
	ErrPoolTooSmall = errors.New("pool too small for a private answer")
)

// Aggregate is what a request computes.
type Aggregate string

const (
	Count Aggregate = "count" // records matching the filter; sensitivity 1
	Sum   Aggregate = "sum"   // sum of a column clamped to [Lower, Upper]; sensitivity max(|Lower|, |Upper|)
	Mean  Aggregate = "mean"  // noisy clamped sum / noisy count, ε split evenly between them
)

// valueColumns are the numeric event columns sum and mean may aggregate, with the SQL that
// reads each. pii_count is the number of masked PII items in the event.
var valueColumns = map[string]string{
	"request_bytes":    "request_bytes",
	"response_bytes":   "response_bytes",
	"latency_ms":       "latency_ms",
	"severity":         "severity",
	"sensitivity":      "sensitivity",
	"span_duration_ms": "span_duration_ms",
	"pii_count":        "arraySum(pii_counts)",
}

// Request is one noisy aggregate question. Its JSON form is the query model a dashboard plugin
// sends.
type Request struct {
	// Analyst is who spends the budget. A service sets it from its own authentication, never
	// from the request body.
	Analyst   string    `json:"-"`
	Aggregate Aggregate `json:"aggregate"`
	// Column is the value column of sum and mean (request_bytes, response_bytes, latency_ms,
	// severity, sensitivity, span_duration_ms, pii_count); empty for count.
	Column string `json:"column,omitempty"`
	// Lower and Upper clamp every value before summing: they bound one record's influence, so
	// the analyst must choose them (sum and mean only).
	Lower float64 `json:"lower,omitempty"`
	Upper float64 `json:"upper,omitempty"`
	// Filter is a condition on event columns in the grammar of [ParseFilter].
	Filter string `json:"filter,omitempty"`
	// Tenant, if set, restricts the pool to one tenant.
	Tenant string `json:"tenant,omitempty"`
	// Since and Until bound the event time, [Since, Until); zero means unbounded.
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Epsilon is the ε this answer spends; 0 means [DefaultEpsilon].
	Epsilon float64 `json:"epsilon,omitempty"`
}

// Answer is a released, noisy value and what it cost.
type Answer struct {
	Aggregate Aggregate `json:"aggregate"`
	Column    string    `json:"column,omitempty"`
	Value     float64   `json:"value"`   // the noisy answer; the only value derived from the data
	Epsilon   float64   `json:"epsilon"` // ε spent by this answer
	// Sensitivity and Scale describe the noise on the released count or sum (for mean, on the
	// sum; the count gets scale 2/ε).
	Sensitivity float64 `json:"sensitivity"`
	Scale       float64 `json:"scale"`
	// Error95 is the half-width of an interval that holds the noise with 95% probability
	// (Scale·ln 20); for mean, an approximation through the noisy count.
	Error95   float64 `json:"error95"`
	Spent     float64 `json:"spent"`     // ε spent by the analyst in the period, this answer included
	Remaining float64 `json:"remaining"` // budget left in the period
	ID        string  `json:"id"`        // the ledger reservation
	Query     string  `json:"query"`     // canonical text, as the ledger records it
}

// Config configures an [Engine].
type Config struct {
	Database string        // where events and privacy_budget are; validated
	Budget   float64       // ε per analyst per Period; 0 means DefaultBudget
	Period   time.Duration // rolling accounting window; 0 means DefaultPeriod
	// Noise draws the noise; the zero value uses crypto/rand.
	Noise Laplace
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Engine answers [Request]s. The analytic query runs on the reader connection, which should be
// the read-only ClickHouse user; the ledger is written and summed on the writer connection,
// because the read-only user cannot write. An Engine is safe for concurrent use, and so are
// Engines in different processes sharing one ledger (see [Engine.Query]).
type Engine struct {
	reader, writer driver.Conn
	cfg            Config
}

//go:embed sql/*.sql
var sqlFS embed.FS

func sqlText(name, database string, repl ...string) string {
	b, err := sqlFS.ReadFile("sql/" + name + ".sql")
	if err != nil {
		panic(err) // embedded at build time
	}
	r := strings.NewReplacer(append([]string{"${database}", database}, repl...)...)
	var lines []string
	for l := range strings.Lines(r.Replace(string(b))) {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "")
}

// New returns an Engine. It does not check the schema; the first query fails with the server's
// error if privacy_budget is missing (run `mcpwatch migrate`).
func New(reader, writer driver.Conn, cfg Config) (*Engine, error) {
	if reader == nil || writer == nil {
		return nil, errors.New("privacy: reader and writer connections are required")
	}
	if err := storage.ValidIdentifier(cfg.Database); err != nil {
		return nil, fmt.Errorf("privacy: database: %w", err)
	}
	if cfg.Budget == 0 {
		cfg.Budget = DefaultBudget
	}
	if cfg.Period == 0 {
		cfg.Period = DefaultPeriod
	}
	if !(cfg.Budget > 0) || math.IsInf(cfg.Budget, 0) || cfg.Period < 0 {
		return nil, fmt.Errorf("privacy: budget %v and period %s must be positive", cfg.Budget, cfg.Period)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Engine{reader: reader, writer: writer, cfg: cfg}, nil
}

// prepared is a validated request.
type prepared struct {
	req         Request
	value       string // SQL of the value column, "0" for count
	where       string
	args        []any
	sensitivity float64 // of the sum (count: 1)
	text        string
}

func (e *Engine) prepare(r Request) (*prepared, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidQuery, fmt.Sprintf(format, args...))
	}
	r.Analyst = strings.TrimSpace(r.Analyst)
	if r.Analyst == "" || len(r.Analyst) > 256 || !utf8.ValidString(r.Analyst) {
		return nil, bad("analyst must be 1–256 bytes of UTF-8 (it is who spends the budget)")
	}
	if r.Epsilon == 0 {
		r.Epsilon = DefaultEpsilon
	}
	if !(r.Epsilon > 0) || r.Epsilon > e.cfg.Budget || math.IsInf(r.Epsilon, 0) {
		return nil, bad("ε %v must be in (0, %v] (the whole budget)", r.Epsilon, e.cfg.Budget)
	}
	p := &prepared{req: r, value: "0", sensitivity: 1}
	switch r.Aggregate {
	case Count:
		if r.Column != "" || r.Lower != 0 || r.Upper != 0 {
			return nil, bad("count takes no column or bounds")
		}
		p.req.Lower, p.req.Upper = 0, 0
	case Sum, Mean:
		expr, ok := valueColumns[r.Column]
		if !ok {
			return nil, bad("%s needs a value column: one of request_bytes, response_bytes, latency_ms, severity, sensitivity, span_duration_ms, pii_count (got %q)", r.Aggregate, r.Column)
		}
		if math.IsNaN(r.Lower) || math.IsNaN(r.Upper) || math.IsInf(r.Lower, 0) || math.IsInf(r.Upper, 0) || !(r.Lower < r.Upper) {
			return nil, bad("%s needs finite clamping bounds lower < upper (got [%v, %v]); they bound how much one record can move the answer", r.Aggregate, r.Lower, r.Upper)
		}
		p.value = expr
		p.sensitivity = math.Max(math.Abs(r.Lower), math.Abs(r.Upper))
	default:
		return nil, bad("aggregate %q: want count, sum or mean", r.Aggregate)
	}
	f, err := ParseFilter(r.Filter)
	if err != nil {
		return nil, err
	}
	if !r.Since.IsZero() && !r.Until.IsZero() && !r.Since.Before(r.Until) {
		return nil, bad("since %s is not before until %s", r.Since.Format(time.RFC3339), r.Until.Format(time.RFC3339))
	}
	var conds []string
	var text []string
	if r.Tenant != "" {
		conds = append(conds, "tenant = ?")
		p.args = append(p.args, r.Tenant)
		text = append(text, "tenant = "+quote(r.Tenant))
	}
	if !r.Since.IsZero() {
		conds = append(conds, "time >= ?")
		p.args = append(p.args, r.Since.UTC())
		text = append(text, "time >= '"+r.Since.UTC().Format(time.DateTime)+"'")
	}
	if !r.Until.IsZero() {
		conds = append(conds, "time < ?")
		p.args = append(p.args, r.Until.UTC())
		text = append(text, "time < '"+r.Until.UTC().Format(time.DateTime)+"'")
	}
	fsql, fargs := f.SQL()
	conds = append(conds, fsql)
	p.args = append(p.args, fargs...)
	if f.String() != "" {
		text = append(text, f.String())
	}
	p.where = strings.Join(conds, " AND ")
	agg := string(r.Aggregate) + "()"
	if r.Aggregate != Count {
		agg = fmt.Sprintf("%s(clamp(%s, %v, %v))", r.Aggregate, r.Column, r.Lower, r.Upper)
	}
	p.text = agg + " FROM events"
	if len(text) > 0 {
		p.text += " WHERE " + strings.Join(text, " AND ")
	}
	p.text += fmt.Sprintf(" ε=%v", r.Epsilon)
	return p, nil
}

// Validate checks a request without touching data or budget, as [Engine.Query] would.
func (e *Engine) Validate(r Request) error {
	_, err := e.prepare(r)
	return err
}

// Query answers one request, or refuses it.
//
// Budget protocol, safe for concurrent queries of one analyst from any number of processes:
//
//  1. insert a reservation of +ε into the ledger;
//  2. sum the analyst's ledger over the period; if it exceeds the budget, insert a release (-ε)
//     and refuse with [ErrBudgetExhausted] (or retry, if the excess is other queries in flight);
//  3. run the aggregate on the reader; if it fails, or fewer than [MinPool] records match
//     ([ErrPoolTooSmall]), release the reservation and refuse;
//  4. add Laplace noise, record the answer, release the value.
//
// Why no two concurrent queries can overspend: a release is inserted after its reservation, so
// every sum counts each query's net contribution as ε or 0, never less; and every answered
// query's sum in step 2 ran after its own reservation became visible. Take the answered query
// whose reservation became visible last: its sum saw every answered reservation, and was within
// budget, so the answered queries together are within budget. Concurrent queries can at worst
// both see the other's reservation and step back; a query refused only because of reservations
// still in flight retries a few times after a random pause. A process that dies after step 1 leaves its reservation spent: the ledger fails closed.
// Visibility after INSERT holds on one ClickHouse server; on replicated tables the ledger needs
// insert_quorum and select_sequential_consistency (docs/privacy.md).
func (e *Engine) Query(ctx context.Context, r Request) (Answer, error) {
	p, err := e.prepare(r)
	if err != nil {
		return Answer{}, err
	}
	for attempt := 1; ; attempt++ {
		a, err := e.query(ctx, p)
		if !errors.Is(err, errContended) {
			return a, err
		}
		// Refused only because other queries of this analyst were in flight: once they settle
		// there may be room. Wait a random while (so racing queries spread out) and try again.
		if attempt == contendedRetries {
			return Answer{}, fmt.Errorf("%w: %d attempts collided with concurrent queries of analyst %q; try again",
				ErrBudgetExhausted, attempt, p.req.Analyst)
		}
		select {
		case <-ctx.Done():
			return Answer{}, ctx.Err()
		case <-time.After(time.Duration(attempt) * (20*time.Millisecond + rand.N(100*time.Millisecond))):
		}
	}
}

// contendedRetries bounds the attempts of a query refused only because of concurrent ones.
const contendedRetries = 5

// errContended: over budget counting reservations of queries still in flight, within budget
// without them.
var errContended = errors.New("budget contended")

func (e *Engine) query(ctx context.Context, p *prepared) (Answer, error) {
	r := p.req
	now := e.cfg.Now().UTC().Truncate(time.Millisecond)
	res := ledgerRow{id: event.NewID(), time: now, analyst: r.Analyst, epsilon: r.Epsilon, status: "reserved", query: p.text}
	res.reservation = res.id
	if err := e.record(ctx, res); err != nil {
		return Answer{}, fmt.Errorf("privacy: reserve ε: %w", err)
	}
	release := func(why string, cause error) error {
		rel := res
		rel.id, rel.epsilon, rel.status, rel.detail = event.NewID(), -r.Epsilon, "released", why
		// Release even if the caller's context is done: an unreleased reservation is only lost
		// budget, but there is no reason to lose it.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := e.record(rctx, rel); err != nil {
			return fmt.Errorf("%w (and releasing its reservation failed, so it stays spent: %v)", cause, err)
		}
		if cause == nil {
			return nil
		}
		return cause
	}
	spent, err := e.spent(ctx, r.Analyst, now)
	if err != nil {
		return Answer{}, release("budget check failed", fmt.Errorf("privacy: %w", err))
	}
	if spent > e.cfg.Budget+1e-9 {
		err := release("budget exceeded", nil)
		if err != nil {
			return Answer{}, err
		}
		// Would it fit once the queries in flight settle? Only then is a retry worth it.
		if after, err := e.spent(ctx, r.Analyst, now); err == nil && after+r.Epsilon <= e.cfg.Budget+1e-9 {
			return Answer{}, errContended
		}
		return Answer{}, fmt.Errorf("%w: analyst %q has %.3g of %.3g ε left in the %s window, this query needs %.3g",
			ErrBudgetExhausted, r.Analyst, math.Max(0, e.cfg.Budget-(spent-r.Epsilon)), e.cfg.Budget, e.cfg.Period, r.Epsilon)
	}
	pool, total, err := e.aggregate(ctx, p)
	if err != nil {
		return Answer{}, release("query failed", fmt.Errorf("privacy: %w", err))
	}
	if pool < MinPool {
		// The refusal depends on the exact pool size; docs/privacy.md says what it reveals.
		return Answer{}, release("pool under 10000", fmt.Errorf("%w: fewer than %d records match", ErrPoolTooSmall, MinPool))
	}
	a, err := e.noisy(p, float64(pool), total)
	if err != nil {
		return Answer{}, release("noise failed", fmt.Errorf("privacy: %w", err))
	}
	a.ID, a.Query, a.Spent, a.Remaining = res.id, p.text, spent, math.Max(0, e.cfg.Budget-spent)
	ans := res
	ans.id, ans.epsilon, ans.status, ans.detail = event.NewID(), 0, "answered", fmt.Sprintf("%v", a.Value)
	if err := e.record(ctx, ans); err != nil {
		// The reservation stands, so the budget is charged; only the audit row is missing.
		return Answer{}, fmt.Errorf("privacy: record answer %s: %w", res.id, err)
	}
	return a, nil
}

// noisy adds Laplace noise to the true pool size and clamped sum.
func (e *Engine) noisy(p *prepared, pool, total float64) (Answer, error) {
	r := p.req
	a := Answer{Aggregate: r.Aggregate, Column: r.Column, Epsilon: r.Epsilon, Sensitivity: p.sensitivity}
	switch r.Aggregate {
	case Count:
		a.Scale = 1 / r.Epsilon
		n, err := e.cfg.Noise.Sample(a.Scale)
		if err != nil {
			return a, err
		}
		a.Value = math.Round(pool + n)
		a.Error95 = a.Scale * math.Log(20)
	case Sum:
		a.Scale = p.sensitivity / r.Epsilon
		n, err := e.cfg.Noise.Sample(a.Scale)
		if err != nil {
			return a, err
		}
		a.Value = snap(total+n, a.Scale)
		a.Error95 = a.Scale * math.Log(20)
	case Mean:
		// Half of ε for the sum, half for the count: the two releases compose to ε.
		a.Scale = p.sensitivity / (r.Epsilon / 2)
		ns, err := e.cfg.Noise.Sample(a.Scale)
		if err != nil {
			return a, err
		}
		nc, err := e.cfg.Noise.Sample(1 / (r.Epsilon / 2))
		if err != nil {
			return a, err
		}
		count := math.Max(1, pool+nc)
		mean := math.Min(math.Max((total+ns)/count, r.Lower), r.Upper)
		a.Value = snap(mean, a.Scale/count)
		a.Error95 = a.Scale * math.Log(20) / count
	}
	return a, nil
}

func (e *Engine) aggregate(ctx context.Context, p *prepared) (uint64, float64, error) {
	q := sqlText("aggregate", e.cfg.Database, "${value}", p.value, "${where}", p.where)
	args := append([]any{p.req.Lower, p.req.Upper}, p.args...)
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": 120}))
	var (
		pool  uint64
		total float64
	)
	if err := e.reader.QueryRow(ctx, q, args...).Scan(&pool, &total); err != nil {
		return 0, 0, fmt.Errorf("aggregate over %s.events: %w", e.cfg.Database, err)
	}
	return pool, total, nil
}

// Spent returns the ε analyst has spent in the current accounting window.
func (e *Engine) Spent(ctx context.Context, analyst string) (float64, error) {
	return e.spent(ctx, analyst, e.cfg.Now().UTC())
}

// Remaining returns the ε analyst may still spend in the current accounting window.
func (e *Engine) Remaining(ctx context.Context, analyst string) (float64, error) {
	s, err := e.Spent(ctx, analyst)
	if err != nil {
		return 0, err
	}
	return math.Max(0, e.cfg.Budget-s), nil
}

func (e *Engine) spent(ctx context.Context, analyst string, now time.Time) (float64, error) {
	var s float64
	err := e.writer.QueryRow(ctx, sqlText("spent", e.cfg.Database), analyst, now.Add(-e.cfg.Period).Truncate(time.Second)).Scan(&s)
	if err != nil {
		return 0, fmt.Errorf("sum privacy budget ledger %s.privacy_budget: %w", e.cfg.Database, err)
	}
	return s, nil
}

type ledgerRow struct {
	id, reservation, analyst, status, query, detail string
	time                                            time.Time
	epsilon                                         float64
}

// record inserts one ledger row as the writer. Batch INSERT with named columns (18.16).
func (e *Engine) record(ctx context.Context, r ledgerRow) error {
	b, err := e.writer.PrepareBatch(ctx, "INSERT INTO "+e.cfg.Database+
		".privacy_budget (id, reservation, time, time_ms, analyst, epsilon, status, mechanism, query, detail)")
	if err != nil {
		return fmt.Errorf("ledger %s.privacy_budget: %w", e.cfg.Database, err)
	}
	defer func() { _ = b.Close() }()
	if err := b.Append(r.id, r.reservation, r.time.Truncate(time.Second), uint64(r.time.UnixMilli()),
		r.analyst, r.epsilon, r.status, "laplace", r.query, r.detail); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("ledger %s.privacy_budget: %w", e.cfg.Database, err)
	}
	return nil
}
