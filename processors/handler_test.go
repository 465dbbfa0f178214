package processors

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
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

var now = time.Date(2026, 11, 23, 9, 6, 13, 0, time.UTC)

// toolCall is a typical raw MCP tool call.
func toolCall() event.Event {
	return event.Event{
		Schema: event.SchemaVersion,
		ID:     "0193a5c4-7e1f-7cc3-b5d2-6a1f0e9d3b21",
		Time:   time.Date(2026, 11, 23, 9, 6, 12, 345_000_000, time.UTC),
		Source: event.SourceMCP, Observer: "gw-1", Tenant: "acme",
		Principal: event.Principal{Subject: "alice", ClientID: "claude-desktop", Roles: []string{"analyst", "sales"},
			TokenID: "tok_3f2a"},
		Correlation: event.Correlation{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SessionID: "s-1", RequestID: "7"},
		MCP: &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: "db_query",
			ProtocolVersion: "2025-11-25", Transport: "streamable-http", LatencyMS: 12.6},
		Target:   event.Target{Server: "sales-db", Sandbox: "sbx-1"},
		Network:  event.Network{SrcIP: "10.1.2.3", SrcPort: 51234},
		Outcome:  event.Outcome{Result: event.ResultAllowed, PolicyRule: "analysts-read-sales"},
		Size:     event.Size{Request: 312, Response: 2048},
		PII:      map[string]int{"email": 2, "phone_kr": 1},
		Severity: 0,
	}
}

var testTopics = event.TopicNames("unit")

func rawRecord(t testing.TB, key string, e event.Event) *kgo.Record {
	t.Helper()
	r, err := kafkaio.RecordOf(testTopics.Raw, key, &e)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The handler's contract per record: good records come out normalized on the events topic under
// the same key and headers; bad ones are dead-lettered with a reason saying why, never retried.
func TestHandler(t *testing.T) {
	good := toolCall()
	noTenant := toolCall()
	noTenant.Tenant = ""
	traced := rawRecord(t, "acme/alice", good)
	traced.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}}
	newer := rawRecord(t, "acme/alice", good)
	newer.Value = []byte(`{"schema":99,"id":"x","time":"2026-01-01T00:00:00Z","source":"mcp","tenant":"acme"}`)

	cases := []struct {
		name   string
		rec    *kgo.Record
		key    string // of the output; "" means dead-lettered
		reason string // substring of the dead-letter reason
	}{
		{"good", rawRecord(t, "acme/alice", good), "acme/alice", ""},
		{"keyless gets the principal key", rawRecord(t, "", good), "acme/alice", ""},
		{"headers travel", traced, "acme/alice", ""},
		{"not json", &kgo.Record{Topic: testTopics.Raw, Key: []byte("k"), Value: []byte(`{"schema":1,"id":`)}, "", "malformed"},
		{"empty value", &kgo.Record{Topic: testTopics.Raw, Key: []byte("k")}, "", "malformed"},
		{"no tenant", rawRecord(t, "k", noTenant), "", "no tenant"},
		{"newer schema", newer, "", "unsupported schema"},
	}
	h := handler(testTopics, nil, func() time.Time { return now })
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := h.Handle(context.Background(), []*kgo.Record{c.rec})
			if err != nil {
				t.Fatalf("handler returned a batch error (would retry forever): %v", err)
			}
			if c.key == "" {
				if len(res.Out) != 0 || len(res.Dead) != 1 || res.Dead[0].Record != c.rec ||
					!strings.Contains(res.Dead[0].Reason.Error(), c.reason) {
					t.Fatalf("want a dead letter with %q, got out=%d dead=%v", c.reason, len(res.Out), res.Dead)
				}
				return
			}
			if len(res.Dead) != 0 || len(res.Out) != 2 {
				t.Fatalf("want the event and its OCSF object, got out=%d dead=%v", len(res.Out), res.Dead)
			}
			out, ocsf := res.Out[0], res.Out[1]
			if ocsf.Topic != testTopics.OCSF || string(ocsf.Key) != c.key || kafkaio.Header(ocsf, HeaderEventID) != good.ID ||
				!strings.Contains(string(ocsf.Value), `"uid":"`+good.ID+`"`) {
				t.Fatalf("OCSF output to %s key %q: %s", ocsf.Topic, ocsf.Key, ocsf.Value)
			}
			if out.Topic != testTopics.Events || string(out.Key) != c.key {
				t.Fatalf("output to %s key %q", out.Topic, out.Key)
			}
			for _, h := range c.rec.Headers {
				if kafkaio.Header(out, h.Key) != string(h.Value) {
					t.Fatalf("header %s lost", h.Key)
				}
			}
			var e event.Event
			if err := event.Decode(out.Value, &e); err != nil {
				t.Fatal(err)
			}
			if e.ID != good.ID || e.Normalized == nil || e.Normalized.Signature != "MCP-1001" || e.Normalized.CEF == "" {
				t.Fatalf("output not normalized: %+v", e.Normalized)
			}
		})
	}
}

// stageRun drives the handler as a real stage against a broker: every good raw record must
// arrive normalized on the events topic and every bad one on the dead-letter topic.
func stageRun(t *testing.T, brokers []string, names event.Topics) {
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
	ids := map[string]bool{}
	for i := range 30 {
		e := toolCall()
		e.ID = event.NewID()
		e.Principal.Subject = []string{"alice", "bob", "carol"}[i%3]
		if i%10 == 9 {
			e.Tenant = ""
		} else {
			ids[e.ID] = true
		}
		r, err := kafkaio.RecordOf(names.Raw, event.PrincipalKey("acme", e.Principal), &e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	recs = append(recs, &kgo.Record{Topic: names.Raw, Key: []byte("acme/x"), Value: []byte("garbage")})
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	st, err := kafkaio.NewStage(kafkaio.Config{Brokers: brokers}, kafkaio.StageConfig{
		Name: "normalize", Group: "normalize-" + names.Raw, Topics: []string{names.Raw}, DeadLetterTopic: names.DeadLetter,
		ShutdownTimeout: time.Second,
	}, Handler(names, slog.New(slog.DiscardHandler)), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
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

	read := func(topic string, want int) []*kgo.Record {
		rc, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "reader"},
			kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var got []*kgo.Record
		for len(got) < want && ctx.Err() == nil {
			got = append(got, rc.PollFetches(ctx).Records()...)
		}
		return got
	}
	out := read(names.Events, len(ids))
	ocsf := read(names.OCSF, len(ids))
	dead := read(names.DeadLetter, 4)
	// Every normalized event has its OCSF object on the OCSF topic, bare, under the same key and
	// named by header, and not inside the event record.
	if len(ocsf) != len(ids) {
		t.Fatalf("got %d OCSF records, want %d", len(ocsf), len(ids))
	}
	for _, r := range ocsf {
		var o struct {
			ClassUID int `json:"class_uid"`
			Metadata struct {
				UID string `json:"uid"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(r.Value, &o); err != nil {
			t.Fatal(err)
		}
		if id := kafkaio.Header(r, HeaderEventID); o.ClassUID != 6003 || !ids[id] || o.Metadata.UID != id ||
			!strings.HasPrefix(string(r.Key), "acme/") {
			t.Fatalf("OCSF record %s (key %s, header id %s) does not render its event", r.Value, r.Key, id)
		}
	}
	if len(out) != len(ids) || len(dead) != 4 {
		t.Fatalf("got %d normalized and %d dead letters, want %d and 4", len(out), len(dead), len(ids))
	}
	for _, r := range out {
		var e event.Event
		if err := event.Decode(r.Value, &e); err != nil {
			t.Fatal(err)
		}
		if !ids[e.ID] || e.Normalized == nil || len(e.Normalized.OCSF) > 0 || string(r.Key) != event.PrincipalKey(e.Tenant, e.Principal) {
			t.Fatalf("unexpected output %s key %s normalized %v", e.ID, r.Key, e.Normalized)
		}
		delete(ids, e.ID)
	}
	for _, d := range dead {
		if kafkaio.Header(d, kafkaio.HeaderDLQStage) != "normalize" || kafkaio.Header(d, kafkaio.HeaderDLQReason) == "" {
			t.Fatalf("dead letter without its reason: %v", d.Headers)
		}
	}
}

func TestStageFake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stageRun(t, c.ListenAddrs(), event.TopicNames("fake"))
}

func TestStageKafka(t *testing.T) {
	stageRun(t, testenv.Kafka(t), testenv.Topics(t))
}
