package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	whSecret   = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // the Standard Webhooks example, 24 bytes
	routingKey = "R0UTINGKEY0123456789abcdefABCDEF"       // 32 letters and digits
	slackPath  = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
)

// now is the tests' clock: near the wall clock, because webhook receivers check timestamps.
var now = time.Now().UTC().Truncate(time.Second)

func pct(v float64) *float64 { return &v }

// sampleFinding is a typical UEBA finding: an explanation and evidence an analyst acts on.
func sampleFinding(id string) event.Finding {
	return event.Finding{
		Schema: event.SchemaVersion, ID: id, Time: now.Add(-300 * time.Millisecond), Tenant: "acme",
		Principal: event.Principal{Subject: "alice", ClientID: "claude-desktop", Roles: []string{"analyst"}, Department: "finance"},
		Detector:  "ueba", Check: "rate_spike", Score: 92, Severity: 9,
		Summary:     "alice called tools 20x her usual rate",
		Explanation: "calls_per_min 240 against a baseline of 12 (self) over 09:00–09:05; 99th percentile of finance peers",
		Evidence: []event.Evidence{
			{Detector: "ueba", Feature: "calls_per_min", Observed: 240, Baseline: 12, BaselineSource: "self", PeerPercentile: pct(99),
				Detail: "20x the usual rate", WindowStart: now.Add(-5 * time.Minute), WindowEnd: now},
			{Detector: "ueba", Feature: "tool", ObservedText: "payments/transfer", Detail: "first call of payments/transfer; used by 0 of 12 peers",
				WindowStart: now.Add(-5 * time.Minute), WindowEnd: now},
			{Detector: "ueba", Feature: "server", ObservedText: "bank-mcp"},
		},
		Tags: []string{"T1530", "ueba"}, EventIDs: []string{"e1", "e2"},
	}
}

// hostileFinding is written by an attacker who controls tool names and arguments: mentions,
// disguised links, template functions, bidi overrides, invalid UTF-8, huge and wide text.
func hostileFinding(id string) event.Finding {
	f := sampleFinding(id)
	long := strings.Repeat("데이터 유출 <!channel> ", 400) // 6000+ runes of 3-byte UTF-8
	f.Summary = "<!channel> <@U024BE7LH> [click](https://evil.example) <https://evil.example|open> & {{DATE(2017-02-14T06:08:39Z)}} \u202Egnp.exe\xff " + long
	f.Explanation = "see <https://evil.example|the report> *now* `x` " + long
	f.Principal.Subject = "<!here> mallory\x00\x1b[31m"
	f.Tenant = "acme & <co>"
	f.Check = "check\u2066 [x](javascript:alert(1))"
	f.Evidence = append(f.Evidence, event.Evidence{Feature: "arg", ObservedText: "```<!everyone>``` " + long, Detail: long})
	f.Tags = []string{"<!subteam^S123>", "[t](https://evil.example)"}
	return f
}

type fixture struct {
	set  *Set
	reg  *prometheus.Registry
	logs *logBuf
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newFixture(t *testing.T, chans []Channel, opts ...Option) *fixture {
	t.Helper()
	fx := &fixture{reg: prometheus.NewRegistry(), logs: &logBuf{}}
	opts = append([]Option{WithClock(func() time.Time { return time.Now().UTC() }),
		WithBackOff(func() backoff.BackOff { return &backoff.ZeroBackOff{} }),
		WithLogger(slog.New(slog.NewJSONHandler(fx.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		WithRegisterer(fx.reg)}, opts...)
	s, err := New(chans, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	fx.set = s
	return fx
}

func slackChannel(name, base string) Channel {
	return Channel{Name: name, Type: TypeSlack, Secret: component.SecretValue(base + slackPath)}
}

func pdChannel(name, base string) Channel {
	return Channel{Name: name, Type: TypePagerDuty, URL: base + "/v2/enqueue", Secret: component.SecretValue(routingKey),
		FindingURL: "https://console.example/findings/{id}"}
}

func teamsChannel(name, base string) Channel {
	return Channel{Name: name, Type: TypeTeams, Secret: component.SecretValue(base + "/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=SECRETSIG")}
}

// Each vendor's receiver accepts what the notifiers send, for an ordinary finding and for one
// whose text an attacker wrote, and the message carries the explanation and the top evidence.
// If this fails, a real Slack, PagerDuty or Teams would refuse (or mis-show) our notifications.
func TestVendorsAcceptPayloads(t *testing.T) {
	kinds := map[string]struct {
		recv func(*testing.T, ...scripted) *receiver
		ch   func(string, string) Channel
	}{
		"slack": {slackReceiver, slackChannel}, "pagerduty": {pdReceiver, pdChannel}, "teams": {teamsReceiver, teamsChannel},
	}
	for kind, k := range kinds {
		for name, f := range map[string]event.Finding{"ordinary": sampleFinding("f-1"), "hostile": hostileFinding("f-2")} {
			t.Run(kind+"/"+name, func(t *testing.T) {
				r := k.recv(t)
				fx := newFixture(t, []Channel{k.ch("soc", r.URL)})
				a, err := fx.set.Notify(context.Background(), "soc", Message{Finding: f, Playbook: "exfil-high",
					Actions: []Decided{{Kind: "revoke", Target: "alice", Status: "issued"}}})
				if err != nil {
					t.Fatal(err)
				}
				if p := r.shapeProblems(); len(p) > 0 {
					t.Fatalf("receiver found problems:\n%s", strings.Join(p, "\n"))
				}
				if a.Status != StatusSucceeded || a.Attempts != 1 || a.Kind != event.ActionNotify || a.FindingID != f.ID ||
					a.Actor != "playbook:exfil-high" || !strings.HasPrefix(a.Target, "soc http://127.0.0.1:") {
					t.Fatalf("action %+v", a)
				}
				body := string(r.requests()[0])
				if name == "ordinary" {
					for _, want := range []string{"calls_per_min", "observed 240, baseline 12 (self)", "99th percentile of peers",
						"UTC", "first call of payments/transfer", "against a baseline of 12", "revoke alice"} {
						if kind == "pagerduty" && strings.HasPrefix(want, "observed") {
							want = `"observed":240`
						}
						if kind == "pagerduty" && want == "99th percentile of peers" {
							want = `"peer_percentile":99`
						}
						if !strings.Contains(body, want) {
							t.Errorf("payload lacks %q: an analyst could not answer why\n%s", want, body)
						}
					}
				}
			})
		}
	}
}

// Finding text cannot mention, link or template in any vendor's rendering; long text is cut at
// each vendor's limit on a character boundary with an ellipsis; invalid UTF-8, control
// characters and bidi overrides are replaced. If this fails, an attacker who names a tool can
// page @channel or plant a phishing link in the SOC's channel.
func TestHostileTextNeutralised(t *testing.T) {
	f := hostileFinding("f-9")
	m := Message{Finding: f}
	v := newView(&m, "https://console.example/f/{id}")

	sl, _ := marshal(slackPayload(&v))
	for _, bad := range []string{"<!channel>", "<@U024BE7LH>", "<https://evil", "<!here>", "<!subteam", "\u202E", "\\u202e", "\x1b"} {
		if bytes.Contains(sl, []byte(bad)) {
			t.Errorf("slack payload contains %q", bad)
		}
	}
	if !bytes.Contains(sl, []byte("&lt;!channel&gt;")) {
		t.Error("slack: <!channel> not shown escaped")
	}
	msg := slackPayload(&v)
	if h := msg.Blocks[0].Text.Text; runes(h) != slackHeaderMax || !strings.HasSuffix(h, ellipsis) {
		t.Errorf("header not clipped to %d with an ellipsis: %d runes", slackHeaderMax, runes(h))
	}
	if p := checkSlack(sl); len(p) > 0 {
		t.Errorf("slack: %v", p)
	}

	tm, _ := marshal(teamsPayload(&v, f.Severity))
	if p := checkTeams(tm); len(p) > 0 {
		t.Errorf("teams: %v", p)
	}
	if !bytes.Contains(tm, []byte(`\\[click\\](https://evil.example)`)) {
		t.Errorf("teams: link brackets not escaped")
	}

	pd := pdPayloadOf(&m, &v, routingKey, DedupPrincipal)
	if runes(pd.Payload.Summary) != pdSummaryMax || !strings.HasSuffix(pd.Payload.Summary, ellipsis) {
		t.Errorf("pagerduty summary %d runes, want clipped to %d", runes(pd.Payload.Summary), pdSummaryMax)
	}
	if strings.ContainsAny(pd.Payload.Summary, "\u202E\x00\n") || !strings.Contains(pd.Payload.Summary, "\uFFFD") {
		t.Error("pagerduty summary keeps bidi override, NUL or newline, or lost the replacement of invalid UTF-8")
	}
	if len(pd.DedupKey) > 255 {
		t.Error("dedup key over 255")
	}
}

// clip never splits a rune or an escape, never exceeds its limit, and leaves short text alone.
func TestClip(t *testing.T) {
	cases := []struct {
		s     string
		limit int
		esc   func(rune) string
		want  string
	}{
		{"hello", 5, nil, "hello"},
		{"hello!", 5, nil, "hell…"},
		{"데이터유출", 3, nil, "데이…"},
		{"a<b", 3, slackEscape, "a…"}, // "&lt;" does not fit in 1 rune: cut before it
		{"a<b", 6, slackEscape, "a&lt;b"},
		{"a<bc", 6, slackEscape, "a&lt;…"},
		{"", 3, nil, ""},
		{"abc", 0, nil, ""},
		{"ab", 1, nil, "…"},
	}
	for _, c := range cases {
		if got := clip(c.s, c.limit, c.esc); got != c.want || runes(got) > c.limit {
			t.Errorf("clip(%q, %d) = %q, want %q", c.s, c.limit, got, c.want)
		}
	}
}

// Retries happen on what may heal (429 with Retry-After, 5xx) and not on what will not (400);
// PagerDuty's reasons for refusing an event reach the action record. If this fails, a
// notification is lost to a blip, or a broken payload is hammered at the vendor.
func TestRetries(t *testing.T) {
	cases := map[string]struct {
		recv     func(*testing.T, ...scripted) *receiver
		ch       func(string, string) Channel
		script   []scripted
		status   string
		attempts int
		detail   string
	}{
		"slack 429 then ok": {slackReceiver, slackChannel, []scripted{{429, "1"}}, StatusSucceeded, 2, "HTTP 200 OK after 2 attempts"},
		"slack 500 503 ok":  {slackReceiver, slackChannel, []scripted{{500, ""}, {503, ""}}, StatusSucceeded, 3, "HTTP 200 OK after 3 attempts"},
		"slack 400 final": {slackReceiver, slackChannel, []scripted{{400, ""}}, StatusFailed, 1,
			"HTTP 400 Bad Request: Bad Request"},
		"slack 404 final":  {slackReceiver, slackChannel, []scripted{{404, ""}}, StatusFailed, 1, "HTTP 404 Not Found: Not Found"},
		"pd 429 then 202":  {pdReceiver, pdChannel, []scripted{{429, "1"}}, StatusSucceeded, 2, "HTTP 202 Accepted after 2 attempts: dedup_key mcpwatch/acme/alice/ueba/rate_spike"},
		"pd 502 until end": {pdReceiver, pdChannel, []scripted{{502, ""}, {502, ""}, {502, ""}}, StatusFailed, 3, "HTTP 502 Bad Gateway (attempt 3 of 3)"},
		"teams 503 then ok": {teamsReceiver, teamsChannel, []scripted{{503, ""}}, StatusSucceeded, 2,
			"HTTP 202 Accepted after 2 attempts"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := c.recv(t, c.script...)
			ch := c.ch("soc", r.URL)
			ch.MaxAttempts = 3
			fx := newFixture(t, []Channel{ch}, WithMaxRetryAfter(50*time.Millisecond))
			start := time.Now()
			a, err := fx.set.Notify(context.Background(), "soc", Message{Finding: sampleFinding("f-r")})
			if err != nil {
				t.Fatal(err)
			}
			if a.Status != c.status || a.Attempts != c.attempts || a.Detail != c.detail {
				t.Fatalf("status=%s attempts=%d detail=%q, want %s %d %q", a.Status, a.Attempts, a.Detail, c.status, c.attempts, c.detail)
			}
			if got := len(r.requests()); got != c.attempts {
				t.Fatalf("receiver saw %d requests for %d attempts", got, c.attempts)
			}
			if c.script[0].retryAfter != "" && time.Since(start) < 50*time.Millisecond {
				t.Fatal("Retry-After not honoured (up to its cap)")
			}
			if n := counter(t, fx.set.m.deliveries.WithLabelValues("soc", string(ch.Type), c.status)); n != 1 {
				t.Fatalf("deliveries metric %v", n)
			}
			if c.status == StatusFailed && !strings.Contains(fx.logs.String(), "notification failed") {
				t.Fatal("failure not logged")
			}
		})
	}
}

// PagerDuty refuses an invalid event with 400 and its reasons; the notifier does not retry it
// and records the reasons. If this fails, an operator sees "400" without learning what to fix.
func TestPagerDutyInvalidEventReason(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect (should be 32 characters)"]}`))
	}))
	defer srv.Close()
	fx := newFixture(t, []Channel{pdChannel("pd", srv.URL)})
	a, err := fx.set.Notify(context.Background(), "pd", Message{Finding: sampleFinding("f-y")})
	if err != nil {
		t.Fatal(err)
	}
	want := "HTTP 400 Bad Request: Event object is invalid: Length of 'routing_key' is incorrect (should be 32 characters)"
	if a.Status != StatusFailed || a.Attempts != 1 || a.Detail != want {
		t.Fatalf("action %+v, want failed after 1 attempt with %q", a, want)
	}
}

// A finding is announced once per channel: a repeat is not posted and yields no record, even
// when it arrives concurrently; a failed delivery is not remembered, so the retry goes out.
// PagerDuty folds findings of one principal and check into one alert by dedup_key, or not with
// dedup_by: finding. If this fails, the SOC is paged twice for one thing, or never for a retry.
func TestDedup(t *testing.T) {
	t.Run("slack repeat", func(t *testing.T) {
		r := slackReceiver(t)
		fx := newFixture(t, []Channel{slackChannel("soc", r.URL), slackChannel("ops", r.URL)})
		f := sampleFinding("f-d")
		var wg sync.WaitGroup
		actions := make([]*event.Action, 8)
		for i := range actions {
			wg.Go(func() {
				a, err := fx.set.Notify(context.Background(), "soc", Message{Finding: f})
				if err != nil {
					t.Error(err)
				}
				actions[i] = a
			})
		}
		wg.Wait()
		n := 0
		for _, a := range actions {
			if a != nil {
				n++
			}
		}
		if n != 1 || len(r.requests()) != 1 {
			t.Fatalf("%d actions, %d posts for 8 concurrent notifications of one finding, want 1 and 1", n, len(r.requests()))
		}
		if a, _ := fx.set.Notify(context.Background(), "ops", Message{Finding: f}); a == nil || a.Status != StatusSucceeded {
			t.Fatal("another channel must still get the finding")
		}
		if got := counter(t, fx.set.m.duplicates.WithLabelValues("soc")); got != 7 {
			t.Fatalf("duplicates metric %v, want 7", got)
		}
	})
	t.Run("failure not remembered", func(t *testing.T) {
		r := slackReceiver(t, scripted{400, ""})
		fx := newFixture(t, []Channel{slackChannel("soc", r.URL)})
		f := sampleFinding("f-e")
		if a, _ := fx.set.Notify(context.Background(), "soc", Message{Finding: f}); a.Status != StatusFailed {
			t.Fatalf("first: %+v", a)
		}
		if a, _ := fx.set.Notify(context.Background(), "soc", Message{Finding: f}); a == nil || a.Status != StatusSucceeded {
			t.Fatalf("retry after a failure was suppressed: %+v", a)
		}
	})
	t.Run("window", func(t *testing.T) {
		r := slackReceiver(t)
		clock := now
		var mu sync.Mutex
		fx := newFixture(t, []Channel{slackChannel("soc", r.URL)}, WithDedup(10, time.Hour),
			WithClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }))
		f := sampleFinding("f-w")
		_, _ = fx.set.Notify(context.Background(), "soc", Message{Finding: f})
		mu.Lock()
		clock = clock.Add(2 * time.Hour)
		mu.Unlock()
		if a, _ := fx.set.Notify(context.Background(), "soc", Message{Finding: f}); a == nil {
			t.Fatal("still suppressed after the dedup window")
		}
	})
	t.Run("pagerduty keys", func(t *testing.T) {
		r := pdReceiver(t)
		byFinding := pdChannel("pd-f", r.URL)
		byFinding.DedupBy = DedupFinding
		fx := newFixture(t, []Channel{pdChannel("pd", r.URL), byFinding})
		for _, id := range []string{"f-1", "f-2", "f-3"} {
			for _, ch := range []string{"pd", "pd-f"} {
				if a, err := fx.set.Notify(context.Background(), ch, Message{Finding: sampleFinding(id)}); err != nil || a.Status != StatusSucceeded {
					t.Fatalf("%s %s: %+v %v", ch, id, a, err)
				}
			}
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.alertKeys["mcpwatch/acme/alice/ueba/rate_spike"] != 3 {
			t.Errorf("by principal: alerts %v, want the 3 findings under one key", r.alertKeys)
		}
		for _, id := range []string{"f-1", "f-2", "f-3"} {
			if r.alertKeys["mcpwatch/finding/"+id] != 1 {
				t.Errorf("by finding: alerts %v, want one key per finding", r.alertKeys)
			}
		}
	})
}

// Findings below a channel's min_severity are skipped, and the skip is recorded with the reason.
// If this fails, a low-severity finding pages the on-call engineer.
func TestMinSeverity(t *testing.T) {
	r := pdReceiver(t)
	ch := pdChannel("pd", r.URL)
	ch.MinSeverity = 9
	fx := newFixture(t, []Channel{ch})
	f := sampleFinding("f-low")
	f.Severity = 6
	a, err := fx.set.Notify(context.Background(), "pd", Message{Finding: f})
	if err != nil || a.Status != StatusSkipped || !strings.Contains(a.Detail, "severity 6 is below channel pd's min_severity 9") {
		t.Fatalf("%+v %v", a, err)
	}
	if len(r.requests()) != 0 {
		t.Fatal("posted a finding below min_severity")
	}
}

// The credential of each channel (Slack's URL path, Teams' sig, PagerDuty's routing key, the
// webhook secret) appears in no action record and no log line, delivered or failed. If this
// fails, anyone who reads the actions table or the logs can post to the SOC's channel.
func TestSecretsNeverShown(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	base := dead.URL
	dead.Close() // connection refused: the error path, where URLs tend to leak
	chans := []Channel{slackChannel("s", base), teamsChannel("t", base), pdChannel("p", base),
		{Name: "w", Type: TypeWebhook, URL: base + "/hook?token=QUERYSECRET", Secret: component.SecretValue(whSecret)}}
	for i := range chans {
		chans[i].MaxAttempts = 2
	}
	fx := newFixture(t, chans)
	for _, ch := range []string{"s", "t", "p", "w"} {
		a, err := fx.set.Notify(context.Background(), ch, Message{Finding: sampleFinding("f-s")})
		if err != nil || a.Status != StatusFailed || !strings.Contains(a.Detail, "connection refused") {
			t.Fatalf("%s: %+v %v", ch, a, err)
		}
		rec, _ := json.Marshal(a)
		for _, secret := range []string{"XXXXXXXXXXXXXXXXXXXXXXXX", "T00000000", "SECRETSIG", routingKey, "QUERYSECRET", strings.TrimPrefix(whSecret, "whsec_")} {
			if strings.Contains(string(rec), secret) || strings.Contains(fx.logs.String(), secret) {
				t.Fatalf("channel %s: secret %q in the action record or logs", ch, secret)
			}
		}
	}
	// Validation errors too.
	bad := Channel{Name: "s", Type: TypeSlack, Secret: component.SecretValue("http://hooks.example.com" + slackPath)}
	if err := bad.Validate(); err == nil || strings.Contains(err.Error(), "XXXXXXXX") || !strings.Contains(err.Error(), "plain http") {
		t.Fatalf("validation: %v", err)
	}
}

// The webhook channel sends a Standard Webhook that the official library verifies, with the
// finding id as webhook-id (receivers drop repeats by it) and the playbook's decisions in it.
// If this fails, SOAR receivers reject or double-process our webhooks.
func TestWebhookChannelSigned(t *testing.T) {
	wh, err := standardwebhooks.NewWebhook(whSecret)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	var hdr http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := new(bytes.Buffer)
		_, _ = buf.ReadFrom(r.Body)
		got, hdr = buf.Bytes(), r.Header.Clone()
		if err := wh.Verify(got, r.Header); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	fx := newFixture(t, []Channel{{Name: "soar", Type: TypeWebhook, URL: srv.URL, Secret: component.SecretValue(whSecret)}})
	f := sampleFinding("f-wh")
	a, err := fx.set.Notify(context.Background(), "soar", Message{Finding: f, Playbook: "pb", Actions: []Decided{{Kind: "revoke", Target: "alice"}}})
	if err != nil || a.Status != StatusSucceeded {
		t.Fatalf("%+v %v", a, err)
	}
	if hdr.Get("webhook-id") != f.ID {
		t.Fatalf("webhook-id %q, want the finding id", hdr.Get("webhook-id"))
	}
	var p struct {
		Type string `json:"type"`
		Data struct {
			ID          string    `json:"id"`
			Explanation string    `json:"explanation"`
			Playbook    string    `json:"playbook"`
			Actions     []Decided `json:"actions"`
		} `json:"data"`
	}
	if err := json.Unmarshal(got, &p); err != nil || p.Type != EventTypeFinding || p.Data.ID != f.ID ||
		p.Data.Explanation != f.Explanation || p.Data.Playbook != "pb" || len(p.Data.Actions) != 1 {
		t.Fatalf("payload %s (%v)", got, err)
	}
}

// Shutdown during a delivery records nothing (the finding is redelivered) and releases the
// finding, so the redelivery goes out. If this fails, a notification is recorded as failed that
// never had its chance, or is suppressed forever.
func TestInterrupted(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	var first sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hold := false
		first.Do(func() { hold = true })
		if !hold {
			w.WriteHeader(http.StatusOK)
			return
		}
		close(arrived)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	fx := newFixture(t, []Channel{slackChannel("soc", srv.URL)})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	a, err := fx.set.Notify(ctx, "soc", Message{Finding: sampleFinding("f-i")})
	if a != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted delivery: %+v %v", a, err)
	}
	if a, err := fx.set.Notify(context.Background(), "soc", Message{Finding: sampleFinding("f-i")}); err != nil || a == nil || a.Status != StatusSucceeded {
		t.Fatalf("redelivery after interruption: %+v %v", a, err)
	}
}

// An unknown channel name is an error that names the channels there are; the playbook loader
// should catch it first, this is the last line. If this fails, a typo silently drops alerts.
func TestUnknownChannel(t *testing.T) {
	fx := newFixture(t, []Channel{slackChannel("soc", "http://127.0.0.1:1")})
	_, err := fx.set.Notify(context.Background(), "scoc", Message{Finding: sampleFinding("f")})
	if !errors.Is(err, ErrUnknownChannel) || !strings.Contains(err.Error(), "[soc]") {
		t.Fatalf("%v", err)
	}
	if n := fx.set.Names(); len(n) != 1 || n[0] != "soc" {
		t.Fatalf("names %v", n)
	}
	if _, ok := fx.set.Channel("soc"); !ok {
		t.Fatal("Channel(soc)")
	}
}

// counter reads a counter's value.
func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
