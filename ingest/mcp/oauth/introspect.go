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

// introspector asks an RFC 7662 endpoint about opaque tokens and caches the answers briefly,
// keyed by the token's SHA-256 (never the token). Answers that could not be had (network,
// status, garbled body) are not cached and refuse the request: fail closed.
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

	mu    sync.Mutex
	cache map[[sha256.Size]byte]introEntry
}

type introEntry struct {
	grant *Grant
	err   error // a *TokenError: inactive or failing policy
	until time.Time
}

func newIntrospector(endpoint string, cfg Config, client *http.Client, log *slog.Logger) *introspector {
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
	if ok && now.Before(e.until) {
		in.mu.Unlock()
		if e.err != nil {
			return nil, e.err
		}
		g := *e.grant
		return &g, nil
	}
	in.mu.Unlock()

	claims, err := in.ask(ctx, tok)
	if err != nil {
		in.log.Warn("token introspection failed", "endpoint", in.endpoint, "err", err)
		return nil, fmt.Errorf("%w: introspection: %w", ErrUnavailable, err)
	}
	var g *Grant
	if active, _ := claims["active"].(bool); !active {
		err = invalid(ReasonInactive, nil)
	} else {
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
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var claims jwt.MapClaims
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxMetadataBytes))
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	if claims == nil {
		return nil, errors.New("empty response")
	}
	if _, ok := claims["active"].(bool); !ok {
		return nil, errors.New(`response has no boolean "active"`)
	}
	return claims, nil
}
