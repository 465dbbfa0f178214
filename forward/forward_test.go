package forward_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/forward"
	"github.com/mcpwatch/mcpwatch/forward/syslog"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/normalize"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var unitTopics = event.TopicNames("unit")

// sender records what it was asked to send, or fails.
type sender struct {
	batches [][]byte
	err     error
}

func (s *sender) Send(_ context.Context, frames []byte) error {
	if s.err != nil {
		return s.err
	}
	if len(frames) > 0 {
		s.batches = append(s.batches, frames)
	}
	return nil
}

// messages splits every sent batch into its SYSLOG-MSGs.
func (s *sender) messages(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, b := range s.batches {
		for len(b) > 0 {
			m, rest, err := syslog.ReadFrame(b)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(m))
			b = rest
		}
	}
	return out
}

// normalized returns a normalized tool-call event as the process stage writes it.
func normalized(t testing.TB, i int, src event.Source, severity int, tool string) event.Event {
	t.Helper()
	raw := event.Event{Schema: event.SchemaVersion, ID: event.NewID(), Time: time.Date(2025, 1, 22, 9, 6, 12, i*1000, time.UTC),
		Source: src, Tenant: "acme", Principal: event.Principal{Subject: "alice"}, Severity: severity,
		MCP: &event.MCP{Method: "tools/call", Tool: tool, Direction: event.DirRequest}}
	e, err := normalize.Normalize(raw, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func record[T event.Record](t testing.TB, topic string, v *T) *kgo.Record {
	t.Helper()
	r, err := kafkaio.RecordOf(topic, "acme/alice", v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func findingCEF(f event.Finding) string {
	return normalize.NewCEF("mcpwatch", "mcpwatch", "test", "MCP-F|"+f.Detector, f.Summary, f.Severity).Ext("externalId", f.ID).String()
}

func newHandler(t testing.TB, s forward.Sender, mutate func(*forward.HandlerConfig)) *forward.Handler {
	t.Helper()
	f, err := syslog.NewFormatter(syslog.FormatterConfig{Facility: syslog.DefaultFacility, Hostname: "gw", SDID: "mcpwatch@32473", MaxMessage: 4096})
	if err != nil {
		t.Fatal(err)
	}
	cfg := forward.HandlerConfig{Topics: unitTopics, Formatter: f, FindingCEF: findingCEF}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := forward.NewHandler(cfg, s, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// The handler's contract per record: normalized events and findings go out as one batch with
// their CEF line as MSG; what can never be sent is dead-lettered with a reason; nothing is
// silently dropped.
func TestHandler(t *testing.T) {
	good := normalized(t, 0, event.SourceMCP, 3, "db_query")
	unnormalized := good
	unnormalized.Normalized = nil
	forged := good
	forged.Normalized = &event.Normalized{Signature: "MCP-1001", CEF: "CEF:0|x|y|z|MCP-1001|n|1|msg=a\n<14>1 forged"}
	huge := good
	huge.Normalized = &event.Normalized{Signature: "MCP-1001", CEF: "CEF:0|x|y|z|MCP-1001|n|1|msg=" + strings.Repeat("x", 5000)}
	finding := event.Finding{ID: "f-1", Time: good.Time, Tenant: "acme", Detector: "rate", Score: 91, Severity: 9, Summary: "burst"}

	recs := []*kgo.Record{
		record(t, unitTopics.Events, &good),
		{Topic: unitTopics.Events, Value: []byte(`{"schema":1,"id":`)},
		record(t, unitTopics.Events, &unnormalized),
		record(t, unitTopics.Events, &forged),
		record(t, unitTopics.Events, &huge),
		record(t, unitTopics.Findings, &finding),
		{Topic: unitTopics.Raw, Value: []byte(`{}`)},
	}
	s := &sender{}
	res, err := newHandler(t, s, nil).Handle(t.Context(), recs)
	if err != nil {
		t.Fatal(err)
	}
	msgs := s.messages(t)
	if len(s.batches) != 1 || len(msgs) != 2 {
		t.Fatalf("sent %d batches, %d messages; want one batch of 2", len(s.batches), len(msgs))
	}
	if want := `<110>1 2025-01-22T09:06:12.000000Z gw mcpwatch - MCP-1001 [mcpwatch@32473 id="` + good.ID + `"] ` + good.Normalized.CEF; msgs[0] != want {
		t.Errorf("event message\n got %q\nwant %q", msgs[0], want)
	}
	if want := `<106>1 2025-01-22T09:06:12.000000Z gw mcpwatch - MCP-F|rate [mcpwatch@32473 id="f-1"] ` + findingCEF(finding); msgs[1] != want {
		t.Errorf("finding message\n got %q\nwant %q", msgs[1], want)
	}
	reasons := map[int]string{1: "malformed", 2: "no CEF line", 3: "control character", 4: "size limit", 6: "not forwarded"}
	if len(res.Dead) != len(reasons) {
		t.Fatalf("%d dead letters, want %d: %v", len(res.Dead), len(reasons), res.Dead)
	}
	for _, d := range res.Dead {
		i := indexOf(recs, d.Record)
		if !strings.Contains(d.Reason.Error(), reasons[i]) {
			t.Errorf("record %d dead-lettered for %q, want %q", i, d.Reason, reasons[i])
		}
	}
}

func indexOf(recs []*kgo.Record, r *kgo.Record) int {
	for i, x := range recs {
		if x == r {
			return i
		}
	}
	return -1
}

// Filters skip records (committed, not sent, not dead-lettered); without FindingCEF the
// findings topic is not read at all.
func TestHandlerFilters(t *testing.T) {
	recs := []*kgo.Record{}
	for i, c := range []struct {
		src event.Source
		sev int
	}{{event.SourceMCP, 2}, {event.SourceMCP, 7}, {event.SourceKernel, 8}, {event.SourceOTel, 9}} {
		e := normalized(t, i, c.src, c.sev, "t"+strconv.Itoa(i))
		recs = append(recs, record(t, unitTopics.Events, &e))
	}
	s := &sender{}
	h := newHandler(t, s, func(c *forward.HandlerConfig) {
		c.MinSeverity, c.Sources, c.FindingCEF = 5, []event.Source{event.SourceMCP, event.SourceKernel}, nil
	})
	res, err := h.Handle(t.Context(), recs)
	if err != nil || len(res.Dead) != 0 {
		t.Fatalf("err %v, dead %v", err, res.Dead)
	}
	msgs := s.messages(t)
	if len(msgs) != 2 || !strings.Contains(msgs[0], "cs1=t1") || !strings.Contains(msgs[1], "cs1=t2") {
		t.Fatalf("sent %q, want the MCP event of severity 7 and the kernel event of severity 8", msgs)
	}
	cfg := forward.HandlerConfig{Topics: unitTopics}
	if got := cfg.InputTopics(); len(got) != 1 || got[0] != unitTopics.Events {
		t.Fatalf("input topics without findings: %v", got)
	}
}

// A failed send fails the batch (the stage retries it uncommitted) and dead-letters nothing.
func TestHandlerSendError(t *testing.T) {
	e := normalized(t, 0, event.SourceMCP, 1, "x")
	boom := errors.New("collector unreachable")
	res, err := newHandler(t, &sender{err: boom}, nil).Handle(t.Context(), []*kgo.Record{
		record(t, unitTopics.Events, &e), {Topic: unitTopics.Events, Value: []byte("x")}})
	if !errors.Is(err, boom) || len(res.Dead) != 0 || len(res.Out) != 0 {
		t.Fatalf("res %+v err %v", res, err)
	}
}

func TestConfigValidate(t *testing.T) {
	f, _ := syslog.NewFormatter(syslog.FormatterConfig{})
	for name, c := range map[string]forward.HandlerConfig{
		"no formatter": {Topics: unitTopics},
		"no topics":    {Formatter: f},
		"severity":     {Topics: unitTopics, Formatter: f, MinSeverity: 11},
		"source":       {Topics: unitTopics, Formatter: f, Sources: []event.Source{"smtp"}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := forward.ParseSources("mcp, kernel"); err != nil {
		t.Error(err)
	}
	if _, err := forward.ParseSources("mcp,ebpf"); err == nil {
		t.Error("ebpf accepted as a source")
	}
}

func TestHeader(t *testing.T) {
	for cef, want := range map[string]struct {
		sig string
		sev int
		ok  bool
	}{
		"CEF:0|v|p|1|MCP-1001|Tool call|3|k=v": {"MCP-1001", 3, true},
		`CEF:0|v\|x|p|1|A\|B|n|10|`:            {"A|B", 10, true},
		`CEF:0|v|p|1|a\\b|n|0|`:                {`a\b`, 0, true},
		"CEF:0|v|p|1|s|n|High|":                {"s", 0, false},
		"CEF:0|v|p|1|s|n|11|":                  {"s", 0, false},
		"CEF:0|v|p|1|s|n|7":                    {"", 0, false},
		"":                                     {"", 0, false},
	} {
		sig, sev, ok := forward.Header(cef)
		if sig != want.sig || sev != want.sev || ok != want.ok {
			t.Errorf("Header(%q) = %q, %d, %v; want %+v", cef, sig, sev, ok, want)
		}
	}
}
