package mcp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// Authenticator establishes who sent a request: [StaticTokens] for development and demos, [OAuth]
// (an OAuth 2.1 resource server) in production. An Authenticator may also implement [Authorizer],
// [Challenger] and [WellKnown].
type Authenticator interface {
	// Authenticate returns the request's principal, or an error: for [StaticTokens] one wrapping
	// [ErrNoCredentials] or [ErrInvalidCredentials]. With an error the principal may still be
	// set, when the credential is genuine but refused (too weak an authentication), so that the
	// refusal is audited under its name.
	Authenticate(r *http.Request) (event.Principal, error)
}

// TimedAuthenticator is implemented by an [Authenticator] whose credentials say when the user
// last authenticated (OpenID Connect auth_time), such as [OAuth]. The gateway then calls it
// instead of Authenticate, and gives the time to the policy: max_auth_age and risk step-ups are
// satisfied only by a recent enough authentication. A zero time is unknown.
type TimedAuthenticator interface {
	AuthenticateTimed(r *http.Request) (event.Principal, time.Time, error)
}

// Authorizer is implemented by an [Authenticator] whose credentials carry their own grant, such as
// OAuth scopes. The gateway calls it for every message a client sends, once the message is parsed,
// with the message's method and, for tools/call, its tool; and for GET streams with neither. An
// error refuses the request: 403, or what the authenticator's [Challenger] says.
type Authorizer interface {
	Authorize(p event.Principal, method, tool string) error
}

// Challenger is implemented by an [Authenticator] that answers its own refusals, such as an OAuth
// resource server naming its metadata in WWW-Authenticate. Given an error from Authenticate or
// Authorize, Challenge sets the response headers (the challenge) and returns the HTTP status and
// a description of the refusal safe to show the client and to audit: never the credential, never
// the internals of an authorization server. The gateway writes the status and a JSON-RPC body.
type Challenger interface {
	Challenge(w http.ResponseWriter, err error) (status int, reason string)
}

// WellKnown is implemented by an [Authenticator] that publishes documents clients read before they
// hold a credential (RFC 9728 protected resource metadata). The gateway serves each handler on its
// path without authentication, and never forwards those paths upstream.
type WellKnown interface {
	WellKnown() map[string]http.Handler
}

// AuthenticatorFunc adapts a function to [Authenticator].
type AuthenticatorFunc func(r *http.Request) (event.Principal, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(r *http.Request) (event.Principal, error) { return f(r) }

var (
	// ErrNoCredentials: the request carried no bearer token.
	ErrNoCredentials = errors.New("no bearer token")
	// ErrInvalidCredentials: the request carried a token that is not valid.
	ErrInvalidCredentials = errors.New("invalid bearer token")
)

// StaticToken is one configured bearer token and the principal it stands for. Give the token's
// SHA-256 (hex) rather than the token, so that configuration never holds the secret; Token is
// accepted for development and hashed at load.
type StaticToken struct {
	SHA256    string
	Token     string
	Principal event.Principal
}

// minTokenLen refuses plaintext tokens short enough to guess. Hashes cannot be checked.
const minTokenLen = 16

// HashToken returns the hex SHA-256 of a bearer token, the form [StaticToken.SHA256] takes.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// TokenID returns the principal's token id for a token hash: a short, non-reversible fingerprint
// that names the credential in events and revocations without exposing it. It is a hash of the
// hash under a fixed domain, so it cannot be fed back as the stored hash.
func TokenID(sha256Hex string) string {
	sum := sha256.Sum256([]byte("mcpwatch/token-id/v1\x00" + strings.ToLower(sha256Hex)))
	return "tok_" + hex.EncodeToString(sum[:8])
}

// StaticTokens authenticates bearer tokens against a fixed list. Only token hashes are held; the
// presented token is hashed and compared with every entry in constant time, so neither the
// comparison nor the number of entries checked reveals how close a guess was.
type StaticTokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	hash      [sha256.Size]byte
	principal event.Principal
}

// NewStaticTokens validates and loads tokens. Each principal gets the token id from [TokenID]
// unless it names one.
func NewStaticTokens(tokens []StaticToken) (*StaticTokens, error) {
	s := &StaticTokens{}
	seen := map[[sha256.Size]byte]bool{}
	for i, t := range tokens {
		var e tokenEntry
		switch {
		case t.SHA256 != "" && t.Token != "":
			return nil, fmt.Errorf("token %d: give sha256 or token, not both", i)
		case t.Token != "":
			if len(t.Token) < minTokenLen {
				return nil, fmt.Errorf("token %d: shorter than %d characters", i, minTokenLen)
			}
			e.hash = sha256.Sum256([]byte(t.Token))
		case t.SHA256 != "":
			b, err := hex.DecodeString(t.SHA256)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("token %d: sha256 must be 64 hex digits", i)
			}
			copy(e.hash[:], b)
		default:
			return nil, fmt.Errorf("token %d: no sha256 or token", i)
		}
		if t.Principal.Subject == "" && t.Principal.ClientID == "" {
			return nil, fmt.Errorf("token %d: principal needs a subject or a client id", i)
		}
		if seen[e.hash] {
			return nil, fmt.Errorf("token %d: same token configured twice", i)
		}
		seen[e.hash] = true
		e.principal = t.Principal
		if e.principal.TokenID == "" {
			e.principal.TokenID = TokenID(hex.EncodeToString(e.hash[:]))
		}
		if len(e.principal.AuthMethods) == 0 {
			e.principal.AuthMethods = []string{"bearer"}
		}
		s.entries = append(s.entries, e)
	}
	return s, nil
}

// Authenticate implements [Authenticator].
func (s *StaticTokens) Authenticate(r *http.Request) (event.Principal, error) {
	tok, err := bearer(r)
	if err != nil {
		return event.Principal{}, err
	}
	h := sha256.Sum256([]byte(tok))
	match := -1
	for i := range s.entries {
		if subtle.ConstantTimeCompare(h[:], s.entries[i].hash[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return event.Principal{}, ErrInvalidCredentials
	}
	p := s.entries[match].principal
	p.Roles = slices.Clone(p.Roles)
	p.AuthMethods = slices.Clone(p.AuthMethods)
	return p, nil
}

// bearer extracts an RFC 6750 bearer token from the Authorization header. Tokens in the query
// string are not accepted (MCP forbids them: URLs end up in logs).
func bearer(r *http.Request) (string, error) {
	vals := r.Header.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", ErrNoCredentials
	case 1:
	default:
		return "", fmt.Errorf("%w: more than one Authorization header", ErrInvalidCredentials)
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: not a Bearer authorization", ErrInvalidCredentials)
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", fmt.Errorf("%w: malformed Bearer token", ErrInvalidCredentials)
	}
	return tok, nil
}
