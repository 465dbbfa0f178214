// Package outbound delivers HTTP requests to receivers outside mcpwatch (webhook receivers,
// Slack, PagerDuty, Teams) the way the response stages need: a client that requires TLS 1.2+
// and never follows redirects, retries with backoff on what may heal (network errors, 429, 5xx)
// honouring Retry-After up to a cap, and URLs checked and redacted so that no credential reaches
// a log or an action record.
package outbound

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// maxBody bounds how much of a response is read (and kept in [Outcome.Body]).
const maxBody = 64 << 10

// Client returns the HTTP client for receivers: TLS 1.2 or later, redirects refused (a redirect
// would send a finding, or a credential in its body, somewhere the operator did not configure).
func Client() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	t.MaxIdleConnsPerHost = 16
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// DefaultBackOff is the wait between attempts: exponential from 500ms, doubling, up to 10s,
// ±20% jitter.
func DefaultBackOff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 500 * time.Millisecond
	b.Multiplier = 2
	b.RandomizationFactor = 0.2
	b.MaxInterval = 10 * time.Second
	return b
}

// RetryAfter parses a Retry-After header (seconds or an HTTP date) at now, capped at limit.
// It reports false when the header is absent or unreadable, or limit is 0 (Retry-After ignored).
func RetryAfter(h string, now time.Time, limit time.Duration) (time.Duration, bool) {
	if h == "" || limit <= 0 {
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
	return min(max(d, 0), limit), true
}

// ValidateURL reports a receiver URL that mcpwatch must not send findings to. what names it in
// the message ("webhook URL"). It must be https unless its host is a loopback address: the body
// says who did what, and over plain HTTP anyone on the path reads it and can drop alerts
// selectively. Loopback traffic never leaves the host (a local relay, a test). The message never
// repeats credentials, query or fragment.
func ValidateURL(raw, what string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the URL, which may carry credentials: report only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s does not parse: %w", what, err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%s %s has no host", what, Redact(u))
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if IsLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%s %s is plain http to a non-loopback host: use https (findings are confidential)", what, Redact(u))
	}
	return fmt.Errorf("%s scheme %q: want https (or http to loopback)", what, u.Scheme)
}

// IsLoopback reports whether host is "localhost" (RFC 6761 reserves it for loopback) or a
// loopback IP. Other names are not resolved: what they resolve to can change.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Redact is the URL without credentials, query or fragment, which may hold tokens: fit for logs
// and action records.
func Redact(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return r.String()
}

// RedactHost is the URL's scheme and host only, for URLs whose path is itself a credential
// (a Slack incoming webhook's /services/T…/B…/secret).
func RedactHost(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host}
	return r.String()
}

// Delivery is one message to deliver with retries.
type Delivery struct {
	Client *http.Client
	// NewBackOff returns the wait policy between attempts; nil: [DefaultBackOff].
	NewBackOff func() backoff.BackOff
	// MaxRetryAfter caps a receiver's Retry-After; 0 ignores it.
	MaxRetryAfter time.Duration
	// Now is the clock (nil: time.Now), passed to Build so that each attempt is signed at its
	// own time.
	Now func() time.Time
	// MaxAttempts bounds the attempts, the first included (at least 1).
	MaxAttempts int
	// Timeout bounds one attempt.
	Timeout time.Duration
	// Build returns one attempt's request. An error is final.
	Build func(ctx context.Context, now time.Time) (*http.Request, error)
	// OnAttempt, if set, is told each attempt's result class: 2xx, 3xx, 4xx, 429, 5xx or error.
	OnAttempt func(result string)
	// OnRetry, if set, is told of a failed attempt that will be retried after wait.
	OnRetry func(attempt int, detail string, wait time.Duration)
}

// Outcome is how a delivery ended.
type Outcome struct {
	Attempts int
	// Detail describes the last attempt: "HTTP 202 Accepted after 2 attempts",
	// "HTTP 503 Service Unavailable (attempt 5 of 5)", "connection refused", ...
	Detail string
	// StatusCode and Body (at most 64 KiB) are the last response's; 0 and nil without one.
	StatusCode int
	Body       []byte
	// Err is nil when the last attempt got a 2xx answer. It wraps the context's error when the
	// context ended first (the outcome is then unknown).
	Err error
}

// errRetryable marks a failed attempt worth repeating.
var errRetryable = errors.New("retryable")

// Deliver makes attempts until one gets a 2xx answer, one fails for good (a 3xx, a 4xx other
// than 429, a request that cannot be built), the attempts run out, or ctx ends. Network errors,
// 429 and 5xx are retried with backoff; a Retry-After is honoured up to MaxRetryAfter.
func Deliver(ctx context.Context, d Delivery) Outcome {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	newBackOff := d.NewBackOff
	if newBackOff == nil {
		newBackOff = DefaultBackOff
	}
	maxTries := max(d.MaxAttempts, 1)
	var o Outcome
	op := func() (struct{}, error) {
		o.Attempts++
		res, err := attempt(ctx, d, now, &o)
		if d.OnAttempt != nil {
			d.OnAttempt(res)
		}
		if o.Attempts > 1 && err == nil {
			o.Detail = fmt.Sprintf("%s after %d attempts", o.Detail, o.Attempts)
		}
		return struct{}{}, err
	}
	notify := func(_ error, wait time.Duration) {
		if d.OnRetry != nil {
			d.OnRetry(o.Attempts, o.Detail, wait)
		}
	}
	_, o.Err = backoff.Retry(ctx, op, backoff.WithBackOff(newBackOff()), backoff.WithMaxTries(uint(maxTries)),
		backoff.WithMaxElapsedTime(0), backoff.WithNotify(notify))
	if o.Err != nil && o.Attempts > 1 {
		o.Detail = fmt.Sprintf("%s (attempt %d of %d)", o.Detail, o.Attempts, maxTries)
	}
	if o.Err != nil && ctx.Err() != nil {
		o.Err = fmt.Errorf("%w (%w)", o.Err, context.Cause(ctx))
	}
	return o
}

// attempt makes one request, recording its detail, status and body in o. It returns the result
// class and nil, a [backoff.Permanent] error, an error wrapping errRetryable, or a
// [backoff.RetryAfterError].
func attempt(ctx context.Context, d Delivery, now func() time.Time, o *Outcome) (string, error) {
	actx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	o.StatusCode, o.Body = 0, nil
	ts := now()
	req, err := d.Build(actx, ts)
	if err != nil {
		o.Detail = "build request: " + err.Error()
		return "error", backoff.Permanent(err)
	}
	resp, err := d.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			o.Detail = "interrupted"
			return "error", backoff.Permanent(ctx.Err())
		}
		// url.Error repeats the URL, which may hold credentials: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
			if ue.Timeout() {
				err = fmt.Errorf("no response within %s", d.Timeout)
			}
		}
		o.Detail = err.Error()
		return "error", fmt.Errorf("%w: %v", errRetryable, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)) // lets the connection be reused
	_ = resp.Body.Close()
	o.StatusCode, o.Body = resp.StatusCode, body
	o.Detail = "HTTP " + resp.Status
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return "2xx", nil
	case code == http.StatusTooManyRequests || code >= 500:
		result := "5xx"
		if code == http.StatusTooManyRequests {
			result = "429"
		}
		if w, ok := RetryAfter(resp.Header.Get("Retry-After"), ts, d.MaxRetryAfter); ok {
			return result, &backoff.RetryAfterError{Duration: w}
		}
		return result, fmt.Errorf("%w: %s", errRetryable, o.Detail)
	case code >= 300 && code < 400:
		o.Detail += " (redirects are not followed)"
		return "3xx", backoff.Permanent(errors.New(o.Detail))
	default:
		return "4xx", backoff.Permanent(errors.New(o.Detail))
	}
}

// Standard Webhooks secrets: "whsec_" + base64; the specification asks for 24 to 64 bytes.
const (
	secretPrefix   = "whsec_"
	minSecretBytes = 24
	maxSecretBytes = 64
)

// ValidateWebhookSecret reports a Standard Webhooks signing secret that is not "whsec_" and the
// standard base64 of 24 to 64 bytes. The message never repeats the secret.
func ValidateWebhookSecret(s string) error {
	if !strings.HasPrefix(s, secretPrefix) {
		return errors.New(`webhook secret must start with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, secretPrefix))
	if err != nil {
		return errors.New(`webhook secret is not "whsec_" followed by standard base64`)
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return fmt.Errorf("webhook secret has %d bytes, Standard Webhooks wants %d to %d", len(key), minSecretBytes, maxSecretBytes)
	}
	return nil
}
