package response

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/response/internal/outbound"
)

// EventTypeFinding is the webhook payload type of a finding.
const EventTypeFinding = "mcpwatch.finding"

// Payload is the body of a webhook, in the Standard Webhooks shape: a type, the time of the
// event, and the data.
type Payload struct {
	Type      string      `json:"type"`
	Timestamp time.Time   `json:"timestamp"` // the finding's time
	Data      FindingData `json:"data"`
}

// FindingData is the finding, with the actions the responder takes about it.
type FindingData struct {
	event.Finding
	Actions []PlannedAction `json:"actions"`
}

// PlannedAction is an enforcement action the responder takes about the finding. The webhook is
// sent independently of the enforcing stage (it neither waits for nor delays it); the outcome of
// each action is recorded on the actions topic under the same finding id.
type PlannedAction struct {
	Kind event.ActionKind `json:"kind"`
	// Status is "issued" when the control record is published, or "skipped" / "failed" with the
	// reason in Detail.
	Status  string     `json:"status"`
	Target  string     `json:"target,omitempty"` // the control key
	Expires *time.Time `json:"expires,omitempty"`
	Detail  string     `json:"detail,omitempty"`
}

// PlannedIssued is the [PlannedAction.Status] of a control the responder publishes.
const PlannedIssued = "issued"

// payload is the webhook body for f, decided at now.
func (r *Responder) payload(f *event.Finding, now time.Time) Payload {
	p := r.plan(f, now)
	pa := PlannedAction{Kind: event.ActionRevoke, Status: p.status, Detail: p.detail}
	if p.control != nil {
		pa.Status, pa.Target, pa.Expires = PlannedIssued, p.control.Key(), p.control.Expires
	}
	return Payload{Type: EventTypeFinding, Timestamp: f.Time.UTC(),
		Data: FindingData{Finding: *f, Actions: []PlannedAction{pa}}}
}

// Notify delivers the webhook for f and returns its action record: succeeded, failed after its
// attempts (also logged) or skipped (older than MaxAge). Below the threshold, or without a
// webhook configured, it returns nil. The error is non-nil only when ctx ends before the outcome
// is known; no action is recorded then, since the finding will be redelivered.
//
// Network errors, 5xx and 429 are retried with exponential backoff up to MaxAttempts (a
// Retry-After is honoured up to a cap); other statuses are final. Redirects are not followed.
// Every attempt is signed afresh with the finding id as webhook-id and the attempt's time as
// webhook-timestamp, so receivers' replay windows accept late retries.
func (r *Responder) Notify(ctx context.Context, f *event.Finding) (*event.Action, error) {
	if r.wh == nil {
		return nil, nil
	}
	if f.Score < r.cfg.Threshold {
		r.m.seen(StageNotify, false)
		return nil, nil
	}
	r.m.seen(StageNotify, true)
	start := r.now()
	a := r.action(f, event.ActionWebhook, start)
	a.Target = r.target
	if why, stale := r.stale(f, start); stale {
		a.Status, a.Detail = StatusSkipped, why
		r.record(a, f)
		return a, nil
	}
	body, err := json.Marshal(r.payload(f, start))
	if err != nil {
		// A finding that decoded always encodes; if not, say so on the record rather than stop.
		a.Status, a.Detail = StatusFailed, "encode payload: "+err.Error()
		r.record(a, f)
		return a, nil
	}
	attempts, detail, derr := r.deliver(ctx, f.ID, body)
	if derr != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("webhook for finding %s interrupted after %d attempts: %w", f.ID, attempts, context.Cause(ctx))
	}
	end := r.now()
	a = r.action(f, event.ActionWebhook, end)
	a.Target, a.Attempts, a.Status, a.Detail = r.target, attempts, StatusSucceeded, detail
	if derr != nil {
		a.Status = StatusFailed
	}
	r.m.webhook.WithLabelValues(a.Status).Observe(end.Sub(start).Seconds())
	r.record(a, f)
	return a, nil
}

// deliver POSTs body until an attempt succeeds, fails for good, or the attempts run out. It
// returns the attempts made and a detail describing the last outcome.
func (r *Responder) deliver(ctx context.Context, id string, body []byte) (attempts int, detail string, err error) {
	o := outbound.Deliver(ctx, outbound.Delivery{
		Client: r.client, NewBackOff: r.newBackOff, MaxRetryAfter: r.maxRetryAfter, Now: r.now,
		MaxAttempts: r.cfg.MaxAttempts, Timeout: r.cfg.WebhookTimeout,
		Build:     func(ctx context.Context, ts time.Time) (*http.Request, error) { return r.request(ctx, id, body, ts) },
		OnAttempt: func(res string) { r.m.attempts.WithLabelValues(res).Inc() },
		OnRetry: func(attempt int, detail string, wait time.Duration) {
			r.log.Warn("webhook attempt failed, retrying", "webhook_id", id, "attempt", attempt,
				"detail", detail, "wait", wait, "target", r.target)
		},
	})
	return o.Attempts, o.Detail, o.Err
}

// request is one attempt's POST, signed at ts with id as webhook-id.
func (r *Responder) request(ctx context.Context, id string, body []byte, ts time.Time) (*http.Request, error) {
	sig, err := r.wh.Sign(id, ts, body)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return nil, errors.New("build webhook request") // the error would repeat the URL
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mcpwatch-responder")
	req.Header.Set(standardwebhooks.HeaderWebhookID, id)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	return req, nil
}

// retryAfter parses a Retry-After header (seconds or an HTTP date), capped at maxRetryAfter.
func (r *Responder) retryAfter(h string, now time.Time) (time.Duration, bool) {
	return outbound.RetryAfter(h, now, r.maxRetryAfter)
}
