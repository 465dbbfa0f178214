package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"

	"github.com/mcpwatch/mcpwatch/event"
)

// Controls is the view of the control topic a [Revoker] needs: the revocations in force
// (internal/control's Store implements it).
type Controls interface {
	// MatchKind returns a control of kind in force at now for exactly scope and value, in
	// tenant or for every tenant.
	MatchKind(tenant string, kind event.ControlKind, scope event.ControlScope, value string, now time.Time) (event.Control, bool)
	// OnChange registers fn to be called after every control applied; fn must return quickly.
	OnChange(fn func())
}

// ActionSink records the [event.Action] of each revocation (the actions topic). It retries as
// it sees fit and returns an error only when it gives up (ctx ended).
type ActionSink interface {
	PublishAction(ctx context.Context, key string, a *event.Action) error
}

// ActionSinkFunc adapts a function to [ActionSink].
type ActionSinkFunc func(ctx context.Context, key string, a *event.Action) error

// PublishAction calls f.
func (f ActionSinkFunc) PublishAction(ctx context.Context, key string, a *event.Action) error {
	return f(ctx, key, a)
}

// RevokerDeps are what [Revoker.Run] acts on and reports to.
type RevokerDeps struct {
	Controls Controls
	Actions  ActionSink
	// Tenant is the gateway's tenant: controls of this tenant or of every tenant apply.
	Tenant string
	// Actor names this gateway in actions: "gateway:<observer>".
	Actor string
}

// Revoker revokes at the authorization server (RFC 7009) the access tokens this gateway has seen
// when a revoke control names them, by token id (jti), subject or client. The responder sees only
// a token's id; only the gateways hold tokens. So each gateway keeps, in memory only, the live
// access tokens it accepted (keyed by their SHA-256, each dropped at its exp, at most
// [Revocation.MaxHeld]); it never logs or persists them. When a control arrives, or a token of a
// principal already revoked is presented, the token is POSTed to the revocation endpoint with
// token_type_hint=access_token, authenticated as the introspection client (HTTP Basic), and
// retried with backoff until the server answers 200, refuses for good (a 4xx other than 429), or
// the token expires (a revoked token past its exp needs nothing). RFC 7009 §2.2 answers 200 for
// unknown and already revoked tokens, so several gateways revoking one token is harmless. Each
// outcome is recorded as one [event.Action] (kind oauth_revoke) whose id is derived from the
// control's id and the token's hash, so a redelivered control never doubles it. A token revoked
// is dropped; its hash is kept until exp, so the token presented again is not revoked twice.
//
// Whether revoking an access token also revokes its grant (the refresh token, which the gateway
// never sees) is the server's choice (RFC 7009 §2.1).
type Revoker struct {
	endpoint string
	clientID string
	secret   string
	client   *http.Client
	timeout  time.Duration
	now      func() time.Time
	log      *slog.Logger
	m        *metrics
	max      int
	// NewBackOff makes the backoff between attempts of one revocation.
	newBackOff func() backoff.BackOff

	wake chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex
	held map[[sha256.Size]byte]*heldToken
	deps *RevokerDeps    // nil until Run
	ctx  context.Context // Run's: revocations in flight end with it
}

// heldToken is one live access token this gateway accepted.
type heldToken struct {
	tok  string // "" once revoked: the token itself is dropped, its hash kept until exp
	p    event.Principal
	exp  time.Time
	busy bool            // a revocation is in flight
	done bool            // revoked (or expired before the server took it): never again
	gave map[string]bool // control ids whose revocation the server refused for good
}

func newRevoker(endpoint string, cfg Config, client *http.Client, log *slog.Logger, m *metrics) *Revoker {
	return &Revoker{
		endpoint: endpoint,
		clientID: cfg.Introspection.ClientID,
		secret:   cfg.Introspection.secret(),
		client:   client,
		timeout:  cfg.HTTPTimeout,
		now:      cfg.Now,
		log:      log,
		m:        m,
		max:      cfg.Revocation.MaxHeld,
		newBackOff: func() backoff.BackOff {
			b := backoff.NewExponentialBackOff()
			b.InitialInterval = 200 * time.Millisecond
			b.MaxInterval = 10 * time.Second
			return b
		},
		wake: make(chan struct{}, 1),
		held: map[[sha256.Size]byte]*heldToken{},
	}
}

// Held is the number of access tokens held and not revoked.
func (r *Revoker) Held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, h := range r.held {
		if !h.done {
			n++
		}
	}
	return n
}

// hold keeps tok, accepted with grant g, until its exp; if a revoke control already names it,
// its revocation starts. A token held already costs one hash and one map lookup.
func (r *Revoker) hold(tok string, g *Grant) {
	key := sha256.Sum256([]byte(tok))
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.held[key]; ok || !now.Before(g.ExpiresAt) {
		return
	}
	if len(r.held) >= r.max {
		r.prune(now)
		if len(r.held) >= r.max {
			r.m.notHeld.Inc()
			return
		}
	}
	h := &heldToken{tok: tok, p: g.Principal, exp: g.ExpiresAt}
	r.held[key] = h
	r.m.held.Set(float64(len(r.held)))
	if r.deps != nil {
		r.consider(key, h, now)
	}
}

// prune drops expired tokens; r.mu must be held.
func (r *Revoker) prune(now time.Time) {
	for k, h := range r.held {
		if !now.Before(h.exp) && !h.busy {
			delete(r.held, k)
		}
	}
	r.m.held.Set(float64(len(r.held)))
}

// Run acts on d.Controls until ctx ends: at once, whenever a control changes, and every 30
// seconds (to drop expired tokens). It waits for the revocations in flight, which end with ctx.
func (r *Revoker) Run(ctx context.Context, d RevokerDeps) error {
	if d.Controls == nil || d.Actions == nil {
		return errors.New("revoker: controls and an action sink are required")
	}
	r.mu.Lock()
	if r.deps != nil {
		r.mu.Unlock()
		return errors.New("revoker: already running")
	}
	r.deps, r.ctx = &d, ctx
	r.mu.Unlock()
	d.Controls.OnChange(r.poke)
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	r.poke()
	for {
		select {
		case <-ctx.Done():
			r.wg.Wait()
			return nil
		case <-r.wake:
		case <-tick.C:
		}
		r.scan()
	}
}

// poke wakes Run without blocking the control follower.
func (r *Revoker) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// scan drops expired tokens and starts the revocation of every held token a control names.
func (r *Revoker) scan() {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prune(now)
	for k, h := range r.held {
		r.consider(k, h, now)
	}
}

// consider starts the revocation of h if a revoke control in force names its token id, subject
// or client, none is in flight, and the server has not refused it for that control already.
// r.mu must be held.
func (r *Revoker) consider(key [sha256.Size]byte, h *heldToken, now time.Time) {
	if h.busy || h.done || r.ctx.Err() != nil {
		return
	}
	for _, q := range [...]struct {
		scope event.ControlScope
		value string
	}{{event.ScopeToken, h.p.TokenID}, {event.ScopeSubject, h.p.Subject}, {event.ScopeClient, h.p.ClientID}} {
		c, ok := r.deps.Controls.MatchKind(r.deps.Tenant, event.ControlRevoke, q.scope, q.value, now)
		if !ok || h.gave[c.ID] {
			continue
		}
		h.busy = true
		r.wg.Add(1)
		go r.revoke(key, h, c)
		return
	}
}

// errTokenExpired ends the retries of a token that expired before the server took it.
var errTokenExpired = errors.New("token expired")

// revoke revokes h at the server for control c, records the action and updates what is held.
func (r *Revoker) revoke(key [sha256.Size]byte, h *heldToken, c event.Control) {
	defer r.wg.Done()
	r.mu.Lock()
	tok := h.tok
	r.mu.Unlock()
	ctx, cancel := context.WithDeadlineCause(r.ctx, h.exp, errTokenExpired)
	defer cancel()
	attempts := 0
	var last error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempts++
		err := r.post(ctx, tok)
		if err != nil {
			last = err
		}
		return struct{}{}, err
	}, backoff.WithBackOff(r.newBackOff()), backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, next time.Duration) {
			r.log.Warn("revocation at the authorization server: retrying", "jti", h.p.TokenID, "sub", h.p.Subject,
				"control", c.ID, "attempt", attempts, "next", next, "err", err)
		}))
	status, detail := "succeeded", ""
	switch {
	case err == nil:
	case r.ctx.Err() != nil:
		// Stopping: nothing is recorded; the control still refuses the token at every gateway.
		r.log.Warn("revocation at the authorization server interrupted by shutdown", "jti", h.p.TokenID,
			"control", c.ID, "attempts", attempts)
		r.mu.Lock()
		h.busy = false
		r.mu.Unlock()
		return
	case errors.Is(err, errTokenExpired):
		status = "skipped"
		detail = fmt.Sprintf("token expired before the authorization server took the revocation (last error: %v)", last)
	default:
		status = "failed"
		detail = err.Error()
	}
	done := r.now()
	r.mu.Lock()
	h.busy = false
	if status == "failed" {
		if h.gave == nil {
			h.gave = map[string]bool{}
		}
		h.gave[c.ID] = true
	} else {
		// Revoked, or dead anyway. The hash stays until exp, so the same token presented
		// again (a client retrying) is not revoked and recorded twice.
		h.done, h.tok = true, ""
	}
	d := r.deps
	r.mu.Unlock()
	r.m.revocations.WithLabelValues(status).Inc()

	a := &event.Action{
		Schema: event.SchemaVersion, ID: ActionID(c.ID, key), Time: done, Tenant: d.Tenant,
		FindingID: c.FindingID, Subject: h.p.Subject, Kind: event.ActionOAuthRevoke,
		Target: "token:" + h.p.TokenID, Status: status, Detail: detail, Attempts: attempts,
		LatencyMS: float64(done.Sub(c.Time).Microseconds()) / 1000, Scope: event.ScopeToken,
		Actor: d.Actor, Reason: c.Reason, ControlID: c.ID,
	}
	level := slog.LevelInfo
	if status != "succeeded" {
		level = slog.LevelWarn
	}
	r.log.Log(r.ctx, level, "revocation at the authorization server", "status", status, "jti", h.p.TokenID,
		"sub", h.p.Subject, "control", c.ID, "attempts", attempts, "latency_ms", a.LatencyMS, "detail", detail)
	if err := d.Actions.PublishAction(r.ctx, event.PrincipalKey(d.Tenant, h.p), a); err != nil {
		r.log.Error("oauth_revoke action not recorded", "action", a.ID, "control", c.ID, "err", err)
	}
}

// ActionID is the id of the action recording the revocation of the token with SHA-256 tokenHash
// for control controlID: a UUIDv5, the same on every retry, redelivery and gateway replica.
func ActionID(controlID string, tokenHash [sha256.Size]byte) string {
	return uuid.NewSHA1(actionNamespace, []byte(controlID+"\x00"+hex.EncodeToString(tokenHash[:]))).String()
}

var actionNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/mcpwatch/mcpwatch/oauth-revoke"))

// post sends one RFC 7009 §2.1 revocation request. A 200 is success; a refusal (4xx but 429) is
// permanent; anything else (network, 5xx, 429) is retried, after Retry-After when given.
func (r *Revoker) post(ctx context.Context, tok string) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	form := url.Values{"token": {tok}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return backoff.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(r.clientID), url.QueryEscape(r.secret))
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("revocation endpoint unreachable: %w", err) // names the endpoint, never the body
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxMetadataBytes))
		return nil
	}
	err = fmt.Errorf("revocation endpoint answered status %d%s", resp.StatusCode, oauthError(resp.Body))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 && s <= 60 {
			return errors.Join(err, backoff.RetryAfter(s))
		}
		return err
	default:
		// invalid_client (the server lets only the token's own client revoke it),
		// unsupported_token_type, invalid_request: asking again changes nothing.
		return backoff.Permanent(err)
	}
}

// oauthError renders an RFC 6749 §5.2 error body (error, error_description) for the action's
// detail, clipped; nothing when the body is not one.
func oauthError(body io.Reader) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.NewDecoder(io.LimitReader(body, 4096)).Decode(&e) != nil || e.Error == "" {
		return ""
	}
	s := ": " + clip(e.Error, 64)
	if e.Description != "" {
		s += " (" + clip(e.Description, 200) + ")"
	}
	return s
}
