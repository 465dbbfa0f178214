// Package notify tells people about findings through channels of four types: Standard Webhooks,
// Slack (Block Kit), PagerDuty (Events API v2) and Microsoft Teams (Adaptive Cards through a
// Workflows webhook). Each notification carries the finding's explanation and top evidence.
//
// Delivery retries what may heal (network errors, 429, 5xx; Retry-After honoured up to a cap)
// and stops at once on what will not (other 4xx, redirects). Every notification ends in one
// [event.Action] of kind notify whose id is derived from the finding id and the channel, so a
// redelivered finding yields the same record id.
//
// # Duplicates
//
// A [Set] remembers which findings it delivered to which channel (bounded, for a window) and
// does not deliver them again: a second playbook naming the same channel, or a finding that
// comes back after a rebalance, is announced once. That memory is per process. Across processes
// the vendors deduplicate where they can: PagerDuty by the event's dedup_key, webhook receivers
// by the webhook-id (the finding id). Slack and Teams have no deduplication of their own, so a
// finding redelivered to another process after a crash between delivery and commit is posted
// twice there, with the same finding id shown in both.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/response/internal/outbound"
)

// Action statuses, as the respond stage records them.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusSkipped   = "skipped"
)

// ErrUnknownChannel is returned for a channel name the set does not have.
var ErrUnknownChannel = errors.New("no such notification channel")

// Notifier delivers a notification and returns its action record: succeeded, failed after its
// attempts, or skipped with the reason in the detail. It returns a nil action for a duplicate
// (the first delivery's record stands). The error is non-nil only when ctx ends before the
// outcome is known: no action is recorded then, so that the caller retries.
type Notifier interface {
	Notify(ctx context.Context, m Message) (*event.Action, error)
}

// NotifierFunc adapts a function to [Notifier].
type NotifierFunc func(ctx context.Context, m Message) (*event.Action, error)

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, m Message) (*event.Action, error) { return f(ctx, m) }

// Set is the configured channels, addressable by name. It is safe for concurrent use.
type Set struct {
	chans map[string]*channel
	names []string
	memo  *memo
	o     options
	m     *metrics
}

type options struct {
	now           func() time.Time
	client        *http.Client
	newBackOff    func() backoff.BackOff
	maxRetryAfter time.Duration
	log           *slog.Logger
	reg           prometheus.Registerer
	dedupSize     int
	dedupWindow   time.Duration
}

// Option adjusts a [Set].
type Option func(*options)

// WithClock sets the clock of action times, latencies, signatures and the dedup window.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithHTTPClient sets the HTTP client. The default requires TLS 1.2 or later and refuses
// redirects.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithBackOff sets the wait policy between attempts (default exponential from 500ms, doubling,
// up to 10s, ±20% jitter).
func WithBackOff(f func() backoff.BackOff) Option { return func(o *options) { o.newBackOff = f } }

// WithMaxRetryAfter caps how long a receiver's Retry-After may delay the next attempt (default
// 30s); 0 ignores Retry-After.
func WithMaxRetryAfter(d time.Duration) Option { return func(o *options) { o.maxRetryAfter = d } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer registers the set's metrics with reg.
func WithRegisterer(reg prometheus.Registerer) Option { return func(o *options) { o.reg = reg } }

// WithDedup sets how many deliveries the set remembers (default 10 000; the least recently
// delivered is forgotten first) and for how long (default 24h). A size of 0 disables it.
func WithDedup(size int, window time.Duration) Option {
	return func(o *options) { o.dedupSize, o.dedupWindow = size, window }
}

// New validates the channels, resolves their secrets and returns the set.
func New(channels []Channel, opts ...Option) (*Set, error) {
	if err := ValidateChannels(channels); err != nil {
		return nil, fmt.Errorf("notification channels: %w", err)
	}
	o := options{now: time.Now, client: outbound.Client(), newBackOff: outbound.DefaultBackOff,
		maxRetryAfter: 30 * time.Second, log: slog.Default(), dedupSize: 10000, dedupWindow: 24 * time.Hour}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Set{chans: map[string]*channel{}, memo: newMemo(o.dedupSize, o.dedupWindow), o: o, m: newMetrics(o.reg)}
	for _, c := range channels {
		ch, err := s.newChannel(c.withDefaults())
		if err != nil {
			return nil, fmt.Errorf("notification channel %s: %w", c.Name, err)
		}
		s.chans[c.Name] = ch
		s.names = append(s.names, c.Name)
	}
	sort.Strings(s.names)
	return s, nil
}

// Names returns the channel names, sorted.
func (s *Set) Names() []string { return append([]string(nil), s.names...) }

// Channel returns the named channel's notifier.
func (s *Set) Channel(name string) (Notifier, bool) {
	c, ok := s.chans[name]
	return c, ok
}

// Notify delivers m through the named channel (see [Notifier]). An unknown name is an error
// wrapping [ErrUnknownChannel].
func (s *Set) Notify(ctx context.Context, name string, m Message) (*event.Action, error) {
	c, ok := s.chans[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q (have %v)", ErrUnknownChannel, name, s.names)
	}
	return c.Notify(ctx, m)
}

// Close releases idle connections.
func (s *Set) Close() { s.o.client.CloseIdleConnections() }

// channel is one configured channel.
type channel struct {
	set      *Set
	cfg      Channel
	endpoint string // the URL posted to, credentials included for Slack and Teams
	cred     string // the signing secret or routing key
	target   string // name and redacted URL, for records and logs
	wh       *standardwebhooks.Webhook
}

func (s *Set) newChannel(c Channel) (*channel, error) {
	endpoint, cred, err := c.endpoint()
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, errors.New("URL does not parse") // validated before; never repeat it
	}
	ch := &channel{set: s, cfg: c, endpoint: endpoint, cred: cred}
	switch c.Type {
	case TypeSlack, TypeTeams:
		ch.target = c.Name + " " + outbound.RedactHost(u)
	default:
		ch.target = c.Name + " " + outbound.Redact(u)
	}
	if c.Type == TypeWebhook {
		if ch.wh, err = standardwebhooks.NewWebhook(cred); err != nil {
			return nil, errors.New("webhook secret is not usable for signing")
		}
	}
	return ch, nil
}

// namespace scopes the ids of notify actions; it never changes.
var namespace = uuid.MustParse("3f0d3c8e-57a4-4f61-9d0e-6a8f2f1b7c41")

func (c *channel) action(f *event.Finding, m *Message, now time.Time) *event.Action {
	sub := f.Principal.Subject
	if sub == "" {
		sub = f.Principal.ClientID
	}
	a := &event.Action{
		ID:        uuid.NewSHA1(namespace, []byte(f.ID+"\x00notify\x00"+c.cfg.Name)).String(),
		Time:      now.UTC(),
		Tenant:    f.Tenant,
		FindingID: f.ID,
		Subject:   sub,
		Kind:      event.ActionNotify,
		Target:    c.target,
		Scope:     "channel",
		Playbook:  m.Playbook,
		DryRun:    m.DryRun,
		LatencyMS: max(float64(now.Sub(f.Time).Microseconds())/1000, 0),
	}
	if m.Playbook != "" {
		a.Actor = "playbook:" + m.Playbook
	}
	return a
}

// Notify implements [Notifier] for one channel.
func (c *channel) Notify(ctx context.Context, m Message) (*event.Action, error) {
	s := c.set
	f := &m.Finding
	start := s.o.now()
	if f.Severity < c.cfg.MinSeverity {
		a := c.action(f, &m, start)
		a.Status = StatusSkipped
		a.Detail = fmt.Sprintf("severity %d is below channel %s's min_severity %d", f.Severity, c.cfg.Name, c.cfg.MinSeverity)
		c.record(a, start)
		return a, nil
	}
	key := c.cfg.Name + "\x00" + f.ID
	done, dup, err := s.memo.acquire(ctx, key, start)
	if err != nil {
		return nil, fmt.Errorf("notify %s about finding %s: %w", c.cfg.Name, f.ID, err)
	}
	if dup {
		s.m.duplicates.WithLabelValues(c.cfg.Name).Inc()
		s.o.log.Info("notification already delivered, not repeated", "channel", c.cfg.Name, "finding", f.ID)
		return nil, nil
	}
	delivered := false
	defer func() { done(delivered) }()

	body, err := c.body(&m, start)
	if err != nil {
		// A finding that decoded always encodes; if not, say so on the record rather than stop.
		a := c.action(f, &m, s.o.now())
		a.Status, a.Detail = StatusFailed, "encode "+string(c.cfg.Type)+" payload: "+err.Error()
		c.record(a, start)
		return a, nil
	}
	o := outbound.Deliver(ctx, outbound.Delivery{
		Client: s.o.client, NewBackOff: s.o.newBackOff, MaxRetryAfter: s.o.maxRetryAfter, Now: s.o.now,
		MaxAttempts: c.cfg.MaxAttempts, Timeout: c.cfg.Timeout,
		Build: func(ctx context.Context, ts time.Time) (*http.Request, error) {
			return c.request(ctx, f.ID, body, ts)
		},
		OnAttempt: func(res string) { s.m.attempts.WithLabelValues(c.cfg.Name, res).Inc() },
		OnRetry: func(attempt int, detail string, wait time.Duration) {
			s.o.log.Warn("notification attempt failed, retrying", "channel", c.cfg.Name, "finding", f.ID,
				"attempt", attempt, "detail", detail, "wait", wait, "target", c.target)
		},
	})
	if o.Err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("notify %s about finding %s interrupted after %d attempts: %w", c.cfg.Name, f.ID, o.Attempts, context.Cause(ctx))
	}
	a := c.action(f, &m, s.o.now())
	a.Attempts, a.Status, a.Detail = o.Attempts, StatusSucceeded, o.Detail
	if o.Err != nil {
		a.Status = StatusFailed
	}
	if more := c.describe(o); more != "" {
		a.Detail += ": " + more
	}
	delivered = o.Err == nil
	c.record(a, start)
	return a, nil
}

// body renders m in the channel's vendor shape.
func (c *channel) body(m *Message, now time.Time) ([]byte, error) {
	v := newView(m, c.cfg.FindingURL)
	switch c.cfg.Type {
	case TypeSlack:
		return marshal(slackPayload(&v))
	case TypeTeams:
		return marshal(teamsPayload(&v, m.Finding.Severity))
	case TypePagerDuty:
		return marshal(pdPayloadOf(m, &v, c.cred, c.cfg.DedupBy))
	default:
		return marshal(webhookPayloadOf(m, now))
	}
}

// marshal encodes v as JSON without HTML escaping: the vendors decode JSON, and "&lt;" stays
// readable in the payload rather than "\u0026lt;".
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// request is one attempt's POST. Webhooks are signed afresh at ts with the finding id as
// webhook-id, so receivers' replay windows accept late retries and drop repeats.
func (c *channel) request(ctx context.Context, id string, body []byte, ts time.Time) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, errors.New("build request") // the error would repeat the URL, a credential for Slack
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mcpwatch-notify")
	if c.wh != nil {
		sig, err := c.wh.Sign(id, ts, body)
		if err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
		req.Header.Set(standardwebhooks.HeaderWebhookID, id)
		req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	}
	return req, nil
}

// describe is what the vendor said, beyond the status line: PagerDuty's dedup key or its
// reasons for refusing an event; Slack's and Teams' error text. Empty when there is nothing.
func (c *channel) describe(o outbound.Outcome) string {
	if o.StatusCode == 0 {
		return ""
	}
	ok := o.Err == nil
	switch c.cfg.Type {
	case TypePagerDuty:
		return pdDescribe(o.Body, ok)
	case TypeSlack, TypeTeams:
		if ok || len(o.Body) == 0 {
			return ""
		}
		return clip(clean(string(bytes.TrimSpace(o.Body))), 300, nil)
	}
	return ""
}

// record counts and logs a finished action. Secrets never appear: the target is redacted and
// payloads are not logged.
func (c *channel) record(a *event.Action, start time.Time) {
	s := c.set
	s.m.deliveries.WithLabelValues(c.cfg.Name, string(c.cfg.Type), a.Status).Inc()
	if a.Status != StatusSkipped {
		s.m.seconds.WithLabelValues(c.cfg.Name).Observe(s.o.now().Sub(start).Seconds())
	}
	kv := []any{"channel", c.cfg.Name, "type", c.cfg.Type, "status", a.Status, "finding", a.FindingID,
		"tenant", a.Tenant, "subject", a.Subject, "target", c.target, "attempts", a.Attempts, "latency_ms", a.LatencyMS}
	if a.Detail != "" {
		kv = append(kv, "detail", a.Detail)
	}
	switch a.Status {
	case StatusFailed:
		s.o.log.Error("notification failed", kv...)
	case StatusSkipped:
		s.o.log.Info("notification skipped", kv...)
	default:
		s.o.log.Info("notification delivered", kv...)
	}
}

type metrics struct {
	deliveries *prometheus.CounterVec
	attempts   *prometheus.CounterVec
	duplicates *prometheus.CounterVec
	seconds    *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		deliveries: obs.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_notify_deliveries_total",
			Help: "Notifications by channel, type and final status (succeeded, failed, skipped)."}, []string{"channel", "type", "status"})),
		attempts: obs.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_notify_attempts_total",
			Help: "Notification delivery attempts by channel and result (2xx, 3xx, 4xx, 429, 5xx, error)."}, []string{"channel", "result"})),
		duplicates: obs.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_notify_duplicates_total",
			Help: "Notifications not repeated because the finding was already delivered to the channel."}, []string{"channel"})),
		seconds: obs.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mcpwatch_notify_seconds",
			Help:    "Time to deliver a notification, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 15)}, []string{"channel"})),
	}
}
