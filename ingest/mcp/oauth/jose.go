package oauth

import (
	"errors"
	"fmt"
)

// JOSE policy the libraries leave to the caller: golang-jwt v5 ignores the "crit" header.

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
