package detectors

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func record(t testing.TB, topic string, e event.Event) *kgo.Record {
	t.Helper()
	r, err := kafkaio.RecordOf(topic, event.PrincipalKey(e.Tenant, e.Principal), &e)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The handler routes findings and scores to their topics under the principal's key and parks
// what it cannot read, so one bad record neither stops the stage nor vanishes.
func TestHandlerRoutes(t *testing.T) {
	names := event.TopicNames("t")
	reg := prometheus.NewRegistry()
	cfg := DefaultRateConfig()
	unit(&cfg)
	h, err := Handler(names, cfg, reg, slog.New(slog.DiscardHandler))
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
	var findings []event.Finding
	var scores []event.Score
	for _, r := range res.Out {
		switch r.Topic {
		case names.Findings:
			var f event.Finding
			if err := event.Decode(r.Value, &f); err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != "acme/mallory" {
				t.Fatalf("finding key %q", r.Key)
			}
			findings = append(findings, f)
		case names.Scores:
			var s event.Score
			if err := event.Decode(r.Value, &s); err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != event.PrincipalKey(s.Tenant, event.Principal{Subject: s.Subject}) {
				t.Fatalf("score key %q for %s/%s", r.Key, s.Tenant, s.Subject)
			}
			scores = append(scores, s)
		default:
			t.Fatalf("output to %s", r.Topic)
		}
	}
	if len(findings) != 1 || findings[0].Score != 50 {
		t.Fatalf("findings %+v, want one at score 50", findings)
	}
	if last := scores[len(scores)-1]; last.Subject != "mallory" || last.Score != 0 {
		t.Fatalf("last score %+v, want mallory's final 0 after bob's call a minute later", last)
	}
	if n := metric(t, reg, "mcpwatch_detector_findings_total"); n != 1 {
		t.Fatalf("findings metric %v", n)
	}
	if n := metric(t, reg, "mcpwatch_detector_principals"); n != 1 {
		t.Fatalf("principals gauge %v, want 1 (bob)", n)
	}
}

// metric sums the values of the counter or gauge name over its label sets.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// An invalid config fails at construction, before a stage starts consuming.
func TestHandlerRejectsConfig(t *testing.T) {
	cfg := DefaultRateConfig()
	cfg.Ceiling = 1
	if _, err := Handler(event.TopicNames("t"), cfg, nil, nil); err == nil {
		t.Fatal("ceiling below baseline accepted")
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
	cfg := DefaultRateConfig()
	unit(&cfg)
	log := slog.New(slog.DiscardHandler)
	h, err := Handler(names, cfg, nil, log)
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
