package detectors

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/detectors/rate"
	"github.com/mcpwatch/mcpwatch/detectors/score"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/bench/detectload"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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

// unitConfig is a config where the rate score equals the number of calls in the last second.
func unitConfig() Config {
	cfg := DefaultConfig()
	cfg.Detectors = []string{"rate"}
	cfg.Rate.Window, cfg.Rate.Baseline, cfg.Rate.Ceiling = time.Second, 0, 100
	return cfg
}

func record(t testing.TB, topic string, e event.Event) *kgo.Record {
	t.Helper()
	r, err := kafkaio.RecordOf(topic, event.PrincipalKey(e.Tenant, e.Principal), &e)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// split decodes a handler's output into findings and scores, checking topics and keys.
func split(t *testing.T, names event.Topics, res kafkaio.Result) (findings []event.Finding, scores []event.Score) {
	t.Helper()
	for _, r := range res.Out {
		switch r.Topic {
		case names.Findings:
			var f event.Finding
			if err := event.Decode(r.Value, &f); err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != event.PrincipalKey(f.Tenant, f.Principal) {
				t.Fatalf("finding key %q for %s %+v", r.Key, f.Tenant, f.Principal)
			}
			findings = append(findings, f)
		case names.Scores:
			var s event.Score
			if err := event.Decode(r.Value, &s); err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != s.Key() || string(r.Key) != event.PrincipalKey(s.Tenant, event.Principal{Subject: s.Subject}) {
				t.Fatalf("score key %q for %s/%s", r.Key, s.Tenant, s.Subject)
			}
			scores = append(scores, s)
		default:
			t.Fatalf("output to %s", r.Topic)
		}
	}
	return findings, scores
}

// The handler routes findings and scores to their topics under the principal's key and parks
// what it cannot read, so one bad record neither stops the stage nor vanishes.
func TestHandlerRoutes(t *testing.T) {
	names := event.TopicNames("t")
	reg := prometheus.NewRegistry()
	h, err := Build(names, unitConfig(), reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 50 {
		recs = append(recs, record(t, names.Events, req("mallory", time.Duration(i)*time.Millisecond)))
	}
	bad := &kgo.Record{Topic: names.Events, Key: []byte("acme/x"), Value: []byte(`{"schema":1,"id":"x"`)}
	recs = append(recs, bad, record(t, names.Events, req("bob", time.Minute))) // bob's call expires mallory
	res, err := h.Handle(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Dead) != 1 || res.Dead[0].Record != bad {
		t.Fatalf("dead letters %+v, want the malformed record", res.Dead)
	}
	findings, scores := split(t, names, res)
	if len(findings) != 1 || findings[0].Score != 50 || findings[0].Principal.Subject != "mallory" {
		t.Fatalf("findings %+v, want one at score 50", findings)
	}
	if last := scores[len(scores)-1]; last.Subject != "mallory" || last.Score != 0 || !last.Time.Equal(t0.Add(time.Second+49*time.Millisecond)) {
		t.Fatalf("last score %+v, want mallory's final 0 when her window emptied, after bob's call a minute later", last)
	}
	if b := scores[len(scores)-2]; b.Subject != "bob" || b.Score != 1 {
		t.Fatalf("score %+v, want bob's 1", b)
	}
	for sel, want := range map[string]float64{
		`mcpwatch_detector_findings_total{detector="rate"}`:   1,
		`mcpwatch_detector_signals_total{detector="rate"}`:    51 + 1, // one per call, one expiry
		`mcpwatch_detector_events_total{detector="rate"}`:     51,
		`mcpwatch_detector_principals{detector="rate"}`:       1, // bob
		`mcpwatch_detector_evictions_total{detector="rate"}`:  1,
		`mcpwatch_detector_scores_total{detector="score"}`:    float64(len(scores)),
		`mcpwatch_detector_principals{detector="score"}`:      1, // bob
		`mcpwatch_detector_evictions_total{detector="score"}`: 1,
		`mcpwatch_detector_errors_total{detector="rate"}`:     0,
		`mcpwatch_detector_scores_total{detector="rate"}`:     0, // the rate detector publishes nothing itself
	} {
		if got := metric(t, reg, sel); got != want {
			t.Errorf("%s = %v, want %v", sel, got, want)
		}
	}
}

// metric sums the values of the counter or gauge `name{label="value",...}` over its label sets
// that carry the labels given.
func metric(t *testing.T, reg *prometheus.Registry, sel string) float64 {
	t.Helper()
	name, sels, _ := strings.Cut(strings.TrimSuffix(sel, "}"), "{")
	want := map[string]string{}
	for kv := range strings.SplitSeq(sels, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			want[k], _ = strconv.Unquote(v)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// An invalid config fails at construction, before a stage starts consuming.
func TestHandlerRejectsConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rate.Ceiling = 1
	if _, err := Build(event.TopicNames("t"), cfg, nil, nil); err == nil {
		t.Fatal("ceiling below baseline accepted")
	}
	if _, err := NewHandler(event.TopicNames("t"), nil, score.DefaultConfig(), nil, nil); err == nil {
		t.Fatal("a stage without detectors accepted")
	}
	if _, err := NewHandler(event.TopicNames("t"), []Detector{newLevel("score", detect.Risk)}, score.DefaultConfig(), nil, nil); err == nil {
		t.Fatal("a detector named like the scorer's metrics accepted")
	}
}

// level is a fake detector: for each event carrying an attribute named after it, it signals the
// attribute's value on its component and, at 100, reports a finding; it forgets a principal a
// minute after its last event.
type level struct {
	name   string
	comp   detect.Component
	last   map[string]time.Time // by score key
	subs   map[string][2]string // tenant, subject by score key
	order  []string
	counts detect.Stats
	// forge makes every signal claim to come from another detector.
	forge string
}

func newLevel(name string, c detect.Component) *level {
	return &level{name: name, comp: c, last: map[string]time.Time{}, subs: map[string][2]string{}}
}

func (l *level) Info() detect.Info {
	return detect.Info{Name: l.name, Checks: []detect.Check{{Name: l.name, Component: l.comp}}}
}

func (l *level) Observe(e *event.Event, out *detect.Output) {
	a, ok := e.Attributes[l.name]
	if !ok {
		l.counts.Ignored++
		return
	}
	v, _ := strconv.ParseFloat(a, 64)
	l.counts.Counted++
	sub := event.PrincipalID(e.Principal)
	k := event.ScoreKey(e.Tenant, sub)
	if _, seen := l.last[k]; !seen {
		l.order = append(l.order, k)
	}
	l.last[k], l.subs[k] = e.Time, [2]string{e.Tenant, sub}
	name := l.name
	if l.forge != "" {
		name = l.forge
	}
	out.Signals = append(out.Signals, detect.Signal{Detector: name, Check: l.name, Tenant: e.Tenant, Subject: sub, Time: e.Time,
		Component: l.comp, Value: v, Evidence: detect.Evidence{Feature: l.name, Observed: v, EventIDs: []detect.EventID{detect.MakeEventID(e.ID)}}})
	if v == 100 || math.IsNaN(v) {
		out.Findings = append(out.Findings, &event.Finding{ID: detect.FindingID(l.name, e.ID), Time: e.Time, Tenant: e.Tenant,
			Principal: e.Principal, Detector: l.name, Score: v, Summary: l.name + " at " + a})
	}
}

func (l *level) Expire(now time.Time, out *detect.Output) {
	keep := l.order[:0]
	for _, k := range l.order {
		if t := l.last[k]; !t.Add(time.Minute).After(now) {
			out.Signals = append(out.Signals, detect.Signal{Detector: l.name, Check: l.name, Tenant: l.subs[k][0], Subject: l.subs[k][1],
				Time: t.Add(time.Minute), Component: l.comp, Expired: true})
			delete(l.last, k)
			l.counts.EvictedIdle++
			continue
		}
		keep = append(keep, k)
	}
	l.order = keep
}

func (l *level) Stats() detect.Stats {
	s := l.counts
	s.Principals = len(l.last)
	return s
}

// at is an event of sub at offset d carrying fake detector values as attributes.
func at(sub string, d time.Duration, attrs ...string) event.Event {
	e := req(sub, d)
	e.Attributes = map[string]string{}
	for i := 0; i+1 < len(attrs); i += 2 {
		e.Attributes[attrs[i]] = attrs[i+1]
	}
	return e
}

func handle(t *testing.T, h kafkaio.Handler, names event.Topics, evs ...event.Event) kafkaio.Result {
	t.Helper()
	var recs []*kgo.Record
	for _, e := range evs {
		recs = append(recs, record(t, names.Events, e))
	}
	res, err := h.Handle(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// Two detectors feeding one principal's score yield ONE stream of score records for it, each
// the weighted combination of both detectors' latest values. Before the scorer, each detector
// wrote its own record under the same key of the compacted topic, so the latest writer's value
// replaced the other's: here the final record would have been the profile's 10 and mallory's
// frequency of 80 would have vanished from every gateway's policy.
func TestHandlerOneScorePerPrincipal(t *testing.T) {
	names := event.TopicNames("t")
	freq, prof := newLevel("freq", detect.Frequency), newLevel("profile", detect.Risk)
	cfg := score.DefaultConfig()
	cfg.PublishEvery = 0
	h, err := NewHandler(names, []Detector{freq, prof}, cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	res := handle(t, h, names,
		at("mallory", 0, "freq", "80"),              // 0.5·80 + 0.5·0 = 40
		at("mallory", time.Second, "profile", "10"), // 0.5·80 + 0.5·10 = 45
		at("alice", time.Second, "profile", "20"),   // 10
	)
	_, scores := split(t, names, res)
	byKey := map[string][]event.Score{}
	for _, s := range scores {
		byKey[s.Key()] = append(byKey[s.Key()], s)
		if len(s.Components) != 5 {
			t.Fatalf("record %+v: want frequency, risk, freq, profile and findings in every record", s)
		}
	}
	m := byKey["acme/mallory"]
	if len(m) != 2 || m[0].Score != 40 || m[1].Score != 45 {
		t.Fatalf("mallory's records %+v, want 40 then 45", m)
	}
	if want := map[string]float64{"frequency": 80, "risk": 10, "freq": 80, "profile": 10, "findings": 0}; !reflect.DeepEqual(m[1].Components, want) {
		t.Fatalf("components %v, want %v", m[1].Components, want)
	}
	if a := byKey["acme/alice"]; len(a) != 1 || a[0].Score != 10 {
		t.Fatalf("alice's records %+v", a)
	}

	// One detector going idle lowers the score; both gone publishes the final 0 once.
	res = handle(t, h, names, at("bob", 60500*time.Millisecond)) // mallory's freq expired (at 1m), profile not yet
	if _, s := split(t, names, res); len(s) != 1 || s[0].Subject != "mallory" || s[0].Score != 5 || !s[0].Time.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after freq expired: %+v, want mallory at 5 stamped 1m", s)
	}
	res = handle(t, h, names, at("bob", 2*time.Minute))
	_, s := split(t, names, res)
	if len(s) != 2 || s[0].Score != 0 || s[1].Score != 0 || !s[0].Time.Equal(t0.Add(61*time.Second)) {
		t.Fatalf("after everything expired: %+v, want mallory's and alice's final 0s", s)
	}
}

// A detector that emits signals it may not (another's name) is counted and logged, and cannot
// touch the score; a finding that cannot be encoded parks its event once, the rest goes on.
func TestHandlerMisbehavingDetectors(t *testing.T) {
	names := event.TopicNames("t")
	reg := prometheus.NewRegistry()
	good, forger, nan := newLevel("good", detect.Frequency), newLevel("forger", detect.Risk), newLevel("nan", detect.Risk)
	forger.forge = "good"
	h, err := NewHandler(names, []Detector{good, forger, nan}, score.DefaultConfig(), reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	e := at("mallory", 0, "good", "30", "forger", "100", "nan", "NaN")
	res := handle(t, h, names, e)
	if len(res.Dead) != 1 {
		t.Fatalf("dead letters %+v, want the event whose finding is not encodable, once", res.Dead)
	}
	f, s := split(t, names, res)
	if len(f) != 1 || f[0].Detector != "forger" {
		t.Fatalf("findings %+v, want the forger's (its finding is fine)", f)
	}
	if len(s) != 1 || s[0].Score != 15 || s[0].Components["good"] != 30 || s[0].Components["risk"] != 0 {
		t.Fatalf("scores %+v, want good's 30 weighed against a risk of 0 (the forged 100 refused): 15", s)
	}
	for sel, want := range map[string]float64{
		`mcpwatch_detector_errors_total{detector="forger"}`: 1,
		`mcpwatch_detector_errors_total{detector="nan"}`:    2, // the finding and the NaN signal
		`mcpwatch_detector_signals_total{detector="good"}`:  1,
	} {
		if got := metric(t, reg, sel); got != want {
			t.Errorf("%s = %v, want %v", sel, got, want)
		}
	}
}

// Replaying the same events gives the same findings and score records, byte for byte, however
// the events are split into batches: downstream deduplication and the compacted scores topic
// depend on it.
func TestHandlerReplayIsDeterministic(t *testing.T) {
	names := event.TopicNames("t")
	var evs []event.Event
	for i := range 600 {
		sub := "mallory" // 40 calls/s: rate findings
		switch i % 10 {
		case 0:
			sub = "alice"
		case 1:
			sub = "bob"
		}
		d := time.Duration(i) * 25 * time.Millisecond
		if i >= 300 {
			d += 2 * time.Minute // everybody idle in between: expiries
		}
		evs = append(evs, at(sub, d, "profile", strconv.Itoa(i%7*10)))
	}
	run := func(batch int) []*kgo.Record {
		cfg := DefaultConfig()
		r, err := rate.New(cfg.Rate)
		if err != nil {
			t.Fatal(err)
		}
		h, err := NewHandler(names, []Detector{r, newLevel("profile", detect.Risk)}, cfg.Score, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		var out []*kgo.Record
		for i := 0; i < len(evs); i += batch {
			res := handle(t, h, names, evs[i:min(i+batch, len(evs))]...)
			out = append(out, res.Out...)
		}
		return out
	}
	want := run(len(evs))
	f, s := split(t, names, kafkaio.Result{Out: want})
	if len(f) == 0 || len(s) < 10 {
		t.Fatalf("%d findings, %d scores: the replay exercises nothing", len(f), len(s))
	}
	for _, batch := range []int{len(evs), 1, 7, 100} {
		got := run(batch)
		if len(got) != len(want) {
			t.Fatalf("batches of %d: %d records, want %d", batch, len(got), len(want))
		}
		for i := range got {
			if got[i].Topic != want[i].Topic || string(got[i].Key) != string(want[i].Key) || string(got[i].Value) != string(want[i].Value) {
				t.Fatalf("batches of %d: record %d differs:\n%s\n%s", batch, i, got[i].Value, want[i].Value)
			}
		}
	}
}

// The detector as a real consumer-group stage: events in, findings out on Kafka.
func testStage(t *testing.T, brokers []string, names event.Topics) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "test"}, kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(names, 3, 1, 24)); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 60 {
		recs = append(recs, record(t, names.Events, req("mallory", time.Duration(i)*time.Millisecond)))
		recs = append(recs, record(t, names.Events, req("alice", time.Duration(i)*time.Second)))
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	h, err := Build(names, unitConfig(), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kafkaio.NewStage(kafkaio.Config{Brokers: brokers}, kafkaio.StageConfig{Name: "detect",
		Group: "detect-" + names.Events, Topics: []string{names.Events}, DeadLetterTopic: names.DeadLetter},
		h, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(sctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	rd, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "reader"}, kgo.MetadataMinAge(100*time.Millisecond),
		kgo.ConsumeTopics(names.Findings), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	fs := rd.PollFetches(ctx)
	if err := fs.Err0(); err != nil {
		t.Fatal(err)
	}
	r := fs.Records()[0]
	var f event.Finding
	if err := event.Decode(r.Value, &f); err != nil {
		t.Fatal(err)
	}
	if string(r.Key) != "acme/mallory" || f.Principal.Subject != "mallory" || f.Score != 50 {
		t.Fatalf("finding %s: %+v", r.Key, f)
	}
}

func TestStageFake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testStage(t, c.ListenAddrs(), event.TopicNames("fake"))
}

func TestStageKafka(t *testing.T) { testStage(t, testenv.Kafka(t), testenv.Topics(t)) }

// A finding carries the evidence behind its principal's score as it stands with the finding, and
// enters the user-risk component: mallory's finding raises her score past what her signals give.
func TestHandlerFindingsExplainedAndScored(t *testing.T) {
	names := event.TopicNames("t")
	freq, prof := newLevel("freq", detect.Frequency), newLevel("profile", detect.Risk)
	cfg := score.DefaultConfig()
	cfg.PublishEvery = 0
	h, err := NewHandler(names, []Detector{freq, prof}, cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	res := handle(t, h, names, at("mallory", 0, "profile", "30"), at("mallory", time.Second, "freq", "100"))
	findings, scores := split(t, names, res)
	if len(findings) != 1 {
		t.Fatalf("findings %+v", findings)
	}
	ev := findings[0].Evidence
	if len(ev) != 2 || ev[0].Detector != "freq" || ev[0].Observed != 100 || ev[1].Detector != "profile" {
		t.Fatalf("finding evidence %+v, want freq then profile", ev)
	}
	if want := "freq at 100 — freq 100 (freq 100 vs 0); profile 30 (profile 30 vs 0)"; findings[0].Explanation != want {
		t.Fatalf("explanation %q, want %q", findings[0].Explanation, want)
	}
	last := scores[len(scores)-1]
	// Signals alone: 0.5·100 + 0.5·30 = 65. The finding has no severity here, so it adds nothing.
	if last.Score != 65 || last.Explanation == "" {
		t.Fatalf("last score %+v", last)
	}
}

// The stage decodes records into one reused event whose strings refer to the records' bytes
// (event.DecodeReused). A detector or the scorer that kept such a string would keep a fetch's
// buffer alive and, once the client reuses it, publish someone else's bytes: overwriting every
// record after its batch must change nothing the stage publishes.
func TestHandlerKeepsNoRecordBytes(t *testing.T) {
	run := func(scribble bool) (out []string, findings int) {
		names := event.TopicNames("t")
		h, err := Build(names, DefaultConfig(), nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		gen := detectload.New(200, 3, 200*time.Microsecond)
		for range 300 {
			recs := make([]*kgo.Record, 0, 100)
			for range 100 {
				e := gen.Next()
				if e.MCP != nil && e.MCP.Direction == event.DirRequest && len(recs)%37 == 0 {
					e.Attributes = map[string]string{"mcp.tool.changed": e.MCP.Tool}
				}
				recs = append(recs, record(t, names.Events, e))
			}
			res, err := h.Handle(context.Background(), recs)
			if err != nil || len(res.Dead) > 0 {
				t.Fatalf("handle: %v, %d dead", err, len(res.Dead))
			}
			var batch []string // sorted: peer profiles come in map order
			for _, r := range res.Out {
				v := r.Value
				if r.Topic == names.Profiles && strings.Contains(string(r.Key), "/peer:") {
					v = canonicalPeerProfile(t, v)
				}
				batch = append(batch, r.Topic+" "+string(r.Key)+" "+string(v))
				if r.Topic == names.Findings {
					findings++
				}
			}
			slices.Sort(batch)
			out = append(out, batch...)
			if scribble {
				for _, r := range recs {
					for i := range r.Value {
						r.Value[i] = 'x'
					}
				}
			}
		}
		return out, findings
	}
	want, findings := run(false)
	got, _ := run(true)
	if findings == 0 {
		t.Fatal("no findings: the test exercises nothing the scorer keeps")
	}
	if len(got) != len(want) {
		t.Fatalf("%d records published after overwriting, %d without", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			j := 0
			for j < len(got[i]) && j < len(want[i]) && got[i][j] == want[i][j] {
				j++
			}
			t.Logf("first difference at byte %d: got %q, want %q", j, got[i][max(j-80, 0):min(j+80, len(got[i]))], want[i][max(j-80, 0):min(j+80, len(want[i]))])
			t.Fatalf("record %d differs after overwriting the records judged before it:\n got %.300s\nwant %.300s", i, got[i], want[i])
		}
	}
}

// canonicalPeerProfile re-encodes a peer group's profile record with its categories' values
// sorted and without its opaque state: the group keeps them in maps, so their order varies from
// run to run.
func canonicalPeerProfile(t *testing.T, b []byte) []byte {
	t.Helper()
	var p event.Profile
	if err := event.Decode(b, &p); err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Categories {
		slices.SortFunc(c.Values, func(a, b event.ProfileValue) int { return strings.Compare(a.Value, b.Value) })
	}
	p.State = nil
	out, err := event.Encode(&p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
