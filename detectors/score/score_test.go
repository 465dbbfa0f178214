package score

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/detectors/rate"
	"github.com/mcpwatch/mcpwatch/event"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

var seq int

// req is an MCP request by sub of tenant acme, at offset at from t0.
func req(sub string, at time.Duration) event.Event {
	seq++
	return event.Event{ID: fmt.Sprintf("ev-%06d", seq), Time: t0.Add(at), Source: event.SourceMCP, Tenant: "acme",
		Principal: event.Principal{Subject: sub, ClientID: "claude-desktop"},
		MCP:       &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: "db_query"},
		Outcome:   event.Outcome{Result: event.ResultAllowed}}
}

// rateAlone is the rate detector (with a config where the score is the number of calls in the
// last second) and a scorer over it alone, as the stage runs them.
type rateAlone struct {
	t   *testing.T
	r   *rate.Rate
	s   *Scorer
	out detect.Output
}

func newRateAlone(t *testing.T, rmod func(*rate.Config), mod func(*Config)) *rateAlone {
	t.Helper()
	rc := rate.DefaultConfig()
	rc.Window, rc.Baseline, rc.Ceiling = time.Second, 0, 100
	if rmod != nil {
		rmod(&rc)
	}
	r, err := rate.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, r.Info())
	if err != nil {
		t.Fatal(err)
	}
	return &rateAlone{t: t, r: r, s: s}
}

// observe runs e through the detector and the scorer and returns the score records.
func (a *rateAlone) observe(e event.Event) []*event.Score {
	a.out.Reset()
	a.r.Observe(&e, &a.out)
	return a.apply()
}

// expire expires the detector at offset at and returns the score records.
func (a *rateAlone) expire(at time.Duration) []*event.Score {
	a.out.Reset()
	a.r.Expire(t0.Add(at), &a.out)
	return a.apply()
}

func (a *rateAlone) apply() []*event.Score {
	var recs []*event.Score
	for i := range a.out.Signals {
		rec, err := a.s.Apply(&a.out.Signals[i])
		if err != nil {
			a.t.Fatal(err)
		}
		if rec != nil {
			recs = append(recs, rec)
		}
	}
	return recs
}

// With the rate detector alone, score records keep the compacted scores topic current without
// one record per event, exactly as the rate detector published them before the scorer existed
// (this is the rate detector's old score-publishing test): gateway policies' max_risk, the demo
// and the acceptance tests depend on these values and times.
func TestScorerRateAlonePublishing(t *testing.T) {
	a := newRateAlone(t, nil, nil) // score = calls in the last second; PublishEvery 10s
	var got []float64
	var times []time.Duration
	obs := func(at time.Duration) {
		for _, s := range a.observe(req("alice", at)) {
			got = append(got, s.Score)
			times = append(times, s.Time.Sub(t0))
			want := map[string]float64{"frequency": s.Score, "rate": s.Score}
			if !reflect.DeepEqual(s.Components, want) || s.Tenant != "acme" || s.Subject != "alice" {
				t.Fatalf("record %+v, want components %v", s, want)
			}
		}
	}
	for i := range 12 { // scores 1..12 within 12ms
		obs(time.Duration(i) * time.Millisecond)
	}
	// 1 is published (first change from 0), then 6 and 11 (each ≥ 5 above the last published).
	if want := []float64{1, 6, 11}; !reflect.DeepEqual(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
	obs(5 * time.Second)                     // 1: a change of 10, published at once
	obs(9 * time.Second)                     // 1: unchanged
	obs(9*time.Second + time.Millisecond)    // 2: a small change 4s after the last: held back
	obs(15*time.Second + 2*time.Millisecond) // 1: equal to the published score
	obs(15*time.Second + 3*time.Millisecond) // 2: a small change 10s after the last: published
	obs(15*time.Second + 4*time.Millisecond) // 3: small, too soon
	obs(25*time.Second + 4*time.Millisecond) // 1: small, 10s after the last: published
	want := []float64{1, 6, 11, 1, 2, 1}
	wantTimes := []time.Duration{0, 5 * time.Millisecond, 10 * time.Millisecond, 5 * time.Second,
		15*time.Second + 3*time.Millisecond, 25*time.Second + 4*time.Millisecond}
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(times, wantTimes) {
		t.Fatalf("published %v at %v, want %v at %v", got, times, want, wantTimes)
	}
}

// When a principal's signals expire the scorer publishes 0 once, stamped when the rate window
// emptied — the old detector's final score — so the compacted topic does not keep a stale high
// score forever; quiet principals cost no record at all.
func TestScorerRateAloneExpiry(t *testing.T) {
	a := newRateAlone(t, nil, nil) // rate forgets after max(1s window, 30s cooldown)
	for i := range 60 {
		a.observe(req("alice", time.Second-time.Duration(59-i)*time.Millisecond))
	}
	a.observe(req("bob", time.Second)) // score 1
	a.observe(req("carol", 20*time.Second))
	if recs := a.expire(30 * time.Second); len(recs) != 0 {
		t.Fatalf("records %v before anyone was idle for 30s", recs)
	}
	recs := a.expire(31 * time.Second)
	if len(recs) != 2 {
		t.Fatalf("records %+v, want final scores for alice and bob", recs)
	}
	for _, s := range recs {
		if s.Score != 0 || !s.Time.Equal(t0.Add(2*time.Second)) || s.Tenant != "acme" ||
			!reflect.DeepEqual(s.Components, map[string]float64{"frequency": 0, "rate": 0}) {
			t.Fatalf("final score %+v, want 0 at 2s (when the window emptied)", s)
		}
	}
	if got := []string{recs[0].Key(), recs[1].Key()}; got[0] != "acme/alice" || got[1] != "acme/bob" {
		t.Fatalf("keys %v", got)
	}
	if s := a.s.Stats(); s.Principals != 1 || s.EvictedIdle != 2 {
		t.Fatalf("stats %+v, want carol alone left", s)
	}
	if recs := a.expire(time.Hour); len(recs) != 1 || recs[0].Subject != "carol" {
		t.Fatalf("carol's final record: %+v", recs)
	}
	if recs := a.expire(2 * time.Hour); len(recs) != 0 {
		t.Fatalf("a second final record: %+v", recs)
	}

	// A principal that never scored above 0 leaves without a record.
	q := newRateAlone(t, func(c *rate.Config) { *c = rate.DefaultConfig() }, nil) // baseline 2/s: one call scores 0
	if recs := append(q.observe(req("quiet", 0)), q.expire(time.Hour)...); len(recs) != 0 {
		t.Fatalf("a zero-score principal got records %+v", recs)
	}
	if s := q.s.Stats(); s.Principals != 0 || s.Published != 0 {
		t.Fatalf("stats %+v: a quiet principal took scorer memory", s)
	}
}

// oldRule is the rate detector's publication rule before the scorer, kept here as an oracle:
// publish at once for a change of 5 or more, else for a change after 10s; on expiry 0 when the
// published score was above 0.
type oldRule struct {
	score, at map[string]float64
	has       map[string]bool
}

func (o *oldRule) signal(s *detect.Signal) *event.Score {
	k := event.ScoreKey(s.Tenant, s.Subject)
	now := float64(s.Time.UnixNano())
	if s.Expired {
		defer func() { delete(o.score, k); delete(o.at, k); delete(o.has, k) }()
		if o.score[k] > 0 {
			return &event.Score{Time: s.Time, Tenant: s.Tenant, Subject: s.Subject, Components: map[string]float64{"frequency": 0, "rate": 0}}
		}
		return nil
	}
	if d := math.Abs(s.Value - o.score[k]); d >= 5 || (d > 0 && (!o.has[k] || now-o.at[k] >= float64(10*time.Second))) {
		o.score[k], o.at[k], o.has[k] = s.Value, now, true
		return &event.Score{Time: s.Time, Tenant: s.Tenant, Subject: s.Subject, Score: s.Value,
			Components: map[string]float64{"frequency": s.Value, "rate": s.Value}}
	}
	return nil
}

// With the rate detector alone the scorer publishes exactly what the rate detector published
// before, value for value and time for time, over a long mixed stream with expiries.
func TestScorerRateAloneMatchesOldRule(t *testing.T) {
	a := newRateAlone(t, nil, nil)
	o := &oldRule{score: map[string]float64{}, at: map[string]float64{}, has: map[string]bool{}}
	var got, want []*event.Score
	step := func(sigs []detect.Signal) {
		for i := range sigs {
			if s := o.signal(&sigs[i]); s != nil {
				want = append(want, s)
			}
		}
	}
	var at time.Duration
	for i := range 20_000 {
		// Bursts and lulls for 7 principals: gaps from 0.1ms to ~40s.
		at += time.Duration((i*7919)%97*(i%13+1)) * 50 * time.Microsecond
		if i%1000 == 999 {
			at += 40 * time.Second
		}
		e := req(fmt.Sprintf("p%d", (i*31)%7), at)
		got = append(got, a.observe(e)...)
		step(a.out.Signals)
		got = append(got, a.expire(at)...)
		step(a.out.Signals)
	}
	finals := 0
	for _, s := range want {
		if s.Score == 0 {
			finals++
		}
	}
	if len(want) < 300 || finals < 10 {
		t.Fatalf("%d records, %d of them 0: the stream exercises too little", len(want), finals)
	}
	t.Logf("%d records, %d of them 0", len(want), finals)
	for _, s := range got { // the old rule had no explanations
		if s.Score > 0 && (len(s.Evidence) == 0 || s.Explanation == "" || s.Contributions["frequency"] != s.Score) {
			t.Fatalf("record without its explanation: %+v", s)
		}
		s.Evidence, s.Explanation, s.Contributions = nil, "", nil
	}
	if !reflect.DeepEqual(got, want) {
		for i := range min(len(got), len(want)) {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Fatalf("record %d: got %+v, want %+v", i, got[i], want[i])
			}
		}
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
}

// Three fake detectors for combination tests: two on frequency, one on risk.
var (
	fast = detect.Info{Name: "fast", Checks: []detect.Check{{Name: "fast", Component: detect.Frequency}}}
	slow = detect.Info{Name: "slow", Checks: []detect.Check{{Name: "slow", Component: detect.Frequency}}}
	prof = detect.Info{Name: "profile", Checks: []detect.Check{{Name: "profile", Component: detect.Risk}}}
	sens = detect.Info{Name: "sens", Checks: []detect.Check{{Name: "sens", Component: detect.Sensitivity}}}
)

func sig(det string, c detect.Component, at time.Duration, v float64) detect.Signal {
	return detect.Signal{Detector: det, Check: det, Tenant: "acme", Subject: "alice", Time: t0.Add(at), Component: c, Value: v}
}

func newScorer(t *testing.T, mod func(*Config), dets ...detect.Info) *Scorer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.PublishEvery = 0 // every change published: the tests look at values
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, dets...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func apply(t *testing.T, s *Scorer, sigs ...detect.Signal) *event.Score {
	t.Helper()
	var last *event.Score
	for i := range sigs {
		rec, err := s.Apply(&sigs[i])
		if err != nil {
			t.Fatal(err)
		}
		if rec != nil {
			last = rec
		}
	}
	return last
}

// The score is the source document's weighted formula over the components the detectors feed,
// each component the highest of its detectors: a wrong combination mis-ranks every principal.
func TestScorerCombination(t *testing.T) {
	cases := map[string]struct {
		dets  []detect.Info
		mod   func(*Config)
		sigs  []detect.Signal
		score float64
		comps map[string]float64
	}{
		"different components are weighed (0.3, 0.3 renormalised to halves)": {
			dets: []detect.Info{fast, prof}, sigs: []detect.Signal{sig("fast", detect.Frequency, 0, 80), sig("profile", detect.Risk, 0, 30)},
			score: 55, comps: map[string]float64{"frequency": 80, "risk": 30, "fast": 80, "profile": 30, "findings": 0}},
		"all three components: 0.3·80 + 0.4·50 + 0.3·10": {
			dets: []detect.Info{fast, sens, prof}, sigs: []detect.Signal{sig("fast", detect.Frequency, 0, 80),
				sig("sens", detect.Sensitivity, 0, 50), sig("profile", detect.Risk, 0, 10)},
			score: 47, comps: map[string]float64{"frequency": 80, "sensitivity": 50, "risk": 10, "fast": 80, "sens": 50, "profile": 10, "findings": 0}},
		"a component no signal reached counts 0": {
			dets: []detect.Info{fast, sens, prof}, sigs: []detect.Signal{sig("sens", detect.Sensitivity, 0, 50)},
			score: 20, comps: map[string]float64{"frequency": 0, "sensitivity": 50, "risk": 0, "fast": 0, "sens": 50, "profile": 0, "findings": 0}},
		"one component: the max of its detectors": {
			dets: []detect.Info{fast, slow}, sigs: []detect.Signal{sig("fast", detect.Frequency, 0, 40), sig("slow", detect.Frequency, 0, 70)},
			score: 70, comps: map[string]float64{"frequency": 70, "fast": 40, "slow": 70}},
		"the max falls when its detector falls": {
			dets: []detect.Info{fast, slow}, sigs: []detect.Signal{sig("fast", detect.Frequency, 0, 40), sig("slow", detect.Frequency, 0, 70),
				sig("slow", detect.Frequency, time.Second, 10)},
			score: 40, comps: map[string]float64{"frequency": 40, "fast": 40, "slow": 10}},
		"configured weights (frequency 1, risk 3)": {
			dets: []detect.Info{fast, prof}, mod: func(c *Config) { c.Weights = Weights{Frequency: 1, Risk: 3} },
			sigs:  []detect.Signal{sig("fast", detect.Frequency, 0, 80), sig("profile", detect.Risk, 0, 40)},
			score: 50, comps: map[string]float64{"frequency": 80, "risk": 40, "fast": 80, "profile": 40, "findings": 0}},
		"a zero-weight component is reported but weighs nothing": {
			dets: []detect.Info{fast, prof}, mod: func(c *Config) { c.Weights.Risk = 0 },
			sigs:  []detect.Signal{sig("profile", detect.Risk, 0, 90), sig("fast", detect.Frequency, 0, 30)},
			score: 30, comps: map[string]float64{"frequency": 30, "risk": 90, "fast": 30, "profile": 90}},
		"rounded to one decimal": {
			dets: []detect.Info{fast, sens, prof}, sigs: []detect.Signal{sig("fast", detect.Frequency, 0, 33.3)},
			score: 10, comps: map[string]float64{"frequency": 33.3, "sensitivity": 0, "risk": 0, "fast": 33.3, "sens": 0, "profile": 0, "findings": 0}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := newScorer(t, c.mod, c.dets...)
			rec := apply(t, s, c.sigs...)
			if rec == nil || rec.Score != c.score || !reflect.DeepEqual(rec.Components, c.comps) {
				t.Fatalf("record %+v, want score %v components %v", rec, c.score, c.comps)
			}
		})
	}
}

// A detector with several checks keeps one latest signal per check, reported under
// "name.check": its sensitivity signal must not overwrite its risk signal.
func TestScorerMultiComponentDetector(t *testing.T) {
	ueba := detect.Info{Name: "ueba", Checks: []detect.Check{{Name: "sensitivity", Component: detect.Sensitivity}, {Name: "risk", Component: detect.Risk}}}
	s := newScorer(t, nil, fast, ueba)
	if got, want := s.Keys(), []string{"frequency", "sensitivity", "risk", "fast", "ueba.sensitivity", "ueba.risk", "findings"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
	sens, risk := sig("ueba", detect.Sensitivity, 0, 50), sig("ueba", detect.Risk, 0, 100)
	sens.Check, risk.Check = "sensitivity", "risk"
	rec := apply(t, s, sens, risk)
	if rec.Score != 50 || rec.Components["ueba.sensitivity"] != 50 || rec.Components["ueba.risk"] != 100 {
		t.Fatalf("record %+v, want 0.3·0 + 0.4·50 + 0.3·100 = 50", rec)
	}
}

// Publication follows the score, not the signals: repeating the same values, or values that do
// not move the combined score, publishes nothing.
func TestScorerNoChangeNoRecord(t *testing.T) {
	s := newScorer(t, nil, fast, slow)
	if apply(t, s, sig("fast", detect.Frequency, 0, 50)) == nil {
		t.Fatal("first score not published")
	}
	for i := range 10 {
		at := time.Duration(i+1) * time.Second
		if rec := apply(t, s, sig("fast", detect.Frequency, at, 50), sig("slow", detect.Frequency, at, 20)); rec != nil {
			t.Fatalf("unchanged score republished: %+v", rec)
		}
	}
	// Zero-valued signals about unknown principals leave no state.
	z := sig("fast", detect.Frequency, 0, 0)
	z.Subject = "quiet"
	if apply(t, s, z) != nil || s.Stats().Principals != 1 {
		t.Fatalf("quiet principal tracked: %+v", s.Stats())
	}
}

// A principal's score records never go back in time, whichever detector signals last.
func TestScorerTimeIsNewestSignal(t *testing.T) {
	s := newScorer(t, nil, fast, prof)
	apply(t, s, sig("fast", detect.Frequency, 10*time.Second, 50))
	rec := apply(t, s, sig("profile", detect.Risk, 3*time.Second, 90)) // a slower detector, behind
	if rec == nil || !rec.Time.Equal(t0.Add(10*time.Second)) || rec.Score != 70 {
		t.Fatalf("record %+v, want 70 at 10s", rec)
	}
}

// Expiry: a detector's expired signal drops its value; the principal's final 0 is published once
// when its last live signal expires, and it is forgotten.
func TestScorerExpiry(t *testing.T) {
	s := newScorer(t, func(c *Config) { c.PublishEvery = time.Hour }, fast, prof)
	apply(t, s, sig("fast", detect.Frequency, 0, 80), sig("profile", detect.Risk, 0, 2)) // 80, then 41 (both published: ≥ 5)
	exp := func(det string, c detect.Component, at time.Duration) detect.Signal {
		x := sig(det, c, at, 0)
		x.Expired = true
		return x
	}
	// fast expires: 41 → 1, a change of 40, published at its time.
	rec := apply(t, s, exp("fast", detect.Frequency, 5*time.Second))
	if rec == nil || rec.Score != 1 || !rec.Time.Equal(t0.Add(5*time.Second)) || rec.Components["fast"] != 0 {
		t.Fatalf("partial expiry record %+v", rec)
	}
	// profile expires: 1 → 0, a small change inside PublishEvery, yet the final 0 is published.
	rec = apply(t, s, exp("profile", detect.Risk, 7*time.Second))
	if rec == nil || rec.Score != 0 || !rec.Time.Equal(t0.Add(7*time.Second)) ||
		!reflect.DeepEqual(rec.Components, map[string]float64{"frequency": 0, "risk": 0, "fast": 0, "profile": 0, "findings": 0}) {
		t.Fatalf("final record %+v", rec)
	}
	if st := s.Stats(); st.Principals != 0 || st.EvictedIdle != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Expiring again, or expiring an unknown principal, publishes nothing.
	if rec := apply(t, s, exp("profile", detect.Risk, 8*time.Second), exp("fast", detect.Frequency, 8*time.Second)); rec != nil {
		t.Fatalf("second final record %+v", rec)
	}
	// A principal whose published score is already 0 leaves quietly.
	apply(t, s, sig("fast", detect.Frequency, 10*time.Second, 10), sig("fast", detect.Frequency, 11*time.Second, 0))
	if rec := apply(t, s, exp("fast", detect.Frequency, 12*time.Second)); rec != nil || s.Stats().Principals != 0 {
		t.Fatalf("record %+v for a principal already at 0, stats %+v", rec, s.Stats())
	}
}

// The principals tracked are bounded, the one signalled least recently forgotten first, with its
// last published score left standing; an unbounded map is a memory exhaustion attack.
func TestScorerMaxPrincipals(t *testing.T) {
	s := newScorer(t, func(c *Config) { c.MaxPrincipals = 2 }, fast)
	at := func(sub string, d time.Duration, v float64) detect.Signal {
		x := sig("fast", detect.Frequency, d, v)
		x.Subject = sub
		return x
	}
	apply(t, s, at("a", 0, 50), at("b", 1, 50), at("a", 2, 60), at("c", 3, 50)) // b is forgotten
	if st := s.Stats(); st.Principals != 2 || st.EvictedCapacity != 1 {
		t.Fatalf("stats %+v", st)
	}
	if s.Signals("acme", "b") != nil || s.Signals("acme", "a") == nil || s.Signals("acme", "c") == nil {
		t.Fatal("forgot the wrong principal")
	}
	// b comes back and is scored afresh: its first value is published.
	if rec := apply(t, s, at("b", 4, 50)); rec == nil || rec.Score != 50 {
		t.Fatalf("returning principal: %+v", rec)
	}
}

// The scorer keeps each live signal's evidence, so a score can answer "why?".
func TestScorerKeepsEvidence(t *testing.T) {
	s := newScorer(t, nil, fast, prof)
	f := sig("fast", detect.Frequency, time.Second, 80)
	f.Evidence = detect.Evidence{Feature: "rate_per_s", Observed: 16, Baseline: 2, WindowStart: t0.Add(-9 * time.Second),
		WindowEnd: t0.Add(time.Second), EventIDs: []detect.EventID{detect.MakeEventID("ev-1"), detect.MakeEventID("ev-2")}}
	apply(t, s, f, sig("profile", detect.Risk, 0, 10))
	got := s.Signals("acme", "alice")
	if len(got) != 2 || !reflect.DeepEqual(got[0], f) || got[1].Detector != "profile" || got[1].Value != 10 {
		t.Fatalf("signals %+v", got)
	}
}

// A signal the scorer cannot place is refused and changes nothing: a buggy detector must not
// corrupt another's score.
func TestScorerRefuses(t *testing.T) {
	cases := map[string]func(*detect.Signal){
		"unknown detector":    func(s *detect.Signal) { s.Detector = "other" },
		"undeclared":          func(s *detect.Signal) { s.Component = detect.Risk },
		"unknown component":   func(s *detect.Signal) { s.Component = "speed" },
		"NaN":                 func(s *detect.Signal) { s.Value = math.NaN() },
		"negative":            func(s *detect.Signal) { s.Value = -1 },
		"above 100":           func(s *detect.Signal) { s.Value = 100.5 },
		"infinite":            func(s *detect.Signal) { s.Value = math.Inf(1) },
		"zero time":           func(s *detect.Signal) { s.Time = time.Time{} },
		"far future":          func(s *detect.Signal) { s.Time = time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC) },
		"expired, wrong name": func(s *detect.Signal) { s.Expired, s.Detector = true, "other" },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			s := newScorer(t, nil, fast)
			x := sig("fast", detect.Frequency, 0, 50)
			mod(&x)
			rec, err := s.Apply(&x)
			if !errors.Is(err, ErrSignal) || rec != nil {
				t.Fatalf("got %+v, %v; want ErrSignal", rec, err)
			}
			if st := s.Stats(); st.Principals != 0 || st.Refused != 1 || st.Signals != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// The detectors a scorer serves must be placeable: a misconfigured stage fails at start.
func TestNewRefuses(t *testing.T) {
	cases := map[string]struct {
		mod  func(*Config)
		dets []detect.Info
		want string
	}{
		"no detectors":        {nil, nil, "no detectors"},
		"nameless":            {nil, []detect.Info{{Checks: []detect.Check{{Name: "x", Component: detect.Risk}}}}, "no name"},
		"duplicate":           {nil, []detect.Info{fast, fast}, "two detectors"},
		"feeds nothing":       {nil, []detect.Info{{Name: "x"}}, "has no checks"},
		"unknown component":   {nil, []detect.Info{{Name: "x", Checks: []detect.Check{{Name: "x", Component: "speed"}}}}, "unknown component"},
		"name is a component": {nil, []detect.Info{{Name: "risk", Checks: []detect.Check{{Name: "risk", Component: detect.Risk}}}}, "taken"},
		"fed weights all 0":   {func(c *Config) { c.Weights.Frequency = 0 }, []detect.Info{fast, slow}, "all weigh 0"},
		"invalid config":      {func(c *Config) { c.PublishDelta = 0 }, []detect.Info{fast}, "publish_delta"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			if c.mod != nil {
				c.mod(&cfg)
			}
			if _, err := New(cfg, c.dets...); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error about %q", err, c.want)
			}
		})
	}
}

// A config the scorer cannot honour is refused with the field's YAML path.
func TestConfigValidate(t *testing.T) {
	cases := map[string]struct {
		mod  func(*Config)
		want string // the error; "" means valid
	}{
		"defaults":             {func(*Config) {}, ""},
		"one weight":           {func(c *Config) { c.Weights = Weights{Risk: 1} }, ""},
		"publish every change": {func(c *Config) { c.PublishEvery = 0 }, ""},
		"negative weight":      {func(c *Config) { c.Weights.Risk = -1 }, "weights.risk: must not be negative, got -1"},
		"NaN weight":           {func(c *Config) { c.Weights.Sensitivity = math.NaN() }, "weights.sensitivity: must be a finite number, got NaN"},
		"infinite weight":      {func(c *Config) { c.Weights.Frequency = math.Inf(1) }, "weights.frequency: must be a finite number, got +Inf"},
		"all zero":             {func(c *Config) { c.Weights = Weights{} }, "weights: must not all be 0"},
		"zero delta":           {func(c *Config) { c.PublishDelta = 0 }, "publish_delta: must be in (0, 100], got 0"},
		"NaN delta":            {func(c *Config) { c.PublishDelta = math.NaN() }, "publish_delta: must be in (0, 100], got NaN"},
		"negative every":       {func(c *Config) { c.PublishEvery = -time.Second }, "publish_every: must not be negative, got -1s"},
		"no principals":        {func(c *Config) { c.MaxPrincipals = 0 }, "max_principals: must be at least 1, got 0"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mod(&cfg)
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case c.want != "" && (err == nil || err.Error() != c.want):
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

// BenchmarkApply measures the scorer's per-signal cost over many principals with the rate
// detector's signal shape (the stage applies one per counted request).
func BenchmarkApply(b *testing.B) {
	s, err := New(DefaultConfig(), fast, prof)
	if err != nil {
		b.Fatal(err)
	}
	const principals = 10_000
	sigs := make([]detect.Signal, principals)
	for i := range sigs {
		sigs[i] = sig("fast", detect.Frequency, 0, float64(i%100))
		sigs[i].Subject = fmt.Sprintf("user-%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		x := sigs[i%principals]
		x.Time = t0.Add(time.Duration(i) * 100 * time.Microsecond)
		x.Value = float64((i / principals) % 100)
		if _, err := s.Apply(&x); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// Findings feed the user-risk component as a noisy-or of their severities, fading with the
// half-life; Tick publishes the fading and finally forgets the principal.
func TestScorerFindingsFade(t *testing.T) {
	s := newScorer(t, func(c *Config) { c.FindingsHalfLife = time.Hour }, fast, prof)
	f := &event.Finding{ID: "f1", Time: t0, Tenant: "acme", Principal: event.Principal{Subject: "alice"},
		Detector: "ueba", Check: "new_value", Severity: 8, Summary: "first call of payments/transfer_funds"}
	rec := s.Finding(f)
	// risk 80 → 0.3/(0.3+0.3)·80 = 40
	if rec == nil || rec.Score != 40 || rec.Components[FindingsKey] != 80 || rec.Components["risk"] != 80 {
		t.Fatalf("record %+v, want 40 with findings 80", rec)
	}
	if len(rec.Evidence) != 1 || rec.Evidence[0].Detector != FindingsKey || rec.Evidence[0].Contribution != 40 ||
		!strings.Contains(rec.Evidence[0].Detail, "ueba/new_value") || !strings.Contains(rec.Explanation, "risk 40.0") {
		t.Fatalf("evidence %+v, explanation %q", rec.Evidence, rec.Explanation)
	}
	// A second finding of severity 5: 1 − (1−0.8)(1−0.5) = 0.9 → 45.
	f2 := *f
	f2.ID, f2.Severity = "f2", 5
	if rec := s.Finding(&f2); rec == nil || rec.Score != 45 {
		t.Fatalf("second finding record %+v, want 45", rec)
	}
	// One half-life later: 1 − (1−0.4)(1−0.25) = 0.55 → 27.5.
	recs := s.Tick(t0.Add(time.Hour))
	if len(recs) != 1 || recs[0].Score != 27.5 || !recs[0].Time.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after a half-life %+v, want 27.5", recs)
	}
	if recs := s.Tick(t0.Add(time.Hour + time.Second)); len(recs) != 0 {
		t.Fatalf("tick within PublishEvery published %+v", recs)
	}
	// Ten half-lives: the weights fall under 0.005 and the principal is forgotten with a final 0.
	recs = s.Tick(t0.Add(10 * time.Hour))
	if len(recs) != 1 || recs[0].Score != 0 || s.Stats().Principals != 0 {
		t.Fatalf("faded %+v, stats %+v", recs, s.Stats())
	}
}

// With no detector feeding the risk component (the rate detector alone), findings do not enter
// the score: the score stays the rate detector's own.
func TestScorerFindingsNeedARiskCheck(t *testing.T) {
	s := newScorer(t, nil, fast)
	f := &event.Finding{ID: "f1", Time: t0, Tenant: "acme", Principal: event.Principal{Subject: "alice"}, Severity: 9}
	if rec := s.Finding(f); rec != nil || s.Stats().Principals != 0 {
		t.Fatalf("finding scored %+v without a risk check", rec)
	}
	if got := s.Keys(); slices.Contains(got, FindingsKey) {
		t.Fatalf("keys %v", got)
	}
}

// The explanation ranks evidence by contribution and says feature, observed, baseline, whose
// baseline, peer percentile and window in one line.
func TestScorerExplanation(t *testing.T) {
	s := newScorer(t, nil, fast, sens, prof)
	a := sig("fast", detect.Frequency, 0, 90)
	a.Evidence = detect.Evidence{Feature: "calls_per_min", Observed: 312, Baseline: 4, BaselineSource: "self",
		PeerPercentile: 99.5, HasPeer: true, WindowStart: t0.Add(-time.Minute), WindowEnd: t0}
	b := sig("sens", detect.Sensitivity, 0, 70)
	b.Evidence = detect.Evidence{Feature: "sensitivity_per_min", Observed: 21, Baseline: 0.7, BaselineSource: "peers"}
	rec := apply(t, s, a, b)
	// 0.3·90 + 0.4·70 = 27 + 28 = 55
	if rec.Score != 55 || rec.Contributions["frequency"] != 27 || rec.Contributions["sensitivity"] != 28 {
		t.Fatalf("record %+v", rec)
	}
	if len(rec.Evidence) != 2 || rec.Evidence[0].Detector != "sens" || rec.Evidence[1].PeerPercentile == nil ||
		*rec.Evidence[1].PeerPercentile != 99.5 {
		t.Fatalf("evidence %+v", rec.Evidence)
	}
	want := "score 55 = frequency 27.0 + sensitivity 28.0 + risk 0.0: sens 70 (sensitivity_per_min 21 vs 0.7 peers); " +
		"fast 90 (calls_per_min 312 vs 4 self, peer p99.5, over 1m0s)"
	if rec.Explanation != want {
		t.Fatalf("explanation\n%s\nwant\n%s", rec.Explanation, want)
	}
	if ev := s.Explain("acme", "alice"); !reflect.DeepEqual(ev, rec.Evidence) {
		t.Fatalf("Explain %+v", ev)
	}
}
