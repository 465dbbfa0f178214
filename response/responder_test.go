package response

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec)) // TestRespondKilledKafka's stage process
	}
	goleak.VerifyTestMain(m)
}

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // 24 bytes, the Standard Webhooks example

// now is the fixed clock of the tests: near the wall clock, because receivers check
// webhook-timestamp against it.
var now = time.Now().UTC().Truncate(time.Second)

func finding(score float64) *event.Finding {
	return &event.Finding{
		Schema: event.SchemaVersion, ID: event.NewID(), Time: now.Add(-250 * time.Millisecond), Tenant: "acme",
		Principal: event.Principal{Subject: "mallory", ClientID: "claude-desktop"}, Detector: "rate",
		Score: score, Severity: int(score / 10), Summary: "mallory made 300 calls in 10s (30.0/s, normal ≤ 2/s)",
		WindowStart: now.Add(-10 * time.Second), WindowEnd: now, Features: map[string]float64{"calls": 300},
		EventIDs: []string{"e1", "e2"},
	}
}

// logBuf is a concurrency-safe log sink for asserting log lines.
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

type fixture struct {
	r    *Responder
	reg  *prometheus.Registry
	logs *logBuf
}

// newResponder builds a responder with the fixed clock and no waits between attempts.
func newResponder(t *testing.T, mod func(*Config), opts ...Option) fixture {
	t.Helper()
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	fx := fixture{reg: prometheus.NewRegistry(), logs: &logBuf{}}
	opts = append([]Option{WithClock(func() time.Time { return now }),
		WithBackOff(func() backoff.BackOff { return &backoff.ZeroBackOff{} })}, opts...)
	r, err := New(event.TopicNames("t"), cfg, fx.reg, slog.New(slog.NewTextHandler(fx.logs, nil)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	fx.r = r
	return fx
}

// metric sums the values of the counter name over label sets matching labels.
func (fx fixture) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := fx.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// A config that would leak findings or cannot sign must be refused at start.
func TestConfigValidate(t *testing.T) {
	hook := func(u string) func(*Config) {
		return func(c *Config) { c.WebhookURL, c.WebhookSecret = u, secret }
	}
	cases := map[string]struct {
		mod  func(*Config)
		want string // substring of the error; "" means valid
	}{
		"defaults, no webhook":    {func(*Config) {}, ""},
		"https":                   {hook("https://soar.example.com/hooks/mcpwatch"), ""},
		"http to 127.0.0.1":       {hook("http://127.0.0.1:8080/hook"), ""},
		"http to ::1":             {hook("http://[::1]:8080/hook"), ""},
		"http to localhost":       {hook("http://localhost:8080/hook"), ""},
		"http to a remote host":   {hook("http://soar.example.com/hook"), "plain http"},
		"http to a private IP":    {hook("http://10.0.0.5/hook"), "plain http"},
		"http to localhost.evil":  {hook("http://localhost.evil.com/hook"), "plain http"},
		"ftp":                     {hook("ftp://example.com/x"), "scheme"},
		"no host":                 {hook("https:///path"), "no host"},
		"not a URL":               {hook("https://exa mple.com/"), "does not parse"},
		"no secret":               {func(c *Config) { c.WebhookURL = "https://example.com/" }, "secret is required"},
		"secret without prefix":   {func(c *Config) { hook("https://example.com/")(c); c.WebhookSecret = secret[6:] }, "whsec_"},
		"secret not base64":       {func(c *Config) { hook("https://example.com/")(c); c.WebhookSecret = "whsec_!!!" }, "base64"},
		"secret too short":        {func(c *Config) { hook("https://example.com/")(c); c.WebhookSecret = "whsec_c2hvcnQ=" }, "5 bytes"},
		"threshold above 100":     {func(c *Config) { c.Threshold = 101 }, "threshold"},
		"negative revoke":         {func(c *Config) { c.RevokeFor = -time.Second }, "revoke"},
		"negative max age":        {func(c *Config) { c.MaxAge = -time.Second }, "max age"},
		"zero timeout":            {func(c *Config) { hook("https://example.com/")(c); c.WebhookTimeout = 0 }, "timeout"},
		"zero attempts":           {func(c *Config) { hook("https://example.com/")(c); c.MaxAttempts = 0 }, "attempts"},
		"zero concurrency":        {func(c *Config) { hook("https://example.com/")(c); c.WebhookConcurrency = 0 }, "concurrency"},
		"zero timeout no webhook": {func(c *Config) { c.WebhookTimeout = 0 }, ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mod(&cfg)
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error about %q", err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), secret[6:]) {
				t.Fatal("the error reveals the secret")
			}
		})
	}
}

// Credentials and tokens in a webhook URL must never reach logs or action records.
func TestConfigRedactsURL(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WebhookURL, cfg.WebhookSecret = "http://user:hunter2@soar.example.com/h?token=s3cret", secret
	err := cfg.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v", err)
	}
	fx := newResponder(t, func(c *Config) {
		c.WebhookURL, c.WebhookSecret = "https://u:hunter2@soar.example.com/h?token=s3cret", secret
	})
	if fx.r.target != "https://soar.example.com/h" {
		t.Fatalf("target %q", fx.r.target)
	}
}

// Enforcement: what is revoked, for how long, and what is recorded, for every kind of finding.
func TestEnforce(t *testing.T) {
	type want struct {
		act     bool // an action at all
		status  string
		scope   event.ControlScope // "" means no control
		value   string
		expires time.Duration // from the finding's time; 0 means none
		detail  string
	}
	cases := map[string]struct {
		mod  func(*Config)
		f    func(*event.Finding)
		want want
	}{
		"below threshold": {nil, func(f *event.Finding) { f.Score = 79.9 }, want{}},
		"at threshold":    {nil, func(f *event.Finding) { f.Score = 80 }, want{true, StatusSucceeded, event.ScopeSubject, "mallory", 0, ""}},
		"subject":         {nil, nil, want{true, StatusSucceeded, event.ScopeSubject, "mallory", 0, ""}},
		"client when no subject": {nil, func(f *event.Finding) { f.Principal.Subject = "" },
			want{true, StatusSucceeded, event.ScopeClient, "claude-desktop", 0, ""}},
		"nobody to revoke": {nil, func(f *event.Finding) { f.Principal = event.Principal{} },
			want{true, StatusFailed, "", "", 0, "no subject or client id"}},
		"timed revocation": {func(c *Config) { c.RevokeFor = 15 * time.Minute }, nil,
			want{true, StatusSucceeded, event.ScopeSubject, "mallory", 15 * time.Minute, ""}},
		"timed revocation already over": {func(c *Config) { c.RevokeFor = 15 * time.Minute },
			func(f *event.Finding) { f.Time = now.Add(-20 * time.Minute) },
			want{true, StatusSkipped, "", "", 0, "would have expired"}},
		"older than max age": {nil, func(f *event.Finding) { f.Time = now.Add(-2 * time.Hour) },
			want{true, StatusSkipped, "", "", 0, "older than the max age 1h0m0s"}},
		"any age without max age": {func(c *Config) { c.MaxAge = 0 }, func(f *event.Finding) { f.Time = now.Add(-48 * time.Hour) },
			want{true, StatusSucceeded, event.ScopeSubject, "mallory", 0, ""}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			fx := newResponder(t, c.mod)
			f := finding(95)
			if c.f != nil {
				c.f(f)
			}
			ctl, a := fx.r.Enforce(f)
			if !c.want.act {
				if ctl != nil || a != nil {
					t.Fatalf("acted below the threshold: %+v %+v", ctl, a)
				}
				return
			}
			if a == nil {
				t.Fatal("no action record")
			}
			if a.Kind != event.ActionRevoke || a.Status != c.want.status || a.FindingID != f.ID || a.Tenant != "acme" ||
				!strings.Contains(a.Detail, c.want.detail) {
				t.Fatalf("action %+v, want status %s detail ~%q", a, c.want.status, c.want.detail)
			}
			if c.want.scope == "" {
				if ctl != nil {
					t.Fatalf("control issued: %+v", ctl)
				}
				return
			}
			if ctl == nil {
				t.Fatal("no control record")
			}
			if ctl.Kind != event.ControlRevoke || ctl.Scope != c.want.scope || ctl.Value != c.want.value ||
				ctl.Tenant != "acme" || ctl.FindingID != f.ID || ctl.Reason != f.Summary || !ctl.Time.Equal(now) {
				t.Fatalf("control %+v", ctl)
			}
			if wantKey := "revoke/" + string(c.want.scope) + "/acme/" + c.want.value; ctl.Key() != wantKey || a.Target != wantKey {
				t.Fatalf("key %q, action target %q, want %q", ctl.Key(), a.Target, wantKey)
			}
			switch {
			case c.want.expires == 0 && ctl.Expires != nil:
				t.Fatalf("expires %v, want never", ctl.Expires)
			case c.want.expires != 0 && (ctl.Expires == nil || !ctl.Expires.Equal(f.Time.Add(c.want.expires))):
				t.Fatalf("expires %v, want %v", ctl.Expires, f.Time.Add(c.want.expires))
			}
			latency := float64(now.Sub(f.Time).Microseconds()) / 1000
			if a.LatencyMS != latency || a.Attempts != 1 || (c.want.scope == event.ScopeSubject && a.Subject != "mallory") {
				t.Fatalf("action %+v: want latency %vms from the finding, 1 attempt", a, latency)
			}
			// Redelivery must produce the same ids so that duplicates collapse downstream.
			ctl2, a2 := fx.r.Enforce(f)
			if ctl2.ID != ctl.ID || a2.ID != a.ID || ctl.ID == a.ID {
				t.Fatalf("ids not derived from the finding: %s/%s then %s/%s", ctl.ID, a.ID, ctl2.ID, a2.ID)
			}
			var back event.Control
			b, _ := event.Encode(ctl)
			if err := event.Decode(b, &back); err != nil {
				t.Fatalf("control does not survive the wire: %v", err)
			}
		})
	}
}

// The enforcing stage emits the control record before its action record, under the control's
// key, and parks findings it cannot read.
func TestEnforceHandler(t *testing.T) {
	fx := newResponder(t, nil)
	names := event.TopicNames("t")
	rec := func(f *event.Finding) *kgo.Record {
		r, err := kafkaio.RecordOf(names.Findings, event.PrincipalKey(f.Tenant, f.Principal), f)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	bad := &kgo.Record{Topic: names.Findings, Value: []byte(`{"schema":1}`)}
	res, err := fx.r.EnforceHandler().Handle(context.Background(), []*kgo.Record{rec(finding(95)), bad, rec(finding(10))})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Dead) != 1 || res.Dead[0].Record != bad {
		t.Fatalf("dead letters %+v", res.Dead)
	}
	if len(res.Out) != 2 || res.Out[0].Topic != names.Control || string(res.Out[0].Key) != "revoke/subject/acme/mallory" ||
		res.Out[1].Topic != names.Actions || string(res.Out[1].Key) != "acme/mallory" {
		t.Fatalf("outputs %v", res.Out)
	}
	if n := fx.metric(t, "mcpwatch_response_findings_total", map[string]string{"stage": "respond", "decision": "below_threshold"}); n != 1 {
		t.Fatalf("below-threshold findings counted %v", n)
	}
	if n := fx.metric(t, "mcpwatch_response_actions_total", map[string]string{"kind": "revoke", "status": "succeeded"}); n != 1 {
		t.Fatalf("revoke actions counted %v", n)
	}
}
