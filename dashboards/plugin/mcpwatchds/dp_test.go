package mcpwatchds

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/chtest"
	"github.com/mcpwatch/mcpwatch/storage"
)

// dpDay is the day of the differential-privacy seed.
var dpDay = time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)

const (
	dpAcme = 10_200 // events of tenant acme: a pool large enough to answer
	dpTiny = 40     // events of tenant tiny: under the 10,000-record rule
)

// seedDP stores dpAcme tools/call events of tenant acme and dpTiny of tenant tiny on dpDay
// through the real sink, with latency_ms = i mod 100.
func seedDP(t *testing.T, db *chtest.DB) {
	t.Helper()
	topics := event.TopicNames("dpseed")
	var evs []event.Event
	for i := range dpAcme + dpTiny {
		tenant := "acme"
		if i >= dpAcme {
			tenant = "tiny"
		}
		tm := dpDay.Add(time.Duration(i) * time.Second)
		evs = append(evs, event.Event{ID: event.NewID(), Time: tm, Source: event.SourceMCP, Tenant: tenant,
			Principal: event.Principal{Subject: fmt.Sprintf("user%d", i%50)},
			MCP:       &event.MCP{Direction: event.DirResponse, Method: "tools/call", Tool: "db_query", LatencyMS: float64(i % 100)},
			Target:    event.Target{Server: "sales-db"},
			Outcome:   event.Outcome{Result: event.ResultAllowed}})
	}
	recs := chtest.Records(t, topics.Events, evs)
	var batches [][]*kgo.Record
	for start := 0; start < len(recs); start += 5000 {
		batches = append(batches, recs[start:min(start+5000, len(recs))])
	}
	db.Store(t, topics, batches...)
}

// dpContext is a datasource whose DP path uses the admin user as dpUser: on ClickHouse 18.16
// (the local stack) no user can be limited to the ledger table, so the fallback is a writer.
func dpContext(t *testing.T, db *chtest.DB, id int64, login string, budget float64) backend.PluginContext {
	t.Helper()
	pc := pluginContext(t, db, "unused", "Viewer")
	pc.User.Login = login
	m := map[string]any{}
	if err := json.Unmarshal(pc.DataSourceInstanceSettings.JSONData, &m); err != nil {
		t.Fatal(err)
	}
	m["dpUser"], m["dpBudget"] = m["user"], budget
	is := *pc.DataSourceInstanceSettings
	is.ID = id // a datasource of its own: the SDK caches instances by datasource
	is.JSONData, _ = json.Marshal(m)
	is.DecryptedSecureJSONData = map[string]string{"password": is.DecryptedSecureJSONData["password"],
		"dpPassword": is.DecryptedSecureJSONData["password"]}
	pc.DataSourceInstanceSettings = &is
	return pc
}

// dpQuery is a dp_aggregate query of tenant over dpDay.
func dpQuery(refID, tenant string, dp map[string]any) backend.DataQuery {
	js, _ := json.Marshal(map[string]any{"tenant": tenant, "dp": dp})
	return backend.DataQuery{RefID: refID, QueryType: QueryDPAggregate, JSON: js,
		TimeRange: backend.TimeRange{From: dpDay, To: dpDay.Add(24 * time.Hour)}}
}

func (g *grafana) queryData(t *testing.T, pc backend.PluginContext, qs ...backend.DataQuery) *backend.QueryDataResponse {
	t.Helper()
	pr, err := g.data.QueryData(context.Background(), backend.ToProto().QueryDataRequest(
		&backend.QueryDataRequest{PluginContext: pc, Queries: qs}))
	if err != nil {
		t.Fatalf("QueryData: %v", err)
	}
	resp, err := backend.FromProto().QueryDataResponse(pr)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// field returns the value of the named field in the first row of a one-frame response.
func field[T any](t *testing.T, r backend.DataResponse, name string) T {
	t.Helper()
	if r.Error != nil || len(r.Frames) != 1 {
		t.Fatalf("response: error %v, %d frames", r.Error, len(r.Frames))
	}
	f, _ := r.Frames[0].FieldByName(name)
	if f == nil || f.Len() != 1 {
		t.Fatalf("frame %s has no single-row field %s", r.Frames[0].Name, name)
	}
	return f.At(0).(T)
}

// dp_aggregate over go-plugin gRPC against real ClickHouse holding 10,240 events:
//   - 100 noisy counts at ε=0.5 scatter around the true pool (10,200) with a mean absolute
//     deviation of 1/ε = 2 (Laplace: E|X| = b) within ±40% (4 standard errors); no noise, or
//     noise at the wrong scale, fails it; each frame carries ε, spent, remaining and the
//     mechanism;
//   - the ledger holds one reservation and one answer per query for grafana:<login>, and the
//     remaining budget falls by ε each time;
//   - a second login with a budget of 1 gets two answers and then a downstream "budget
//     exhausted" error (429), and its ledger is separate from the first login's;
//   - tenant tiny (40 events) is refused as a downstream error naming the 10,000-record rule,
//     and its reservation is released;
//   - a request without a Grafana login is refused; so is a datasource without dpUser;
//   - CheckHealth on 18.16 warns that dpUser can write every table.
//
// If it broke, Grafana users could release exact counts, spend ε without a ledger row, share
// one budget, or query small pools.
func TestDPAggregateOverGRPC(t *testing.T) {
	db := chtest.New(t)
	seedDP(t, db)
	g := launch(t)
	ctx := context.Background()

	pc := dpContext(t, db, 11, "carol", 100)
	h, err := g.diag.CheckHealth(ctx, &pluginv2.CheckHealthRequest{PluginContext: backend.ToProto().PluginContext(pc)})
	if err != nil || h.Status != pluginv2.CheckHealthResponse_OK {
		t.Fatalf("CheckHealth: %v %v %s", err, h.GetStatus(), h.GetMessage())
	}
	ver, err := storage.ServerVersion(ctx, db.Admin)
	if err != nil {
		t.Fatal(err)
	}
	if wantWarn := !storage.FeaturesFor(ver).RBAC; wantWarn != strings.Contains(h.Message, "WARNING: ClickHouse") {
		t.Errorf("CheckHealth on %s: %q; warning expected: %v", ver, h.Message, wantWarn)
	}

	const n = 100
	var qs []backend.DataQuery
	for i := range n {
		qs = append(qs, dpQuery(fmt.Sprintf("c%d", i), "acme", map[string]any{"aggregate": "count", "epsilon": 0.5}))
	}
	resp := g.queryData(t, pc, qs...)
	var absDev float64
	prevRemaining := 100.0
	for i := range n {
		r := resp.Responses[fmt.Sprintf("c%d", i)]
		v := field[float64](t, r, "value")
		if math.Abs(v-dpAcme) > 40 { // P(|Laplace(2)| > 40) = e^-20
			t.Errorf("count %d: %v, true %d", i, v, dpAcme)
		}
		absDev += math.Abs(v - dpAcme)
		if e := field[float64](t, r, "epsilon"); e != 0.5 {
			t.Errorf("epsilon %v", e)
		}
		if m := field[string](t, r, "mechanism"); m != "laplace" {
			t.Errorf("mechanism %q", m)
		}
		if a := field[string](t, r, "analyst"); a != "grafana:carol" {
			t.Errorf("analyst %q", a)
		}
		// Queries of one request run in order, so each spends 0.5 more.
		rem := field[float64](t, r, "remaining_epsilon")
		if math.Abs(prevRemaining-0.5-rem) > 1e-9 {
			t.Errorf("query %d: remaining %v after %v", i, rem, prevRemaining)
		}
		prevRemaining = rem
	}
	t.Logf("mean |noise| %.3f over %d counts at ε=0.5 (Laplace scale 2)", absDev/n, n)
	if mad := absDev / n; mad < 0.6*2 || mad > 1.4*2 {
		t.Errorf("mean |noise| %.3f over %d counts at ε=0.5, want 2 (±40%%): the noise is not Laplace(1/ε)", mad, n)
	}
	ledger := func(analyst string) map[string]uint64 {
		rows, err := db.Admin.Query(ctx, "SELECT status, count() FROM (SELECT id, any(status) AS status FROM "+db.Name+
			".privacy_budget WHERE analyst = ? GROUP BY id) GROUP BY status", analyst)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]uint64{}
		for rows.Next() {
			var s string
			var c uint64
			if err := rows.Scan(&s, &c); err != nil {
				t.Fatal(err)
			}
			out[s] = c
		}
		return out
	}
	if l := ledger("grafana:carol"); l["reserved"] != n || l["answered"] != n || l["released"] != 0 {
		t.Errorf("ledger of grafana:carol: %v, want %d reserved and answered", l, n)
	}

	// Another login, a budget of 1: two answers at ε=0.5, then refused.
	pd := dpContext(t, db, 12, "dave", 1)
	resp = g.queryData(t, pd, dpQuery("a", "acme", map[string]any{"aggregate": "mean", "column": "latency_ms", "lower": 0, "upper": 100}),
		dpQuery("b", "acme", map[string]any{"aggregate": "sum", "column": "latency_ms", "lower": 0, "upper": 100}),
		dpQuery("c", "acme", map[string]any{"aggregate": "count"}))
	if mean := field[float64](t, resp.Responses["a"], "value"); math.Abs(mean-49.5) > 5 {
		t.Errorf("noisy mean latency %v, true 49.5", mean)
	}
	if rem := field[float64](t, resp.Responses["b"], "remaining_epsilon"); rem != 0 {
		t.Errorf("remaining after spending the budget: %v", rem)
	}
	if c := resp.Responses["c"]; c.Error == nil || c.ErrorSource != backend.ErrorSourceDownstream ||
		c.Status != backend.StatusTooManyRequests || !strings.Contains(c.Error.Error(), "budget exhausted") {
		t.Errorf("over budget: error %v, source %q, status %d; want a downstream 429 'budget exhausted'", c.Error, c.ErrorSource, c.Status)
	}
	if l := ledger("grafana:dave"); l["answered"] != 2 || l["released"] != 1 {
		t.Errorf("ledger of grafana:dave: %v, want 2 answered and the third reservation released", l)
	}

	// A small pool and a request without a login.
	pe := dpContext(t, db, 13, "erin", 5)
	resp = g.queryData(t, pe, dpQuery("tiny", "tiny", map[string]any{"aggregate": "count"}))
	if r := resp.Responses["tiny"]; r.Error == nil || r.ErrorSource != backend.ErrorSourceDownstream || !strings.Contains(r.Error.Error(), "10000") {
		t.Errorf("small pool: error %v, source %q; want a downstream refusal naming the 10000-record rule", r.Error, r.ErrorSource)
	}
	if l := ledger("grafana:erin"); l["answered"] != 0 || l["released"] != 1 {
		t.Errorf("ledger of grafana:erin: %v, want the reservation released", l)
	}
	pe.User = nil
	resp = g.queryData(t, pe, dpQuery("anon", "acme", map[string]any{"aggregate": "count"}))
	if r := resp.Responses["anon"]; r.Error == nil || r.Status != backend.StatusUnauthorized {
		t.Errorf("no login: error %v, status %d; want 401", r.Error, r.Status)
	}
	resp = g.queryData(t, pluginContext(t, db, "unused", "Viewer"), dpQuery("off", "acme", map[string]any{"aggregate": "count"}))
	if r := resp.Responses["off"]; r.Error == nil || !strings.Contains(r.Error.Error(), "dpUser") || r.ErrorSource != backend.ErrorSourceDownstream {
		t.Errorf("no dpUser: error %v, source %q", r.Error, r.ErrorSource)
	}
}

// dp_user.sql grants the DP user SELECT and INSERT on the ε ledger and nothing else, as a role
// it gets by default. If a grant widened (events, the database, ALL), the plugin's DP
// credentials could read or write more than the ledger on servers with SQL access control.
func TestDPUserGrants(t *testing.T) {
	b, err := os.ReadFile("../dp_user.sql")
	if err != nil {
		t.Fatal(err)
	}
	got := storage.Statements(strings.NewReplacer("${user}", "mcpwatch_dp", "${password_sha256}", "ab").Replace(string(b)), "mcpwatch")
	want := []string{
		"CREATE ROLE IF NOT EXISTS mcpwatch_ledger",
		"GRANT SELECT, INSERT ON mcpwatch.privacy_budget TO mcpwatch_ledger",
		"CREATE USER IF NOT EXISTS mcpwatch_dp IDENTIFIED WITH sha256_hash BY 'ab' DEFAULT DATABASE mcpwatch",
		"GRANT mcpwatch_ledger TO mcpwatch_dp",
		"ALTER USER mcpwatch_dp DEFAULT ROLE mcpwatch_ledger",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("dp_user.sql renders\n%q\nwant\n%q", got, want)
	}
}
