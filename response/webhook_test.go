package response

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// captured is one request a test server received.
type captured struct {
	header http.Header
	body   []byte
}

// server answers with statuses in turn (the last one repeats) and records the requests.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	got      []captured
}

func newServer(t *testing.T, statuses ...int) *server {
	t.Helper()
	s := &server{statuses: statuses}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.got = append(s.got, captured{r.Header.Clone(), b})
		code := s.statuses[min(len(s.got), len(s.statuses))-1]
		s.mu.Unlock()
		if code >= 300 && code < 400 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []captured {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]captured(nil), s.got...)
}

func withHook(url string) func(*Config) {
	return func(c *Config) { c.WebhookURL, c.WebhookSecret = url, secret }
}

// The webhook is what a SOC's SOAR receives: it must verify with the Standard Webhooks library
// under the shared secret, carry the finding id as webhook-id, and say what was done.
func TestWebhookSignedAndVerifies(t *testing.T) {
	srv := newServer(t, http.StatusNoContent)
	fx := newResponder(t, withHook(srv.URL+"/hook?token=abc"))
	f := finding(92)
	a, err := fx.r.Notify(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if a == nil || a.Status != StatusSucceeded || a.Attempts != 1 || a.Kind != event.ActionWebhook ||
		a.Target != srv.URL+"/hook" || a.FindingID != f.ID || a.LatencyMS != 250 {
		t.Fatalf("action %+v", a)
	}
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	req := reqs[0]
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(req.body, req.header); err != nil {
		t.Fatalf("signature does not verify with the Standard Webhooks library: %v", err)
	}
	if id := req.header.Get("webhook-id"); id != f.ID {
		t.Fatalf("webhook-id %q, want the finding id %q", id, f.ID)
	}
	if ct := req.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	var p Payload
	if err := json.Unmarshal(req.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != "mcpwatch.finding" || !p.Timestamp.Equal(f.Time) || p.Data.ID != f.ID || p.Data.Score != 92 ||
		p.Data.Principal.Subject != "mallory" || p.Data.Summary != f.Summary || len(p.Data.EventIDs) != 2 {
		t.Fatalf("payload %+v", p)
	}
	if len(p.Data.Actions) != 1 || p.Data.Actions[0] != (PlannedAction{Kind: event.ActionRevoke, Status: PlannedIssued,
		Target: "revoke/subject/acme/mallory"}) {
		t.Fatalf("actions %+v", p.Data.Actions)
	}
	// The data object is the finding's own wire form plus "actions": readers of the findings
	// topic and of webhooks share one schema.
	var raw map[string]any
	_ = json.Unmarshal(req.body, &raw)
	data := raw["data"].(map[string]any)
	for _, k := range []string{"id", "time", "tenant", "principal", "detector", "score", "severity", "summary",
		"window_start", "window_end", "features", "event_ids", "actions"} {
		if _, ok := data[k]; !ok {
			t.Errorf("data lacks %q: %v", k, data)
		}
	}
}

// A body changed in transit, a wrong secret, or a stale timestamp must not verify.
func TestWebhookTamperedRejected(t *testing.T) {
	srv := newServer(t, http.StatusOK)
	fx := newResponder(t, withHook(srv.URL))
	if _, err := fx.r.Notify(context.Background(), finding(92)); err != nil {
		t.Fatal(err)
	}
	orig := srv.requests()[0]
	var got []Delivery
	rc, err := NewReceiver(secret, func(_ context.Context, d Delivery) error { got = append(got, d); return nil }, quiet)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewReceiver("whsec_"+strings.Repeat("A", 32), func(context.Context, Delivery) error { return nil }, quiet)
	if err != nil {
		t.Fatal(err)
	}
	post := func(h http.Handler, body []byte, hdr http.Header) int {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header = hdr.Clone()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	tampered := bytes.Replace(orig.body, []byte(`"score":92`), []byte(`"score":12`), 1)
	if bytes.Equal(tampered, orig.body) {
		t.Fatal("test did not tamper")
	}
	staleHdr := orig.header.Clone()
	staleHdr.Set("webhook-timestamp", "1000000000")
	noSig := orig.header.Clone()
	noSig.Del("webhook-signature")
	for name, c := range map[string]struct {
		h    http.Handler
		body []byte
		hdr  http.Header
	}{
		"tampered body":   {rc, tampered, orig.header},
		"wrong secret":    {other, orig.body, orig.header},
		"stale timestamp": {rc, orig.body, staleHdr},
		"no signature":    {rc, orig.body, noSig},
	} {
		if code := post(c.h, c.body, c.hdr); code != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", name, code)
		}
	}
	wh, _ := standardwebhooks.NewWebhook(secret)
	if err := wh.Verify(tampered, orig.header); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Errorf("library accepted the tampered body: %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("delivered %d rejected webhooks", len(got))
	}
	if code := post(rc, orig.body, orig.header); code != http.StatusNoContent || len(got) != 1 {
		t.Fatalf("the genuine webhook: status %d, %d deliveries", code, len(got))
	}
}

// Retries happen exactly on what may heal (network, 5xx, 429) and stop at once on what will not;
// every outcome ends in an action record, failures also in a log line.
func TestWebhookRetries(t *testing.T) {
	cases := map[string]struct {
		statuses []int
		status   string
		attempts int
		detail   string
	}{
		"500 then success":   {[]int{500, 500, 200}, StatusSucceeded, 3, "HTTP 200 OK after 3 attempts"},
		"429 then success":   {[]int{429, 202}, StatusSucceeded, 2, "HTTP 202 Accepted after 2 attempts"},
		"400 is final":       {[]int{400}, StatusFailed, 1, "HTTP 400 Bad Request"},
		"404 is final":       {[]int{404}, StatusFailed, 1, "HTTP 404 Not Found"},
		"500 then 401":       {[]int{500, 401}, StatusFailed, 2, "HTTP 401 Unauthorized (attempt 2 of 5)"},
		"503 until the end":  {[]int{503}, StatusFailed, 5, "HTTP 503 Service Unavailable (attempt 5 of 5)"},
		"redirect not taken": {[]int{302}, StatusFailed, 1, "HTTP 302 Found (redirects are not followed)"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, c.statuses...)
			fx := newResponder(t, withHook(srv.URL))
			f := finding(92)
			a, err := fx.r.Notify(context.Background(), f)
			if err != nil {
				t.Fatal(err)
			}
			if a.Status != c.status || a.Attempts != c.attempts || a.Detail != c.detail {
				t.Fatalf("action status=%s attempts=%d detail=%q, want %s %d %q", a.Status, a.Attempts, a.Detail,
					c.status, c.attempts, c.detail)
			}
			reqs := srv.requests()
			if len(reqs) != c.attempts {
				t.Fatalf("server saw %d requests for %d attempts", len(reqs), c.attempts)
			}
			for _, r := range reqs {
				if r.header.Get("webhook-id") != f.ID {
					t.Fatal("a retry changed the webhook id: receivers could not deduplicate")
				}
			}
			logged := strings.Contains(fx.logs.String(), "response action failed")
			if logged != (c.status == StatusFailed) {
				t.Fatalf("failure logged=%v for status %s:\n%s", logged, c.status, fx.logs.String())
			}
			if n := fx.metric(t, "mcpwatch_response_actions_total", map[string]string{"kind": "webhook", "status": c.status}); n != 1 {
				t.Fatalf("actions metric %v", n)
			}
			if n := fx.metric(t, "mcpwatch_response_webhook_attempts_total", nil); n != float64(c.attempts) {
				t.Fatalf("attempts metric %v", n)
			}
		})
	}
}

// A receiver that is down, or never answers, costs MaxAttempts attempts and ends in a failed
// action naming the cause, never a silent loss.
func TestWebhookUnreachable(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		fx := newResponder(t, func(c *Config) { withHook(url)(c); c.MaxAttempts = 3 })
		a, err := fx.r.Notify(context.Background(), finding(92))
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != StatusFailed || a.Attempts != 3 || !strings.Contains(a.Detail, "connection refused") ||
			strings.Contains(a.Detail, url) {
			t.Fatalf("action %+v", a)
		}
		if !strings.Contains(fx.logs.String(), "response action failed") {
			t.Fatal("failure not logged")
		}
	})
	t.Run("no answer", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body) // the server notices a closed connection only after the body
			select {
			case <-r.Context().Done(): // the client gave up
			case <-release:
			}
		}))
		defer srv.Close()
		defer close(release)
		fx := newResponder(t, func(c *Config) { withHook(srv.URL)(c); c.MaxAttempts = 2; c.WebhookTimeout = 20 * time.Millisecond })
		a, err := fx.r.Notify(context.Background(), finding(92))
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != StatusFailed || a.Attempts != 2 || !strings.Contains(a.Detail, "no response within 20ms") {
			t.Fatalf("action %+v", a)
		}
	})
}

// Shutdown during a delivery must not record an outcome that did not happen: the finding is
// redelivered instead.
func TestNotifyInterrupted(t *testing.T) {
	arrived := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // the server notices a closed connection only after the body
		once.Do(func() { close(arrived) })
		<-r.Context().Done()
	}))
	defer srv.Close()
	fx := newResponder(t, func(c *Config) { withHook(srv.URL)(c); c.WebhookTimeout = time.Minute })
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	a, err := fx.r.Notify(ctx, finding(92))
	if err == nil || a != nil {
		t.Fatalf("interrupted delivery returned action %+v, err %v", a, err)
	}
}

// Findings below the threshold, and stale ones, send nothing; stale ones still leave a record.
func TestNotifySkips(t *testing.T) {
	srv := newServer(t, http.StatusOK)
	fx := newResponder(t, withHook(srv.URL))
	if a, err := fx.r.Notify(context.Background(), finding(79)); a != nil || err != nil {
		t.Fatalf("below threshold: %+v, %v", a, err)
	}
	old := finding(99)
	old.Time = now.Add(-3 * time.Hour)
	a, err := fx.r.Notify(context.Background(), old)
	if err != nil || a == nil || a.Status != StatusSkipped || !strings.Contains(a.Detail, "3h0m0s old") {
		t.Fatalf("stale: %+v, %v", a, err)
	}
	if n := len(srv.requests()); n != 0 {
		t.Fatalf("server saw %d requests", n)
	}
	none := newResponder(t, nil)
	if a, err := none.r.Notify(context.Background(), finding(99)); a != nil || err != nil {
		t.Fatalf("without a webhook: %+v, %v", a, err)
	}
}

// A receiver's Retry-After is honoured up to a cap, whatever its form.
func TestRetryAfter(t *testing.T) {
	fx := newResponder(t, nil, WithMaxRetryAfter(time.Minute))
	cases := map[string]struct {
		h    string
		want time.Duration
		ok   bool
	}{
		"seconds":     {"7", 7 * time.Second, true},
		"capped":      {"3600", time.Minute, true},
		"date":        {now.Add(20 * time.Second).Format(http.TimeFormat), 20 * time.Second, true},
		"past date":   {now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		"negative":    {"-5", 0, true},
		"absent":      {"", 0, false},
		"nonsense":    {"soon", 0, false},
		"fractional ": {"1.5", 0, false},
	}
	for name, c := range cases {
		if d, ok := fx.r.retryAfter(c.h, now); d != c.want || ok != c.ok {
			t.Errorf("%s: %v %v, want %v %v", name, d, ok, c.want, c.ok)
		}
	}
	off := newResponder(t, nil, WithMaxRetryAfter(0))
	if _, ok := off.r.retryAfter("5", now); ok {
		t.Error("Retry-After honoured although disabled")
	}
}

// The notifying stage's handler: one action per finding acted on, in input order, dead letters
// for unreadable findings, and no commit when shutdown interrupts it.
func TestNotifyHandler(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("webhook-id") == "fail" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	fx := newResponder(t, func(c *Config) { withHook(srv.URL)(c); c.WebhookConcurrency = 3 })
	names := event.TopicNames("t")
	var recs []*kgo.Record
	var ids []string
	for i := range 10 {
		f := finding(float64(50 + 5*i)) // 50..95: the last four act
		if i == 8 {
			f.ID = "fail"
		}
		r, err := kafkaio.RecordOf(names.Findings, "acme/mallory", f)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
		if f.Score >= 80 {
			ids = append(ids, f.ID)
		}
	}
	recs = append(recs, &kgo.Record{Topic: names.Findings, Value: []byte("garbage")})
	res, err := fx.r.NotifyHandler().Handle(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Dead) != 1 || hits.Load() != 4 || len(res.Out) != 4 {
		t.Fatalf("dead %d, hits %d, outputs %d; want 1, 4, 4", len(res.Dead), hits.Load(), len(res.Out))
	}
	for i, r := range res.Out {
		var a event.Action
		if err := event.Decode(r.Value, &a); err != nil {
			t.Fatal(err)
		}
		want := StatusSucceeded
		if a.FindingID == "fail" {
			want = StatusFailed
		}
		if r.Topic != names.Actions || string(r.Key) != "acme/mallory" || a.FindingID != ids[i] || a.Status != want {
			t.Fatalf("output %d: %s %s %+v", i, r.Topic, r.Key, a)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := fx.r.NotifyHandler().Handle(ctx, recs); err == nil {
		t.Fatal("a batch interrupted by shutdown reported success: it would be committed without its webhooks")
	}
}
