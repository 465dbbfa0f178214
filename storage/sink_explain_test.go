package storage

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
)

func sampleEvidence() []event.Evidence {
	pp := 99.0
	ws := time.Date(2026, 11, 23, 9, 6, 0, 0, time.UTC)
	return []event.Evidence{
		{Detector: "rate", Check: "burst", Component: "frequency", Feature: "calls_per_min", Value: 90, Contribution: 27,
			Observed: 182, Baseline: 4, BaselineSource: "self", PeerPercentile: &pp, Detail: "182 calls/min, normal 4",
			WindowStart: ws, WindowEnd: ws.Add(time.Minute), EventIDs: []string{"e1", "e2"}},
		{Detector: "ueba", Check: "new_tool", Component: "user_risk", Feature: "tool", Value: 60, Contribution: 18,
			Observed: 1, Baseline: 0, BaselineSource: "peers", Detail: "first call of export_csv; used by 0 of 12 peers",
			WindowStart: ws, WindowEnd: ws.Add(time.Minute)},
	}
}

// A score and a finding with evidence land in their Nested evidence columns in order, read back
// one row per evidence with ARRAY JOIN (through the dedup views too), a missing peer percentile
// as NaN; the score's explanation and contributions and the finding's check and tags as well.
func TestSinkWritesEvidence(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	s := newSink(t, conn, db)
	sc := sampleScore(0)
	sc.Score, sc.Explanation = 87, "87: calls_per_min 182 vs 4 (self); first use of export_csv"
	sc.Contributions = map[string]float64{"user_risk": 18, "frequency": 27}
	sc.Evidence = sampleEvidence()
	f := sampleFinding()
	f.Check, f.Tags, f.Evidence = "burst", []string{"ueba", "T1530"}, sampleEvidence()[:1]
	f.Explanation = "burst of calls — ueba/rate 92 (calls_per_min 312 vs 4 self)"
	e := sampleEvent(0)
	e.Network.UserAgent, e.Network.Proxy = "claude-code/2.1", "10.0.0.2"
	recs := []*kgo.Record{rec(t, testTopics.Scores, &sc), rec(t, testTopics.Findings, &f), rec(t, testTopics.Events, &e)}
	for range 2 { // the replay collapses with the first copy
		if res, err := s.Handle(ctx, recs); err != nil || len(res.Dead) != 0 {
			t.Fatalf("res %+v err %v", res, err)
		}
	}
	var (
		expl           string
		cnames         []string
		cvalues        []float64
		check, fexpl   string
		tags           []string
		ua, proxy      string
		scoreRows, fRs uint64
	)
	if scoreRows, fRs = count(t, conn, "SELECT count() FROM "+db+".scores"), count(t, conn, "SELECT count() FROM "+db+".findings"); scoreRows != 1 || fRs != 1 {
		t.Fatalf("%d score rows, %d finding rows after a replay; want 1 each", scoreRows, fRs)
	}
	if err := conn.QueryRow(ctx, "SELECT explanation, contribution_names, contribution_values FROM "+db+".scores_dedup").
		Scan(&expl, &cnames, &cvalues); err != nil {
		t.Fatal(err)
	}
	if expl != sc.Explanation || !slices.Equal(cnames, []string{"frequency", "user_risk"}) || !slices.Equal(cvalues, []float64{27, 18}) {
		t.Errorf("score: %q %v %v", expl, cnames, cvalues)
	}
	if err := conn.QueryRow(ctx, "SELECT check, tags, explanation FROM "+db+".findings_dedup").Scan(&check, &tags, &fexpl); err != nil {
		t.Fatal(err)
	}
	if check != "burst" || !slices.Equal(tags, []string{"ueba", "T1530"}) || fexpl != f.Explanation {
		t.Errorf("finding check %q tags %v explanation %q", check, tags, fexpl)
	}
	if err := conn.QueryRow(ctx, "SELECT user_agent, proxy FROM "+db+".events_dedup").Scan(&ua, &proxy); err != nil {
		t.Fatal(err)
	}
	if ua != "claude-code/2.1" || proxy != "10.0.0.2" {
		t.Errorf("event user agent %q proxy %q", ua, proxy)
	}

	// "Why is alice at 87?": one row per evidence, in the order the scorer gave them.
	rows, err := conn.Query(ctx, `SELECT e.detector, e.check, e.component, e.feature, e.value, e.contribution, e.observed, e.baseline,
		e.baseline_source, e.peer_percentile, e.detail, e.window_start, e.window_end, e.event_ids
		FROM `+db+`.scores_dedup ARRAY JOIN evidence AS e WHERE tenant = 'acme' AND subject = 'alice'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []event.Evidence
	for rows.Next() {
		var (
			ev event.Evidence
			pp float64
		)
		if err := rows.Scan(&ev.Detector, &ev.Check, &ev.Component, &ev.Feature, &ev.Value, &ev.Contribution, &ev.Observed,
			&ev.Baseline, &ev.BaselineSource, &pp, &ev.Detail, &ev.WindowStart, &ev.WindowEnd, &ev.EventIDs); err != nil {
			t.Fatal(err)
		}
		if !math.IsNaN(pp) {
			ev.PeerPercentile = &pp
		}
		if len(ev.EventIDs) == 0 {
			ev.EventIDs = nil
		}
		ev.WindowStart, ev.WindowEnd = ev.WindowStart.UTC(), ev.WindowEnd.UTC()
		got = append(got, ev)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := sampleEvidence()
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("evidence read back\n got %s\nwant %s", gj, wj)
	}
	// The same through findings, with the SQL an analyst writes for "none" percentiles.
	var feature, src string
	var noPeers uint8
	if err := conn.QueryRow(ctx, "SELECT evidence.feature, evidence.baseline_source, isNaN(evidence.peer_percentile) FROM "+db+
		".findings_dedup ARRAY JOIN evidence WHERE check = 'burst'").Scan(&feature, &src, &noPeers); err != nil {
		t.Fatal(err)
	}
	if feature != "calls_per_min" || src != "self" || noPeers != 0 {
		t.Errorf("finding evidence %s %s %d", feature, src, noPeers)
	}
}

// Evidence that cannot be stored faithfully (a NaN observation) is dead-lettered with the
// reason, before any INSERT.
func TestSinkDeadLettersBadEvidence(t *testing.T) {
	conn, db := migrated(t)
	s := newSink(t, conn, db)
	sc := sampleScore(0)
	sc.Evidence = sampleEvidence()
	sc.Evidence[1].WindowEnd = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)
	res, err := s.Handle(context.Background(), []*kgo.Record{rec(t, testTopics.Scores, &sc)})
	if err != nil || len(res.Dead) != 1 || !strings.Contains(res.Dead[0].Reason.Error(), "evidence 1 (tool) window end") {
		t.Fatalf("res %+v err %v", res, err)
	}
}

func sampleProfile(version uint64, obs uint64) event.Profile {
	week := make([]float64, 168)
	week[9] = 3    // Monday 09:00
	week[24+9] = 2 // Tuesday 09:00
	week[167] = 1  // Sunday 23:00
	return event.Profile{
		Schema: event.SchemaVersion, Time: time.Date(2026, 11, 23, 9, 7, 0, 0, time.UTC).Add(time.Duration(version) * time.Minute),
		Tenant: "acme", Subject: "alice", Detector: "ueba", Version: version,
		FirstSeen: time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC), Observations: obs, Confidence: 0.8,
		Department: "sales", PeerGroup: "emea-sales",
		Features: []event.ProfileFeature{
			{Name: "calls_per_min", Mean: 4, Stddev: 1.5, P50: 3, P95: 7},
			{Name: "bytes_out", Mean: 2048, Stddev: 512, P50: 2000, P95: 3000},
		},
		Categories: []event.ProfileCategory{
			{Name: "tool", Values: []event.ProfileValue{{Value: "search", Count: 4.6}, {Value: "db_query", Count: 120.2}}},
			{Name: "client", Values: []event.ProfileValue{{Value: "claude-desktop/1.2", Count: 124}}},
		},
		WeekHours: week,
		State:     []byte("opaque detector state"),
	}
}

// A profile record lands in profiles as one row: features sorted by name, the tool category,
// 24 hours folded from the week, the record without its state as detail. A replay collapses,
// a newer version replaces the row in profiles_latest, a tombstone is skipped.
func TestSinkWritesProfiles(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	s := newSink(t, conn, db)
	if !slices.Contains(s.Topics(), testTopics.Profiles) {
		t.Fatalf("sink topics %v lack the profiles topic", s.Topics())
	}
	p1, p2 := sampleProfile(1, 100), sampleProfile(2, 130)
	r1 := rec(t, testTopics.Profiles, &p1)
	tomb := &kgo.Record{Topic: testTopics.Profiles, Key: []byte("acme/bob")}
	for _, batch := range [][]*kgo.Record{{r1, tomb}, {r1}} {
		if res, err := s.Handle(ctx, batch); err != nil || len(res.Dead) != 0 {
			t.Fatalf("res %+v err %v", res, err)
		}
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".profiles FINAL"); n != 1 {
		t.Fatalf("%d profile rows after a replay, want 1", n)
	}
	if res, err := s.Handle(ctx, []*kgo.Record{rec(t, testTopics.Profiles, &p2)}); err != nil || len(res.Dead) != 0 {
		t.Fatalf("res %+v err %v", res, err)
	}
	var (
		profile, period, dept, group, detail string
		version, obs                         uint64
		updated, ws, we                      time.Time
		fnames, tools                        []string
		mean, p95                            []float64
		toolCounts, hours                    []uint64
	)
	err := conn.QueryRow(ctx, `SELECT profile, period, version, observations, updated_time, window_start, window_end, department, peer_group,
		feature_names, feature_mean, feature_p95, tool_names, tool_counts, hour_counts, detail
		FROM `+db+`.profiles_latest WHERE tenant = 'acme' AND principal = 'alice'`).
		Scan(&profile, &period, &version, &obs, &updated, &ws, &we, &dept, &group, &fnames, &mean, &p95, &tools, &toolCounts, &hours, &detail)
	if err != nil {
		t.Fatal(err)
	}
	if profile != "ueba" || period != "all" || version != 2 || obs != 130 || dept != "sales" || group != "emea-sales" ||
		!updated.Equal(p2.Time) || !ws.Equal(p2.FirstSeen) || !we.Equal(p2.Time) {
		t.Errorf("profile row %s %s v%d obs %d %s %s..%s %s %s", profile, period, version, obs, updated, ws, we, dept, group)
	}
	if !slices.Equal(fnames, []string{"bytes_out", "calls_per_min"}) || !slices.Equal(mean, []float64{2048, 4}) || !slices.Equal(p95, []float64{3000, 7}) {
		t.Errorf("features %v %v %v", fnames, mean, p95)
	}
	if !slices.Equal(tools, []string{"db_query", "search"}) || !slices.Equal(toolCounts, []uint64{120, 5}) {
		t.Errorf("tools %v %v", tools, toolCounts)
	}
	wantHours := make([]uint64, 24)
	wantHours[9], wantHours[23] = 5, 1
	if !slices.Equal(hours, wantHours) {
		t.Errorf("hour counts %v, want %v", hours, wantHours)
	}
	var back event.Profile
	if err := json.Unmarshal([]byte(detail), &back); err != nil {
		t.Fatal(err)
	}
	if back.State != nil || strings.Contains(detail, `"state"`) || back.Confidence != 0.8 || len(back.Categories) != 2 || back.Version != 2 {
		t.Errorf("detail %s", detail)
	}
}

// A profile whose week histogram is not 168 hours is refused as malformed.
func TestSinkDeadLettersBadProfile(t *testing.T) {
	conn, db := migrated(t)
	s := newSink(t, conn, db)
	p := sampleProfile(1, 1)
	p.WeekHours = p.WeekHours[:24]
	res, err := s.Handle(context.Background(), []*kgo.Record{rec(t, testTopics.Profiles, &p)})
	if err != nil || len(res.Dead) != 1 || !strings.Contains(res.Dead[0].Reason.Error(), "week_hours has 24 bins") {
		t.Fatalf("res %+v err %v", res, err)
	}
}
