package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// introspector asks an RFC 7662 endpoint about opaque tokens, and about JWTs in the JWT
// introspection modes, and caches the answers briefly, keyed by the token's SHA-256 (never the
// token). Answers that could not be had (network, status, garbled body) are not cached and refuse
// the request: fail closed.
type introspector struct {
	endpoint string
	clientID string
	secret   string
	client   *http.Client
	ttl      time.Duration
	size     int
	timeout  time.Duration
	issuer   string
	now      func() time.Time
	log      *slog.Logger
	m        *metrics

	mu    sync.Mutex
	cache map[[sha256.Size]byte]introEntry
}

type introEntry struct {
	grant *Grant
	err   error // a *TokenError: inactive or failing policy
	until time.Time
	jwt   bool // an answer about a JWT: only whether it is active (err nil or inactive)
}

func newIntrospector(endpoint string, cfg Config, client *http.Client, log *slog.Logger, m *metrics) *introspector {
	return &introspector{
		endpoint: endpoint,
		clientID: cfg.Introspection.ClientID,
		secret:   cfg.Introspection.secret(),
		client:   client,
		ttl:      cfg.Introspection.CacheTTL,
		size:     cfg.Introspection.CacheSize,
		timeout:  cfg.HTTPTimeout,
		issuer:   cfg.Issuer,
		now:      cfg.Now,
		log:      log,
		m:        m,
		cache:    map[[sha256.Size]byte]introEntry{},
	}
}

// grant returns the cached or fresh verdict on tok; check applies the verifier's claim policy
// (audience, lifetime, expiry) to the introspection response.
func (in *introspector) grant(ctx context.Context, tok string, check func(jwt.MapClaims) (*Grant, error)) (*Grant, error) {
	key := sha256.Sum256([]byte(tok))
	now := in.now()
	in.mu.Lock()
	e, ok := in.cache[key]
	if ok && !e.jwt && now.Before(e.until) {
		in.mu.Unlock()
		in.m.cacheHits.WithLabelValues("opaque").Inc()
		if e.err != nil {
			return nil, e.err
		}
		g := *e.grant
		return &g, nil
	}
	in.mu.Unlock()

	claims, err := in.ask(ctx, tok)
	if err != nil {
		in.m.introspections.WithLabelValues("opaque", "error").Inc()
		in.log.Warn("token introspection failed", "endpoint", in.endpoint, "err", err)
		return nil, err
	}
	var g *Grant
	if active, _ := claims["active"].(bool); !active {
		in.m.introspections.WithLabelValues("opaque", "inactive").Inc()
		err = invalid(ReasonInactive, nil)
	} else {
		in.m.introspections.WithLabelValues("opaque", "active").Inc()
		if _, ok := claims["iss"]; !ok {
			// RFC 7662 makes iss optional; the configured endpoint speaks for the issuer.
			claims["iss"] = in.issuer
		}
		g, err = check(claims)
		if g != nil {
			g.Introspected = true
		}
	}
	until := now.Add(in.ttl)
	if g != nil && g.ExpiresAt.Before(until) {
		until = g.ExpiresAt
	}
	in.store(key, introEntry{grant: g, err: err, until: until}, now)
	if err != nil {
		return nil, err
	}
	c := *g
	return &c, nil
}

// checkJWT asks whether a JWT that passed every local check (g is its grant) is still active at
// the authorization server: nil, a [*TokenError] with [ReasonInactive], or an
// [*UnavailableError] (fail closed). Answers are cached for the TTL, never past the token's exp.
// An active answer that names another subject or issuer is no answer about this token.
func (in *introspector) checkJWT(ctx context.Context, tok string, g *Grant) error {
	key := sha256.Sum256([]byte(tok))
	now := in.now()
	in.mu.Lock()
	e, ok := in.cache[key]
	in.mu.Unlock()
	if ok && e.jwt && now.Before(e.until) {
		in.m.cacheHits.WithLabelValues("jwt").Inc()
		return e.err
	}
	claims, err := in.ask(ctx, tok)
	if err == nil {
		err = consistent(claims, g)
	}
	if err != nil {
		in.m.introspections.WithLabelValues("jwt", "error").Inc()
		in.log.Warn("JWT introspection failed", "endpoint", in.endpoint, "sub", g.Principal.Subject,
			"jti", g.Principal.TokenID, "err", err)
		return err
	}
	var verdict error
	if active, _ := claims["active"].(bool); active {
		in.m.introspections.WithLabelValues("jwt", "active").Inc()
	} else {
		in.m.introspections.WithLabelValues("jwt", "inactive").Inc()
		verdict = invalid(ReasonInactive, errors.New("introspection: active false"))
	}
	until := now.Add(in.ttl)
	if g.ExpiresAt.Before(until) {
		until = g.ExpiresAt
	}
	in.store(key, introEntry{err: verdict, until: until, jwt: true}, now)
	return verdict
}

// consistent checks that an active answer is about the JWT whose grant is g: a "sub" or "iss"
// it gives must be the token's. RFC 7662 makes both optional.
func consistent(claims jwt.MapClaims, g *Grant) error {
	if active, _ := claims["active"].(bool); !active {
		return nil
	}
	if sub, ok := claims["sub"]; ok {
		if s, _ := sub.(string); s != g.Principal.Subject {
			return unavailable("introspection answer names another subject", nil)
		}
	}
	if iss, ok := claims["iss"]; ok {
		if s, _ := iss.(string); s != g.Principal.Issuer {
			return unavailable("introspection answer names another issuer", nil)
		}
	}
	return nil
}

func (in *introspector) store(key [sha256.Size]byte, e introEntry, now time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.cache) >= in.size {
		for k, old := range in.cache {
			if !now.Before(old.until) {
				delete(in.cache, k)
			}
		}
		for k := range in.cache {
			if len(in.cache) < in.size {
				break
			}
			delete(in.cache, k)
		}
	}
	in.cache[key] = e
}

// ask POSTs the token to the endpoint (RFC 7662 §2.1), authenticating with HTTP Basic
// (RFC 6749 §2.3.1: form-urlencoded id and secret).
func (in *introspector) ask(ctx context.Context, tok string) (jwt.MapClaims, error) {
	ctx, cancel := context.WithTimeout(ctx, in.timeout)
	defer cancel()
	form := url.Values{"token": {tok}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(in.clientID), url.QueryEscape(in.secret))
	resp, err := in.client.Do(req)
	if err != nil {
		// The URL error names the endpoint, never the body holding the token.
		return nil, unavailable("introspection endpoint unreachable", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, unavailable(fmt.Sprintf("introspection answered status %d", resp.StatusCode), nil)
	}
	var claims jwt.MapClaims
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxMetadataBytes))
	if err := dec.Decode(&claims); err != nil {
		return nil, unavailable("introspection answer is not a JSON object", err)
	}
	if claims == nil {
		return nil, unavailable("introspection answer is empty", nil)
	}
	if _, ok := claims["active"].(bool); !ok {
		return nil, unavailable(`introspection answer has no boolean "active"`, nil)
	}
	return claims, nil
}
