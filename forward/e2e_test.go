package forward_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/forward"
	"github.com/mcpwatch/mcpwatch/forward/internal/rsyslogd"
	"github.com/mcpwatch/mcpwatch/forward/syslog"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// hostileTools are tool names that stress CEF escaping and syslog framing.
var hostileTools = []string{
	"plain", "a|b||c", "k=v=w", `C:\tools\new`, "line1\nline2\r\n", "주민등록번호_조회", "tab\there",
	"\x1b[31mred", "<13>1 2025-01-01T00:00:00Z evil app - - - forged", strings.Repeat("긴|=\\", 700),
}

// TestForwardEndToEnd runs the forward stage from a real Kafka normalized-events topic to a real
// rsyslogd over TLS 1.3. It proves the delivery contract: nothing is committed while the
// collector is down; once it is up, every event and finding arrives byte for byte (including
// across a collector restart), the offsets are committed after, unsendable records are
// dead-lettered with their reason, and a restarted stage does not send committed records again.
func TestForwardEndToEnd(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	names := testenv.Topics(t)
	kc := kafkaio.Config{Brokers: brokers}
	cl, err := kafkaio.NewClient(kc)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(names, 3, 1, 24)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		_, _ = adm.DeleteTopics(dctx, names.Events, names.Findings, names.DeadLetter, names.Raw, names.Scores, names.Actions, names.Control)
	})

	pki := rsyslogd.NewPKI(t, t.TempDir(), "collector")
	d := rsyslogd.Start(t, rsyslogd.Options{PKI: &pki})
	d.Kill() // the collector is down when the stage starts

	reg := prometheus.NewRegistry()
	client, err := syslog.NewClient(syslog.Config{Address: d.Addr, CAFile: pki.CAFile, ServerName: "localhost",
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}, syslog.WithRegisterer(reg), syslog.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	f, err := syslog.NewFormatter(syslog.FormatterConfig{Facility: syslog.DefaultFacility, Hostname: "gw-e2e", SDID: "mcpwatch@32473"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := forward.NewHandler(forward.HandlerConfig{Topics: names, Formatter: f, FindingCEF: findingCEF}, client, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	group := "test-" + testenv.Unique(t)
	runStage := func(ctx context.Context) (stop func()) {
		st, err := forward.NewStage(kc, forward.StageOptions{Group: group, MaxPoll: 50}, h, prometheus.NewRegistry(), log)
		if err != nil {
			t.Fatal(err)
		}
		sctx, scancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- st.Run(sctx) }()
		return func() {
			scancel()
			if err := <-done; err != nil {
				t.Errorf("stage shutdown: %v", err)
			}
		}
	}

	// want maps an id to the CEF line that must arrive for it.
	want := map[string]string{}
	produce := func(n, findings int) {
		var recs []*kgo.Record
		for i := range n {
			e := normalized(t, len(want)+i, event.SourceMCP, i%11, hostileTools[i%len(hostileTools)])
			e.Principal.Subject = "user" + strconv.Itoa(i%7)
			r, err := kafkaio.RecordOf(names.Events, event.PrincipalKey(e.Tenant, e.Principal), &e)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
			want[e.ID] = e.Normalized.CEF
		}
		for i := range findings {
			fd := event.Finding{ID: event.NewID(), Time: time.Now(), Tenant: "acme", Detector: "rate", Score: 95,
				Severity: 9, Summary: "call burst | 주의 = " + strconv.Itoa(i)}
			r, err := kafkaio.RecordOf(names.Findings, "acme/user"+strconv.Itoa(i), &fd)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
			want[fd.ID] = findingCEF(fd)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(120, 3)
	unnormalized := normalized(t, 0, event.SourceMCP, 1, "x")
	unnormalized.Normalized = nil
	bad := []*kgo.Record{{Topic: names.Events, Key: []byte("acme/bad"), Value: []byte(`{"schema":1,"id":`)}}
	r, _ := kafkaio.RecordOf(names.Events, "acme/bad", &unnormalized)
	bad = append(bad, r)
	if err := cl.ProduceSync(ctx, bad...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	stop := runStage(ctx)
	// Collector down: the stage keeps retrying and commits nothing.
	time.Sleep(3 * time.Second)
	if n := committed(t, ctx, adm, group); n != 0 {
		t.Fatalf("%d offsets committed while the collector was down", n)
	}
	d.Restart()
	waitDelivered(t, d, want)
	waitCommitted(t, ctx, adm, group, names)

	// The collector restarts (SIGKILL) between waves; the second wave still arrives whole.
	d.Restart()
	produce(80, 2)
	waitDelivered(t, d, want)
	waitCommitted(t, ctx, adm, group, names)
	if st, ok := client.TLSState(); !ok || st.Version != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(st.Version))
	}
	stop()

	// Byte-exact MSG and the documented header for every message.
	for _, line := range rsyslogd.Lines(d.Fields) {
		fl := rsyslogd.Fields(line)
		id := strings.TrimSuffix(strings.TrimPrefix(fl[6], `[mcpwatch@32473 id="`), `"]`)
		if fl[7] != want[id] || fl[2] != "gw-e2e" || fl[3] != "mcpwatch" {
			t.Errorf("message %s arrived as %q, want MSG %q", id, line, want[id])
		}
	}
	if sent := metric(t, reg, "mcpwatch_forward_messages_total"); sent < float64(len(want)) {
		t.Errorf("mcpwatch_forward_messages_total %v, want at least %d", sent, len(want))
	}
	if n := metric(t, reg, "mcpwatch_syslog_connects_total"); n < 2 {
		t.Errorf("mcpwatch_syslog_connects_total %v, want a reconnect after the collector restarts", n)
	}

	// Unsendable records were dead-lettered with their reasons.
	reasons := deadLetters(t, ctx, brokers, names.DeadLetter, 2)
	if !strings.Contains(reasons, "malformed") || !strings.Contains(reasons, "no CEF line") {
		t.Errorf("dead-letter reasons: %s", reasons)
	}

	// A new run of the stage resumes after the committed offsets: nothing is sent again.
	before := len(rsyslogd.Lines(d.Raw))
	stop = runStage(ctx)
	time.Sleep(3 * time.Second)
	stop()
	if after := len(rsyslogd.Lines(d.Raw)); after != before {
		t.Errorf("restarted stage sent %d committed records again", after-before)
	}
	t.Logf("delivered %d messages (%d lines incl. duplicates)", len(want), before)
}

// metric sums the counter name over its labels.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// waitDelivered waits until every wanted id arrived at the collector.
func waitDelivered(t *testing.T, d *rsyslogd.Daemon, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		seen := map[string]bool{}
		for _, line := range rsyslogd.Lines(d.Fields) {
			fl := rsyslogd.Fields(line)
			if len(fl) == 8 {
				seen[strings.TrimSuffix(strings.TrimPrefix(fl[6], `[mcpwatch@32473 id="`), `"]`)] = true
			}
		}
		missing := 0
		for id := range want {
			if !seen[id] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages never reached the collector\n%s", missing, len(want), d.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// committed counts the partitions with a committed offset for group.
func committed(t *testing.T, ctx context.Context, adm *kadm.Client, group string) int {
	t.Helper()
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At >= 0 {
			n++
		}
	})
	return n
}

// waitCommitted waits until the group's committed offsets reach the end of the input topics.
func waitCommitted(t *testing.T, ctx context.Context, adm *kadm.Client, group string, names event.Topics) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ends, err := adm.ListEndOffsets(ctx, names.Events, names.Findings)
		if err != nil {
			t.Fatal(err)
		}
		offs, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		behind := 0
		ends.Each(func(e kadm.ListedOffset) {
			if e.Offset == 0 {
				return
			}
			if o, ok := offs.Lookup(e.Topic, e.Partition); !ok || o.At < e.Offset {
				behind++
			}
		})
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d partitions not committed to their end", behind)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deadLetters reads n records from the dead-letter topic and returns their stage and reason
// headers.
func deadLetters(t *testing.T, ctx context.Context, brokers []string, topic string, n int) string {
	t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []string
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for len(out) < n {
		fs := c.PollFetches(fctx)
		if fctx.Err() != nil {
			t.Fatalf("%d of %d dead letters: %q", len(out), n, out)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if s := kafkaio.Header(r, kafkaio.HeaderDLQStage); s != forward.StageName {
				t.Errorf("dead letter from stage %q", s)
			}
			out = append(out, kafkaio.Header(r, kafkaio.HeaderDLQReason))
		})
	}
	return strings.Join(out, "\n")
}
