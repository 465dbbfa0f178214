package response

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/component/componenttest"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

func kafkaClient(t *testing.T, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "test"},
		append([]kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// reader follows topic from its start.
type reader struct {
	t  *testing.T
	cl *kgo.Client
}

func newReader(t *testing.T, brokers []string, topic string) reader {
	return reader{t, kafkaClient(t, brokers, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))}
}

// next returns the next n records, failing the test if they do not come within 30s.
func (r reader) next(n int) []*kgo.Record {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < n {
		f := r.cl.PollRecords(ctx, n-len(got))
		if ctx.Err() != nil {
			r.t.Fatalf("got %d of %d records", len(got), n)
		}
		got = append(got, f.Records()...)
	}
	return got
}

// The responder as deployed: both stages on a real consumer group. It checks the design's
// central promise: the revocation reaches the control topic while the webhook receiver is still
// holding the webhook, and the webhook is then delivered, verified, and recorded.
func testStages(t *testing.T, brokers []string, names event.Topics) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := kafkaio.EnsureTopics(ctx, kafkaClient(t, brokers), kafkaio.Topics(names, 3, 1, 24)); err != nil {
		t.Fatal(err)
	}

	release := make(chan struct{})
	deliveries := make(chan Delivery, 10)
	rc, err := NewReceiver(secret, func(_ context.Context, d Delivery) error { deliveries <- d; return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // the server notices a closed connection only after the body
		r.Body = io.NopCloser(bytes.NewReader(body))
		select {
		case <-release:
			rc.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()

	cfg := DefaultConfig()
	cfg.WebhookURL, cfg.WebhookSecret, cfg.WebhookTimeout = srv.URL, secret, time.Minute

	hot, cold := finding(95), finding(30)
	hot.Time, cold.Time = time.Now(), time.Now()
	cold.Principal.Subject = "alice"
	var recs []*kgo.Record
	for _, f := range []*event.Finding{hot, cold} {
		rec, err := kafkaio.RecordOf(names.Findings, event.PrincipalKey(f.Tenant, f.Principal), f)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	recs = append(recs, &kgo.Record{Topic: names.Findings, Key: []byte("acme/x"), Value: []byte(`{"schema":1,`)})
	if err := kafkaClient(t, brokers).ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// Both stages as the host builds them, sharing one metrics registry as in `mcpwatch run`.
	set := componenttest.Settings(t, TypeRespond, brokers, names)
	var stages []component.Component
	for _, f := range []component.Factory{NewRespondFactory(), NewNotifyFactory()} {
		if !f.Enabled(&cfg) {
			t.Fatalf("%s not enabled with a webhook", f.Type())
		}
		set.Type = f.Type()
		c, err := f.Create(ctx, set, &cfg)
		if err != nil {
			t.Fatal(err)
		}
		stages = append(stages, c)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, len(stages))
	for _, s := range stages {
		go func() { done <- s.Run(sctx) }()
	}
	defer func() {
		stop()
		for _, s := range stages {
			if err := <-done; err != nil {
				t.Error(err)
			}
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		}
	}()

	released := false
	defer func() { // runs before the stages stop, so that a failing test does not hang in shutdown
		if !released {
			close(release)
		}
	}()

	// The webhook is held by the receiver; the revocation must not wait for it.
	ctl := newReader(t, brokers, names.Control).next(1)[0]
	var c event.Control
	if err := event.Decode(ctl.Value, &c); err != nil {
		t.Fatal(err)
	}
	if string(ctl.Key) != "revoke/subject/acme/mallory" || c.FindingID != hot.ID || c.Value != "mallory" {
		t.Fatalf("control %s: %+v", ctl.Key, c)
	}
	actions := newReader(t, brokers, names.Actions)
	first := actions.next(1)[0]
	var a event.Action
	if err := event.Decode(first.Value, &a); err != nil {
		t.Fatal(err)
	}
	if a.Kind != event.ActionRevoke || a.Status != StatusSucceeded || a.Target != string(ctl.Key) || string(first.Key) != "acme/mallory" {
		t.Fatalf("first action %s: %+v, want the revocation while the webhook is held", first.Key, a)
	}

	close(release)
	released = true
	var d Delivery
	select {
	case d = <-deliveries:
	case <-ctx.Done():
		t.Fatal("the webhook never reached the receiver")
	}
	if d.ID != hot.ID || d.Payload.Data.Actions[0].Target != string(ctl.Key) {
		t.Fatalf("delivery %+v", d)
	}
	second := actions.next(1)[0]
	if err := event.Decode(second.Value, &a); err != nil {
		t.Fatal(err)
	}
	if a.Kind != event.ActionWebhook || a.Status != StatusSucceeded || a.FindingID != hot.ID || a.Attempts != 1 {
		t.Fatalf("webhook action %+v", a)
	}
	// The garbage finding is parked by each stage, with the stage named.
	stagesSeen := map[string]bool{}
	for _, dl := range newReader(t, brokers, names.DeadLetter).next(2) {
		stagesSeen[kafkaio.Header(dl, kafkaio.HeaderDLQStage)] = true
	}
	if !stagesSeen[StageRespond] || !stagesSeen[StageNotify] {
		t.Fatalf("dead letters from stages %v", stagesSeen)
	}
	select {
	case d := <-deliveries:
		t.Fatalf("a second webhook was delivered: %+v", d)
	default:
	}
}

func TestStagesFake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testStages(t, c.ListenAddrs(), event.TopicNames("fake"))
}

func TestStagesKafka(t *testing.T) { testStages(t, testenv.Kafka(t), testenv.Topics(t)) }

// Without a webhook the notifying stage is off, and refuses to be built when asked for by name.
func TestNotifyNeedsWebhook(t *testing.T) {
	cfg := DefaultConfig()
	if !NewRespondFactory().Enabled(&cfg) || NewNotifyFactory().Enabled(&cfg) {
		t.Fatal("without a webhook: respond must be enabled, notify not")
	}
	set := componenttest.Settings(t, TypeNotify, []string{"127.0.0.1:1"}, event.TopicNames("fake"))
	if _, err := NewNotifyFactory().Create(context.Background(), set, &cfg); err == nil {
		t.Fatal("notify built without a webhook URL")
	}
}
