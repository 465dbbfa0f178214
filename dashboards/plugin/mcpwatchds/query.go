package mcpwatchds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/mcpwatch/mcpwatch/forensics"
	"github.com/mcpwatch/mcpwatch/privacy"
)

// Query types (a query's queryType).
const (
	QueryPrincipalTimeline = "principal_timeline"
	QueryInvestigation     = "investigation"
	QueryScoreExplanation  = "score_explanation"
	QueryEpsilonLedger     = "epsilon_ledger"
	QueryDPAggregate       = "dp_aggregate"
)

// Query is the JSON model of a panel's query (dashboards.PluginQuery writes the same).
type Query struct {
	// Subject of an investigation: principal, session, resource or sandbox.
	Subject string `json:"subject"`
	Tenant  string `json:"tenant"` // "" or "$__all": every tenant
	Value   string `json:"value"`  // the principal, session id, resource or sandbox
	Limit   int    `json:"limit"`
	// DP is the dp_aggregate question: aggregate (count, sum, mean), column, lower, upper,
	// filter, epsilon; tenant is the field above and the time range the panel's.
	DP privacy.Request `json:"dp"`
}

// errBadQuery marks a query the user can fix; Grafana shows it as a downstream error.
var errBadQuery = errors.New("bad query")

// QueryData answers each query on its own: one query's error does not fail the others.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	for _, q := range req.Queries {
		frames, err := d.query(ctx, req.PluginContext.User, q)
		if err != nil {
			src, st := backend.ErrorSourcePlugin, backend.StatusInternal
			switch {
			case errors.Is(err, errBadQuery) || errors.Is(err, forensics.ErrInvalid) ||
				errors.Is(err, privacy.ErrInvalidQuery) || errors.Is(err, privacy.ErrPoolTooSmall):
				src, st = backend.ErrorSourceDownstream, backend.StatusBadRequest
			case errors.Is(err, privacy.ErrBudgetExhausted):
				src, st = backend.ErrorSourceDownstream, backend.StatusTooManyRequests
			case errors.Is(err, errNoLogin):
				src, st = backend.ErrorSourceDownstream, backend.StatusUnauthorized
			}
			resp.Responses[q.RefID] = backend.DataResponse{Error: err, ErrorSource: src, Status: st}
			continue
		}
		resp.Responses[q.RefID] = backend.DataResponse{Frames: frames}
	}
	return resp, nil
}

func (d *Datasource) query(ctx context.Context, user *backend.User, dq backend.DataQuery) (data.Frames, error) {
	var q Query
	if len(dq.JSON) > 0 {
		if err := json.Unmarshal(dq.JSON, &q); err != nil {
			return nil, fmt.Errorf("%w: %v", errBadQuery, err)
		}
	}
	if q.Tenant == "$__all" || q.Tenant == "All" {
		q.Tenant = ""
	}
	if q.Limit <= 0 || q.Limit > d.settings.MaxRows {
		q.Limit = d.settings.MaxRows
	}
	w := forensics.Window{Since: dq.TimeRange.From.UTC(), Until: dq.TimeRange.To.UTC()}
	switch dq.QueryType {
	case QueryPrincipalTimeline:
		q.Subject = string(forensics.Principal)
		return d.investigate(ctx, q, w)
	case QueryInvestigation:
		return d.investigate(ctx, q, w)
	case QueryScoreExplanation:
		return d.scoreExplanation(ctx, q, w)
	case QueryEpsilonLedger:
		return d.epsilonLedger(ctx, q, w)
	case QueryDPAggregate:
		return d.dpAggregate(ctx, user, q, w)
	}
	return nil, fmt.Errorf("%w: queryType %q: want %s", errBadQuery, dq.QueryType,
		strings.Join([]string{QueryPrincipalTimeline, QueryInvestigation, QueryScoreExplanation, QueryEpsilonLedger, QueryDPAggregate}, ", "))
}

// investigate runs a forensics investigation and returns its timeline and its summary.
func (d *Datasource) investigate(ctx context.Context, q Query, w forensics.Window) (data.Frames, error) {
	sub, err := forensics.ParseSubject(q.Subject)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadQuery, err)
	}
	tl, err := forensics.Investigate(ctx, d.conn, d.settings.Database,
		forensics.Query{Subject: sub, Value: q.Value, Tenant: q.Tenant, Window: w, Limit: q.Limit})
	if err != nil {
		return nil, err
	}
	n := len(tl.Entries)
	f := data.NewFrame("timeline",
		data.NewField("time", nil, make([]time.Time, n)),
		data.NewField("kind", nil, make([]string, n)),
		data.NewField("tenant", nil, make([]string, n)),
		data.NewField("principal", nil, make([]string, n)),
		data.NewField("signature", nil, make([]string, n)),
		data.NewField("what", nil, make([]string, n)),
		data.NewField("outcome", nil, make([]string, n)),
		data.NewField("score", nil, make([]*float64, n)),
		data.NewField("detail", nil, make([]string, n)),
		data.NewField("session", nil, make([]string, n)),
		data.NewField("sandbox", nil, make([]string, n)),
		data.NewField("id", nil, make([]string, n)),
	)
	for i, e := range tl.Entries {
		f.SetRow(i, e.Time.UTC(), e.Kind, e.Tenant, e.Principal, e.Signature, e.What, e.Outcome, e.Score, e.Detail, e.Session, e.Sandbox, e.ID)
	}
	f.Meta = &data.FrameMeta{Custom: map[string]any{"truncated": tl.Truncated}}
	s := tl.Summary
	sum := data.NewFrame("summary",
		data.NewField("events", nil, []uint64{s.Events}),
		data.NewField("denials", nil, []uint64{s.Denials}),
		data.NewField("kernel_events", nil, []uint64{s.KernelEvents}),
		data.NewField("findings", nil, []uint64{s.Findings}),
		data.NewField("actions", nil, []uint64{s.Actions}),
		data.NewField("sessions", nil, []uint64{s.Sessions}),
		data.NewField("highest_score", nil, []float64{s.HighestScore}),
		data.NewField("principals", nil, []string{strings.Join(s.Principals, ", ")}),
		data.NewField("tools", nil, []string{strings.Join(s.Tools, ", ")}),
	)
	return data.Frames{f, sum}, nil
}

// scoreExplanation returns the latest score of a principal in the window with one row per
// piece of evidence.
const scoreExplanationSQL = `
SELECT time, score, explanation, e.detector, e.check, e.component, e.feature, e.value, e.contribution,
       e.observed, e.baseline, e.baseline_source, e.peer_percentile, e.detail, arrayStringConcat(e.event_ids, ',')
FROM %[1]s.scores_dedup
ARRAY JOIN evidence AS e
WHERE time >= ? AND time <= ? AND subject = ? AND (? = '' OR tenant = ?)
  AND (tenant, subject, time) IN
      (SELECT tenant, subject, max(time) FROM %[1]s.scores_dedup
       WHERE time >= ? AND time <= ? AND subject = ? AND (? = '' OR tenant = ?) GROUP BY tenant, subject)
ORDER BY e.contribution DESC
LIMIT ?`

func (d *Datasource) scoreExplanation(ctx context.Context, q Query, w forensics.Window) (data.Frames, error) {
	if strings.TrimSpace(q.Value) == "" {
		return nil, fmt.Errorf("%w: score_explanation needs the principal in value", errBadQuery)
	}
	args := []any{w.Since, w.Until, q.Value, q.Tenant, q.Tenant}
	args = append(append(args, args...), q.Limit)
	rows, err := d.conn.Query(ctx, fmt.Sprintf(scoreExplanationSQL, d.settings.Database), args...)
	if err != nil {
		return nil, fmt.Errorf("score explanation: %w", err)
	}
	defer rows.Close()
	f := data.NewFrame("score_explanation",
		data.NewField("time", nil, []time.Time{}), data.NewField("score", nil, []float64{}),
		data.NewField("explanation", nil, []string{}), data.NewField("detector", nil, []string{}),
		data.NewField("check", nil, []string{}), data.NewField("component", nil, []string{}),
		data.NewField("feature", nil, []string{}), data.NewField("value", nil, []float64{}),
		data.NewField("contribution", nil, []float64{}), data.NewField("observed", nil, []float64{}),
		data.NewField("baseline", nil, []float64{}), data.NewField("baseline_source", nil, []string{}),
		data.NewField("peer_percentile", nil, []*float64{}), data.NewField("detail", nil, []string{}),
		data.NewField("event_ids", nil, []string{}))
	for rows.Next() {
		var (
			t                                                  time.Time
			score, value, contrib, observed, baseline, pctl    float64
			expl, det, check, comp, feat, src, detail, eventID string
		)
		if err := rows.Scan(&t, &score, &expl, &det, &check, &comp, &feat, &value, &contrib, &observed, &baseline, &src, &pctl, &detail, &eventID); err != nil {
			return nil, fmt.Errorf("score explanation: %w", err)
		}
		var p *float64
		if pctl == pctl { // NaN: no peer group
			p = &pctl
		}
		f.AppendRow(t.UTC(), score, expl, det, check, comp, feat, value, contrib, observed, baseline, src, p, detail, eventID)
	}
	return data.Frames{f}, rows.Err()
}

// epsilonLedger sums what each analyst spent of the differential-privacy budget in the window;
// the ledger's rows are read once each (GROUP BY id), as the privacy engine reads them.
const epsilonLedgerSQL = `
SELECT who, sum(eps) AS spent, countIf(st = 'answered') AS answered,
       countIf(st = 'released') AS released, max(at) AS last
FROM (SELECT id, any(analyst) AS who, any(epsilon) AS eps, any(status) AS st, any(time) AS at
      FROM %s.privacy_budget WHERE time >= ? AND time <= ? AND (? = '' OR analyst = ?) GROUP BY id)
GROUP BY who
ORDER BY spent DESC
LIMIT ?`

func (d *Datasource) epsilonLedger(ctx context.Context, q Query, w forensics.Window) (data.Frames, error) {
	rows, err := d.conn.Query(ctx, fmt.Sprintf(epsilonLedgerSQL, d.settings.Database), w.Since, w.Until, q.Value, q.Value, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("epsilon ledger: %w", err)
	}
	defer rows.Close()
	f := data.NewFrame("epsilon_ledger",
		data.NewField("analyst", nil, []string{}), data.NewField("spent_epsilon", nil, []float64{}),
		data.NewField("answered", nil, []uint64{}), data.NewField("released", nil, []uint64{}),
		data.NewField("last", nil, []time.Time{}))
	for rows.Next() {
		var (
			analyst            string
			spent              float64
			answered, released uint64
			last               time.Time
		)
		if err := rows.Scan(&analyst, &spent, &answered, &released, &last); err != nil {
			return nil, fmt.Errorf("epsilon ledger: %w", err)
		}
		f.AppendRow(analyst, spent, answered, released, last.UTC())
	}
	return data.Frames{f}, rows.Err()
}

// errNoLogin: a dp_aggregate without a Grafana user to charge.
var errNoLogin = errors.New("no Grafana login")

// dpAggregate answers a differential-privacy count, sum or mean over the events of the panel's
// time range with the privacy engine (Laplace noise, the 10,000-record pool rule, the ε ledger),
// charged to "grafana:<login>" of the Grafana user who asks. The analyst comes from Grafana's
// request context only; the query JSON cannot name it. Refusals (pool too small, budget spent,
// invalid question) are downstream errors carrying the engine's reason.
func (d *Datasource) dpAggregate(ctx context.Context, user *backend.User, q Query, w forensics.Window) (data.Frames, error) {
	if d.dp == nil {
		return nil, fmt.Errorf("%w: dp_aggregate is off for this datasource: configure dpUser and its password (see dashboards/README.md)", errBadQuery)
	}
	if user == nil || strings.TrimSpace(user.Login) == "" {
		return nil, fmt.Errorf("%w: dp_aggregate charges the ε budget of the Grafana user who asks, and this request carries none", errNoLogin)
	}
	r := q.DP
	r.Analyst = "grafana:" + user.Login
	r.Tenant = q.Tenant
	r.Since, r.Until = w.Since, w.Until
	a, err := d.dp.Query(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("dp_aggregate for %s: %w", r.Analyst, err)
	}
	f := data.NewFrame("dp_aggregate",
		data.NewField("value", nil, []float64{a.Value}),
		data.NewField("aggregate", nil, []string{string(a.Aggregate)}),
		data.NewField("column", nil, []string{a.Column}),
		data.NewField("epsilon", nil, []float64{a.Epsilon}),
		data.NewField("spent_epsilon", nil, []float64{a.Spent}),
		data.NewField("remaining_epsilon", nil, []float64{a.Remaining}),
		data.NewField("mechanism", nil, []string{"laplace"}),
		data.NewField("sensitivity", nil, []float64{a.Sensitivity}),
		data.NewField("scale", nil, []float64{a.Scale}),
		data.NewField("error95", nil, []float64{a.Error95}),
		data.NewField("analyst", nil, []string{r.Analyst}),
		data.NewField("ledger_id", nil, []string{a.ID}),
		data.NewField("query", nil, []string{a.Query}),
	)
	return data.Frames{f}, nil
}
