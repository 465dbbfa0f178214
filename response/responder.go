// Package response acts on findings: it revokes the principal through the compacted control
// topic that every gateway follows, tells people through a signed webhook, and records each
// action and its outcome on the actions topic.
//
// # Two consumer groups
//
// The responder reads the findings topic twice, as two consumer-group stages (see
// [NewRespondFactory] and [NewNotifyFactory]):
//
//   - "respond" enforces. For each finding at or above the threshold it returns the control
//     record and the revoke action record to the stage loop, which produces them and commits the
//     finding only once Kafka has acknowledged both. It does no network I/O of its own, so a
//     revocation is on the control topic within one produce round trip of the finding.
//   - "notify" delivers webhooks, with retries, and returns the webhook action records. It
//     commits a finding only after its webhook has succeeded or finally failed.
//
// Putting both in one handler would make the next batch's revocations wait behind this batch's
// webhook retries (up to MaxAttempts × WebhookTimeout plus backoff). Delivering webhooks on a
// goroutine after committing would lose them on a crash. Two groups give each side its own
// committed offsets: enforcement never waits for a receiver, and a webhook in flight during a
// crash is redelivered rather than lost. Only the "respond" stage writes the control topic, so
// a lagging notifier can never overwrite a newer control with an older one.
//
// # Idempotency
//
// Redelivery is normal (at-least-once). The control record's key ([event.Control.Key]) makes a
// repeated revocation replace itself; control and action ids are derived from the finding id, so
// repeats carry the same ids; the webhook id is the finding id, so receivers drop repeated
// deliveries (the [Receiver] does).
package response

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/response/internal/outbound"
	"github.com/mcpwatch/mcpwatch/response/notify"
	"github.com/mcpwatch/mcpwatch/response/playbook"
)

// Action statuses.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	// StatusSkipped is a deliberate non-action, with the reason in the detail: the finding was
	// older than MaxAge, or its revocation would already have expired.
	StatusSkipped = "skipped"
)

// Stage names, also the suffix of their consumer groups.
const (
	StageRespond = "respond"
	StageNotify  = "notify"
)

// Responder decides and carries out the response to findings. Its methods are safe for
// concurrent use.
type Responder struct {
	names  event.Topics
	cfg    Config
	log    *slog.Logger
	m      *metrics
	now    func() time.Time
	client *http.Client
	// newBackOff returns the wait policy between webhook attempts.
	newBackOff    func() backoff.BackOff
	maxRetryAfter time.Duration
	wh            *standardwebhooks.Webhook
	target        string // the webhook URL without credentials or query, for records and logs
	// dec decides under playbooks; nil: the threshold revocation ([Responder.Enforce]).
	dec *decider
	// chans are the notify stage's channels under playbooks ([WithChannels]).
	chans *notify.Set
}

// Option adjusts a [Responder]; tests use them to remove the wall clock and the waits.
type Option func(*Responder)

// WithClock sets the clock used for action times, latencies and webhook timestamps.
func WithClock(now func() time.Time) Option { return func(r *Responder) { r.now = now } }

// WithHTTPClient sets the webhook HTTP client. The default refuses redirects, which could
// forward signed findings to another host, and requires TLS 1.2 or later.
func WithHTTPClient(c *http.Client) Option { return func(r *Responder) { r.client = c } }

// WithBackOff sets the wait policy between webhook attempts (default exponential from 500ms,
// doubling, up to 10s, ±20% jitter).
func WithBackOff(f func() backoff.BackOff) Option { return func(r *Responder) { r.newBackOff = f } }

// WithPlaybooks makes the responder decide under the playbooks of store instead of revoking every
// finding over the threshold. controls, if not nil, follows the control topic, so that no
// decision replaces a control in force by a shorter one.
func WithPlaybooks(store *playbook.Store, controls *control.Store) Option {
	return func(r *Responder) { r.dec = newDecider(store, controls) }
}

// WithMaxRetryAfter caps how long a receiver's Retry-After may delay the next attempt (default
// 30s); 0 ignores Retry-After.
func WithMaxRetryAfter(d time.Duration) Option { return func(r *Responder) { r.maxRetryAfter = d } }

// New returns a Responder writing to the topics in names. reg may be nil.
func New(names event.Topics, cfg Config, reg prometheus.Registerer, log *slog.Logger, opts ...Option) (*Responder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.WebhookURL != "" {
		sec, err := cfg.secret()
		if err != nil {
			return nil, fmt.Errorf("response: webhook secret: %w", err)
		}
		cfg.WebhookSecret = sec
	}
	if log == nil {
		log = slog.Default()
	}
	r := &Responder{
		names: names, cfg: cfg, log: log.With("component", "responder"), m: newMetrics(reg),
		now:           time.Now,
		client:        outbound.Client(),
		newBackOff:    outbound.DefaultBackOff,
		maxRetryAfter: 30 * time.Second,
	}
	for _, o := range opts {
		o(r)
	}
	if cfg.WebhookURL != "" {
		wh, err := standardwebhooks.NewWebhook(cfg.WebhookSecret)
		if err != nil {
			return nil, fmt.Errorf("response: webhook secret: %w", err)
		}
		u, _ := url.Parse(cfg.WebhookURL) // Validate parsed it
		r.wh, r.target = wh, redactURL(u)
	}
	return r, nil
}

// Close releases the webhook client's idle connections.
func (r *Responder) Close() {
	r.client.CloseIdleConnections()
	if r.chans != nil {
		r.chans.Close()
	}
}

// Webhooks reports whether a webhook receiver is configured.
func (r *Responder) Webhooks() bool { return r.wh != nil }

// Enforce decides the enforcement for f. Below the threshold it returns nothing. Otherwise it
// returns the revoke action record and, unless the action is skipped or failed, the control
// record to publish with key [event.Control.Key]. Enforce has no side effects: the caller
// publishes both, control first.
//
// The control revokes the subject, or the OAuth client when the finding names no subject
// (which shuts out every user of that client). It expires RevokeFor after the finding's time,
// so a late or replayed finding revokes only for what is left of that period, and not at all
// once it has passed.
func (r *Responder) Enforce(f *event.Finding) (*event.Control, *event.Action) {
	if f.Score < r.cfg.Threshold {
		return nil, nil
	}
	now := r.now()
	p := r.plan(f, now)
	a := r.action(f, event.ActionRevoke, now)
	a.Status, a.Detail = p.status, p.detail
	if p.control != nil {
		a.Target, a.Attempts = p.control.Key(), 1
	}
	return p.control, a
}

// planned is the enforcement decided for a finding: the same for the enforcing and the
// notifying stage, since it depends only on the finding, the config and the clock.
type planned struct {
	control *event.Control
	status  string
	detail  string
}

func (r *Responder) plan(f *event.Finding, now time.Time) planned {
	if why, stale := r.stale(f, now); stale {
		return planned{status: StatusSkipped, detail: why}
	}
	var expires *time.Time
	if r.cfg.RevokeFor > 0 {
		exp := f.Time.Add(r.cfg.RevokeFor).UTC()
		if !now.Before(exp) {
			return planned{status: StatusSkipped,
				detail: fmt.Sprintf("revocation for %s would have expired at %s", r.cfg.RevokeFor, exp.Format(time.RFC3339))}
		}
		expires = &exp
	}
	scope, value := event.ScopeSubject, f.Principal.Subject
	if value == "" {
		scope, value = event.ScopeClient, f.Principal.ClientID
	}
	if value == "" {
		return planned{status: StatusFailed, detail: "finding names no subject or client id to revoke"}
	}
	return planned{status: StatusSucceeded, control: &event.Control{
		ID:        derivedID(f.ID, "control/revoke"),
		Time:      now.UTC(),
		Kind:      event.ControlRevoke,
		Scope:     scope,
		Tenant:    f.Tenant,
		Value:     value,
		Reason:    f.Summary,
		FindingID: f.ID,
		Expires:   expires,
	}}
}

// stale reports whether f is older than MaxAge at now, and says so.
func (r *Responder) stale(f *event.Finding, now time.Time) (string, bool) {
	age := now.Sub(f.Time)
	if r.cfg.MaxAge <= 0 || age <= r.cfg.MaxAge {
		return "", false
	}
	return fmt.Sprintf("finding is %s old, older than the max age %s", age.Round(time.Second), r.cfg.MaxAge), true
}

func (r *Responder) action(f *event.Finding, kind event.ActionKind, now time.Time) *event.Action {
	sub := f.Principal.Subject
	if sub == "" {
		sub = f.Principal.ClientID
	}
	return &event.Action{
		ID:        derivedID(f.ID, "action/"+string(kind)),
		Time:      now.UTC(),
		Tenant:    f.Tenant,
		FindingID: f.ID,
		Subject:   sub,
		Kind:      kind,
		LatencyMS: max(float64(now.Sub(f.Time).Microseconds())/1000, 0),
	}
}

// EnforceHandler is the "respond" stage's handler: findings in, control and revoke action
// records out, control first. It never returns a transient error; malformed findings are
// dead-lettered.
func (r *Responder) EnforceHandler() kafkaio.Handler {
	return kafkaio.PerRecord(func(_ context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
		if r.dec != nil && rec.Topic == r.names.Scores {
			var s event.Score
			if err := event.Decode(rec.Value, &s); err != nil {
				return nil, err
			}
			return r.decided(playbook.FromScore(&s), r.decideScore(rec.Partition, &s))
		}
		var f event.Finding
		if err := event.Decode(rec.Value, &f); err != nil {
			return nil, err
		}
		if r.dec != nil {
			return r.decided(&f, r.decideAll(part{rec.Topic, rec.Partition}, &f))
		}
		ctl, a := r.Enforce(&f)
		r.m.seen(StageRespond, a != nil)
		if a == nil {
			return nil, nil
		}
		var out []*kgo.Record
		if ctl != nil {
			cr, err := kafkaio.RecordOf(r.names.Control, ctl.Key(), ctl)
			if err != nil {
				return nil, kafkaio.Permanent(fmt.Errorf("encode control for finding %s: %w", f.ID, err))
			}
			out = append(out, cr)
		}
		ar, err := kafkaio.RecordOf(r.names.Actions, event.PrincipalKey(f.Tenant, f.Principal), a)
		if err != nil {
			return nil, kafkaio.Permanent(fmt.Errorf("encode action for finding %s: %w", f.ID, err))
		}
		r.record(a, &f)
		return append(out, ar), nil
	})
}

// decided is the enforcing handler's work under playbooks: controls first, then the action
// records, all produced before the finding's offset is committed.
func (r *Responder) decided(f *event.Finding, d decisions) ([]*kgo.Record, error) {
	r.m.seen(StageRespond, len(d.acts) > 0)
	out := make([]*kgo.Record, 0, len(d.ctls)+len(d.acts)+len(d.reqs))
	for _, q := range d.reqs {
		key, value, err := approval.EncodeRequest(q)
		if err != nil {
			return nil, kafkaio.Permanent(fmt.Errorf("encode approval request for finding %s: %w", f.ID, err))
		}
		out = append(out, &kgo.Record{Topic: r.names.Approvals, Key: []byte(key), Value: value})
	}
	for _, c := range d.ctls {
		cr, err := kafkaio.RecordOf(r.names.Control, c.Key(), c)
		if err != nil {
			return nil, kafkaio.Permanent(fmt.Errorf("encode control for finding %s: %w", f.ID, err))
		}
		out = append(out, cr)
	}
	for _, a := range d.acts {
		ar, err := kafkaio.RecordOf(r.names.Actions, event.PrincipalKey(f.Tenant, f.Principal), a)
		if err != nil {
			return nil, kafkaio.Permanent(fmt.Errorf("encode action for finding %s: %w", f.ID, err))
		}
		r.record(a, f)
		out = append(out, ar)
	}
	return out, nil
}

// NotifyHandler is the "notify" stage's handler: findings in, webhook deliveries, webhook action
// records out. Deliveries of one batch run concurrently (WebhookConcurrency). It returns an
// error only when shutdown interrupts a delivery: the batch then stays uncommitted and is
// redelivered, and receivers drop what they already had by its webhook id.
func (r *Responder) NotifyHandler() kafkaio.Handler {
	return kafkaio.HandlerFunc(func(ctx context.Context, recs []*kgo.Record) (kafkaio.Result, error) {
		if r.dec != nil && r.chans != nil {
			return r.notifyPlaybooks(ctx, recs)
		}
		var res kafkaio.Result
		findings := make([]*event.Finding, 0, len(recs))
		for _, rec := range recs {
			var f event.Finding
			if err := event.Decode(rec.Value, &f); err != nil {
				res.Dead = append(res.Dead, kafkaio.DeadLetter{Record: rec, Reason: err})
				continue
			}
			findings = append(findings, &f)
		}
		actions := make([]*event.Action, len(findings))
		errs := make([]error, len(findings))
		sem := make(chan struct{}, r.cfg.WebhookConcurrency)
		var wg sync.WaitGroup
		for i, f := range findings {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				actions[i], errs[i] = r.Notify(ctx, f)
			})
		}
		wg.Wait()
		for i, a := range actions {
			if errs[i] != nil {
				return kafkaio.Result{}, errs[i]
			}
			if a == nil {
				continue
			}
			f := findings[i]
			ar, err := kafkaio.RecordOf(r.names.Actions, event.PrincipalKey(f.Tenant, f.Principal), a)
			if err != nil {
				return kafkaio.Result{}, kafkaio.Permanent(fmt.Errorf("encode webhook action for finding %s: %w", f.ID, err))
			}
			res.Out = append(res.Out, ar)
		}
		return res, nil
	})
}

// record counts and logs a finished action.
func (r *Responder) record(a *event.Action, f *event.Finding) {
	r.m.actions.WithLabelValues(string(a.Kind), a.Status).Inc()
	if a.Status == StatusSucceeded || a.Status == StatusFailed {
		r.m.latency.WithLabelValues(string(a.Kind)).Observe(a.LatencyMS / 1000)
	}
	kv := []any{"kind", a.Kind, "status", a.Status, "finding", f.ID, "tenant", f.Tenant, "subject", a.Subject,
		"score", f.Score, "target", a.Target, "attempts", a.Attempts, "latency_ms", a.LatencyMS}
	if a.Detail != "" {
		kv = append(kv, "detail", a.Detail)
	}
	switch a.Status {
	case StatusFailed:
		r.log.Error("response action failed", kv...)
	case StatusSkipped:
		r.log.Warn("response action skipped", kv...)
	default:
		r.log.Info("response action", kv...)
	}
}

// idNamespace scopes the ids derived from finding ids; it never changes.
var idNamespace = uuid.MustParse("9a6f6871-6702-4dde-9c07-14316c6c6515")

// derivedID is a name-based UUID (RFC 9562 version 5) of what was done about a finding, so a
// redelivered finding yields records with the same ids.
func derivedID(findingID, what string) string {
	return uuid.NewSHA1(idNamespace, []byte(findingID+"\x00"+what)).String()
}

type metrics struct {
	findings *prometheus.CounterVec
	actions  *prometheus.CounterVec
	attempts *prometheus.CounterVec
	webhook  *prometheus.HistogramVec
	latency  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_response_findings_total",
			Help: "Findings seen by each responder stage, by decision (act, below_threshold)."}, []string{"stage", "decision"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_response_actions_total",
			Help: "Response actions by kind (revoke, webhook) and status (succeeded, failed, skipped)."}, []string{"kind", "status"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_response_webhook_attempts_total",
			Help: "Webhook delivery attempts by result (2xx, 3xx, 4xx, 429, 5xx, error)."}, []string{"result"}),
		webhook: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mcpwatch_response_webhook_seconds",
			Help:    "Time to deliver a webhook, retries included, by final status.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 15)}, []string{"status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mcpwatch_response_action_latency_seconds",
			Help:    "Time from the finding (event time) to the action's completion, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 15)}, []string{"kind"}),
	}
	m.findings = obs.Register(reg, m.findings)
	m.actions = obs.Register(reg, m.actions)
	m.attempts = obs.Register(reg, m.attempts)
	m.webhook = obs.Register(reg, m.webhook)
	m.latency = obs.Register(reg, m.latency)
	return m
}

func (m *metrics) seen(stage string, act bool) {
	d := "below_threshold"
	if act {
		d = "act"
	}
	m.findings.WithLabelValues(stage, d).Inc()
}
