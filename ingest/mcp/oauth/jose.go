package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// JOSE policy the libraries leave to the caller: golang-jwt v5 ignores the "crit" header, and
// neither it nor jwkset bounds RSA key sizes or ties an EC key's curve to the ES* algorithm.

// understoodCritical are the JWS header extensions this verifier understands and enforces
// (RFC 7515 §4.1.11). None today: a token whose "crit" names anything is refused. To support
// one, add its name here and enforce it in [Verifier.verifyJWT].
var understoodCritical = map[string]bool{}

// registeredHeaders are the Header Parameter names defined by JWS (RFC 7515 §4.1) and JWA
// (RFC 7518 §4.6–4.8, for JWE). RFC 7515 §4.1.11 forbids "crit" to list them.
var registeredHeaders = map[string]bool{
	"alg": true, "jku": true, "jwk": true, "kid": true, "x5u": true, "x5c": true, "x5t": true,
	"x5t#S256": true, "typ": true, "cty": true, "crit": true,
	"epk": true, "apu": true, "apv": true, "iv": true, "tag": true, "p2s": true, "p2c": true,
}

// errCritical marks a refused "crit" header.
var errCritical = errors.New("crit header")

// checkCritical applies RFC 7515 §4.1.11 to a JOSE header: without "crit" nothing to do;
// otherwise "crit" must be a non-empty array of strings, each naming a parameter present in the
// header, not a registered one, and understood ([understoodCritical]). The error names the
// offending entry (clipped) for the operator's log; the client sees [ReasonCritical].
func checkCritical(h map[string]any) error {
	v, ok := h["crit"]
	if !ok {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		return fmt.Errorf("%w: not an array of names (%T)", errCritical, v)
	}
	if len(list) == 0 {
		return fmt.Errorf("%w: empty", errCritical)
	}
	for _, e := range list {
		name, ok := e.(string)
		switch {
		case !ok:
			return fmt.Errorf("%w: member %T is not a string", errCritical, e)
		case registeredHeaders[name]:
			return fmt.Errorf("%w: lists registered parameter %q", errCritical, name)
		}
		if _, present := h[name]; !present {
			return fmt.Errorf("%w: %q is not in the header", errCritical, clip(name, 64))
		}
		if !understoodCritical[name] {
			return fmt.Errorf("%w: extension %q is not understood", errCritical, clip(name, 64))
		}
	}
	return nil
}

// MinRSABits is the smallest RSA modulus, in bits, accepted for a signing key (RFC 7518 §3.3
// and §3.5 require 2048 or more).
const MinRSABits = 2048

// curveOf is the curve each ES* algorithm signs on (RFC 7518 §3.4). No other curve is accepted.
var curveOf = map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}

// errKeyNotAllowed marks a signing key this verifier refuses to verify with.
var errKeyNotAllowed = errors.New("signing key not allowed")

// checkKeyForAlg refuses a key too weak or on the wrong curve for alg: RSA under [MinRSABits]
// (for RS* and PS* alike), or an EC key not on the curve alg names. Other mismatches of key
// type and algorithm are left to the signing method, which refuses them.
func checkKeyForAlg(alg string, key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinRSABits {
			return fmt.Errorf("%w: RSA key of %d bits, under %d", errKeyNotAllowed, n, MinRSABits)
		}
	case *ecdsa.PublicKey:
		got := k.Curve.Params().Name
		if want, ok := curveOf[alg]; ok && got != want {
			return fmt.Errorf("%w: %s needs a %s key, not %s", errKeyNotAllowed, alg, want, got)
		}
	}
	return nil
}

// checkJWK refuses a published key the verifier must never use: an RSA key under
// [MinRSABits], an EC key not on P-256, P-384 or P-521 or whose "alg" names another curve, a key
// whose "alg" does not fit its type, or a symmetric key (a public JWKS makes it public).
func checkJWK(j jwkset.JWK) error {
	key := j.Key()
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public()
	}
	alg := j.Marshal().ALG.String()
	switch k := key.(type) {
	case *rsa.PublicKey:
		if alg != "" && !strings.HasPrefix(alg, "RS") && !strings.HasPrefix(alg, "PS") {
			return fmt.Errorf("%w: RSA key published for alg %q", errKeyNotAllowed, alg)
		}
		return checkKeyForAlg(alg, k)
	case *ecdsa.PublicKey:
		crv := k.Curve.Params().Name
		if crv != "P-256" && crv != "P-384" && crv != "P-521" {
			return fmt.Errorf("%w: EC curve %s", errKeyNotAllowed, crv)
		}
		if _, ok := curveOf[alg]; alg != "" && !ok {
			return fmt.Errorf("%w: EC key published for alg %q", errKeyNotAllowed, alg)
		}
		return checkKeyForAlg(alg, k)
	case ed25519.PublicKey:
		if alg != "" && alg != "EdDSA" {
			return fmt.Errorf("%w: Ed25519 key published for alg %q", errKeyNotAllowed, alg)
		}
	case []byte:
		return fmt.Errorf("%w: symmetric key in a public JWKS", errKeyNotAllowed)
	}
	return nil
}

// allowKey applies [checkKeyForAlg] to what the JWKS keyfunc returned: one key, or the set of
// all keys for a token without "kid" (keys that fail are left out; none left is an error).
func allowKey(alg string, key any) (any, error) {
	set, ok := key.(jwt.VerificationKeySet)
	if !ok {
		if err := checkKeyForAlg(alg, key); err != nil {
			return nil, err
		}
		return key, nil
	}
	var keep jwt.VerificationKeySet
	var last error
	for _, k := range set.Keys {
		if err := checkKeyForAlg(alg, k); err != nil {
			last = err
			continue
		}
		keep.Keys = append(keep.Keys, k)
	}
	if len(keep.Keys) == 0 && last != nil {
		return nil, last
	}
	return keep, nil
}

// policyStorage is the JWKS cache the HTTP refresh fills: every (re)load drops the keys
// [checkJWK] refuses, logging each by kid when it first appears, and remembers why, so that a
// token naming such a kid is refused as [ReasonKeyNotAllowed] rather than sending the verifier
// to refresh the JWKS for an "unknown" key.
type policyStorage struct {
	jwkset.Storage
	url string
	log *slog.Logger

	mu      sync.Mutex
	refused map[string]error // kid → why it was dropped, as of the last load
}

func newPolicyStorage(url string, log *slog.Logger) *policyStorage {
	return &policyStorage{Storage: jwkset.NewMemoryStorage(), url: url, log: log, refused: map[string]error{}}
}

// KeyReplaceAll implements [jwkset.Storage]: it stores the keys that pass [checkJWK].
func (s *policyStorage) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	keep := make([]jwkset.JWK, 0, len(given))
	refused := map[string]error{}
	s.mu.Lock()
	prev := s.refused
	s.mu.Unlock()
	for _, j := range given {
		err := checkJWK(j)
		if err == nil {
			keep = append(keep, j)
			continue
		}
		kid := j.Marshal().KID
		refused[kid] = err
		if _, seen := prev[kid]; !seen {
			s.log.Warn("JWKS key skipped: the verifier will not use it", "kid", clip(kid, 64), "url", s.url, "reason", err)
		}
	}
	for _, j := range keep {
		delete(refused, j.Marshal().KID) // a kid also published with a good key is not refused
	}
	if err := s.Storage.KeyReplaceAll(ctx, keep); err != nil {
		return err
	}
	s.mu.Lock()
	s.refused = refused
	s.mu.Unlock()
	return nil
}

// KeyWrite implements [jwkset.Storage]: a key [checkJWK] refuses is not stored.
func (s *policyStorage) KeyWrite(ctx context.Context, j jwkset.JWK) error {
	if err := checkJWK(j); err != nil {
		return fmt.Errorf("kid %q: %w", clip(j.Marshal().KID, 64), err)
	}
	return s.Storage.KeyWrite(ctx, j)
}

// refusedKey is why the last JWKS load dropped the key kid, or nil.
func (s *policyStorage) refusedKey(kid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused[kid]
}
