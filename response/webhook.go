package response

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/mcpwatch/mcpwatch/event"
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

// errRetryable marks a failed attempt worth repeating.
var errRetryable = errors.New("retryable")

// deliver POSTs body until an attempt succeeds, fails for good, or the attempts run out. It
// returns the attempts made and a detail describing the last outcome.
func (r *Responder) deliver(ctx context.Context, id string, body []byte) (attempts int, detail string, err error) {
	op := func() (struct{}, error) {
		attempts++
		res, d, err := r.attempt(ctx, id, body)
		r.m.attempts.WithLabelValues(res).Inc()
		detail = d
		if attempts > 1 && err == nil {
			detail = fmt.Sprintf("%s after %d attempts", d, attempts)
		}
		return struct{}{}, err
	}
	notify := func(err error, wait time.Duration) {
		r.log.Warn("webhook attempt failed, retrying", "webhook_id", id, "attempt", attempts,
			"detail", detail, "wait", wait, "target", r.target)
	}
	_, err = backoff.Retry(ctx, op, backoff.WithBackOff(r.newBackOff()), backoff.WithMaxTries(uint(r.cfg.MaxAttempts)),
		backoff.WithMaxElapsedTime(0), backoff.WithNotify(notify))
	if err != nil && attempts > 1 {
		detail = fmt.Sprintf("%s (attempt %d of %d)", detail, attempts, r.cfg.MaxAttempts)
	}
	return attempts, detail, err
}

// attempt makes one signed POST. It returns the result class for metrics, a detail, and nil,
// a [backoff.Permanent] error, an error wrapping errRetryable, or a [backoff.RetryAfterError].
func (r *Responder) attempt(ctx context.Context, id string, body []byte) (result, detail string, err error) {
	actx, cancel := context.WithTimeout(ctx, r.cfg.WebhookTimeout)
	defer cancel()
	ts := r.now()
	sig, err := r.wh.Sign(id, ts, body)
	if err != nil {
		return "error", "sign: " + err.Error(), backoff.Permanent(err)
	}
	req, err := http.NewRequestWithContext(actx, http.MethodPost, r.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return "error", "build request", backoff.Permanent(errors.New("build webhook request"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mcpwatch-responder")
	req.Header.Set(standardwebhooks.HeaderWebhookID, id)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	resp, err := r.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "error", "interrupted", backoff.Permanent(ctx.Err())
		}
		// url.Error repeats the URL, which may hold credentials: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
			if ue.Timeout() {
				err = fmt.Errorf("no response within %s", r.cfg.WebhookTimeout)
			}
		}
		return "error", err.Error(), fmt.Errorf("%w: %v", errRetryable, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	_ = resp.Body.Close()
	detail = "HTTP " + resp.Status
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return "2xx", detail, nil
	case code == http.StatusTooManyRequests || code >= 500:
		result = "5xx"
		if code == http.StatusTooManyRequests {
			result = "429"
		}
		if d, ok := r.retryAfter(resp.Header.Get("Retry-After"), ts); ok {
			return result, detail, &backoff.RetryAfterError{Duration: d}
		}
		return result, detail, fmt.Errorf("%w: %s", errRetryable, detail)
	case code >= 300 && code < 400:
		return "3xx", detail + " (redirects are not followed)", backoff.Permanent(errors.New(detail))
	default:
		return "4xx", detail, backoff.Permanent(errors.New(detail))
	}
}

// retryAfter parses a Retry-After header (seconds or an HTTP date), capped at maxRetryAfter.
func (r *Responder) retryAfter(h string, now time.Time) (time.Duration, bool) {
	if h == "" || r.maxRetryAfter <= 0 {
		return 0, false
	}
	var d time.Duration
	if s, err := strconv.Atoi(h); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, 0), r.maxRetryAfter), true
}

func defaultBackOff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 500 * time.Millisecond
	b.Multiplier = 2
	b.RandomizationFactor = 0.2
	b.MaxInterval = 10 * time.Second
	return b
}

func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	t.MaxIdleConnsPerHost = 16
	return &http.Client{
		Transport: t,
		// A redirect would send a signed finding somewhere the operator did not configure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
