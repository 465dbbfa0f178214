package oauth

import (
	"errors"
	"strings"
	"time"
)

var (
	// ErrNoToken: the request carried no Authorization header. Answer 401 with a challenge that
	// has no error code (RFC 6750 §3.1) so the client starts authorization.
	ErrNoToken = errors.New("no bearer token")
	// ErrInvalidToken: the token is malformed, expired, for another audience, badly signed,
	// inactive... Errors that match it are a [*TokenError] with a reason safe to show the client.
	ErrInvalidToken = errors.New("invalid token")
	// ErrMFARequired: the token is valid but its authentication is too weak (amr/acr). Errors
	// that match it are a [*MFAError]. Answer 401 insufficient_user_authentication (RFC 9470).
	ErrMFARequired = errors.New("stronger user authentication required")
	// ErrUnavailable: the authorization server could not be asked (introspection failed). The
	// request is refused (fail closed); answer 503, not 401: the token may well be good.
	ErrUnavailable = errors.New("authorization server unavailable")
)

// Reasons given in [TokenError]. They go to the client in error_description, so they say what
// is wrong with the token and nothing about the server.
const (
	ReasonMalformed        = "malformed token"
	ReasonAlgorithm        = "signing algorithm not allowed"
	ReasonCritical         = "unsupported critical header"
	ReasonKeyNotAllowed    = "signing key not allowed"
	ReasonUnknownKey       = "unknown signing key"
	ReasonBadSignature     = "bad signature"
	ReasonExpired          = "token expired"
	ReasonNotYetValid      = "token not yet valid"
	ReasonIssuedInFuture   = "token issued in the future"
	ReasonMissingExp       = "token has no exp"
	ReasonMissingIat       = "token has no iat"
	ReasonLifetime         = "token lifetime too long"
	ReasonWrongIssuer      = "wrong issuer"
	ReasonMissingAudience  = "token has no audience"
	ReasonWrongAudience    = "wrong audience"
	ReasonNoSubject        = "token names no subject or client"
	ReasonInactive         = "token is not active"
	ReasonOpaqueNotAllowed = "opaque tokens are not accepted"
	ReasonBadHeader        = "malformed Authorization header"
)

// UnavailableError is an [ErrUnavailable] with what failed, in words safe to show the client and
// to audit: which endpoint could not answer and how, never the token or the server's own message.
type UnavailableError struct {
	Detail string // e.g. "introspection answered status 503"
	err    error  // the underlying error, for logs only
}

func (e *UnavailableError) Error() string { return ErrUnavailable.Error() + ": " + e.Detail }

// Is makes an UnavailableError match [ErrUnavailable].
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unwrap returns the underlying error (logs only).
func (e *UnavailableError) Unwrap() error { return e.err }

func unavailable(detail string, err error) error { return &UnavailableError{Detail: detail, err: err} }

// TokenError is an invalid token and why. It matches [ErrInvalidToken] with [errors.Is].
type TokenError struct {
	Reason string // one of the Reason* constants
	err    error  // the underlying library error, for logs only
}

func (e *TokenError) Error() string { return "invalid token: " + e.Reason }

// Is makes a TokenError match [ErrInvalidToken].
func (e *TokenError) Is(target error) bool { return target == ErrInvalidToken }

// Unwrap returns the underlying error, which may describe server internals: log it, do not send
// it to the client.
func (e *TokenError) Unwrap() error { return e.err }

func invalid(reason string, err error) error { return &TokenError{Reason: reason, err: err} }

// MFAError says which authentication the token lacked. It matches [ErrMFARequired].
type MFAError struct {
	AnyAMR []string // one of these "amr" values was required
	AnyACR []string // one of these "acr" values was required
	// MaxAge, when set, is how recent the authentication must be (RFC 9470 max_age): the
	// token's auth_time was older, or unknown.
	MaxAge time.Duration
}

func (e *MFAError) Error() string {
	var b strings.Builder
	b.WriteString(ErrMFARequired.Error())
	if len(e.AnyAMR) > 0 {
		b.WriteString(": amr one of " + strings.Join(e.AnyAMR, ","))
	}
	if len(e.AnyACR) > 0 {
		b.WriteString(": acr one of " + strings.Join(e.AnyACR, ","))
	}
	if e.MaxAge > 0 {
		b.WriteString(": authenticated within " + e.MaxAge.String())
	}
	return b.String()
}

// Is makes an MFAError match [ErrMFARequired].
func (e *MFAError) Is(target error) bool { return target == ErrMFARequired }

// ErrInsufficientScope is returned by [Verifier.Authorize] when the token lacks scopes the call
// needs. Answer 403 with [Verifier.Challenge403] and Required, so the client can step up.
type ErrInsufficientScope struct {
	Required []string // every scope the call needs, including those the token has
}

func (e *ErrInsufficientScope) Error() string {
	return "insufficient scope: requires " + strings.Join(e.Required, " ")
}
