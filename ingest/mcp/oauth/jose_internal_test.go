package oauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestAllowKeyAtVerification: the check applied to the key a token is verified with, behind
// the JWKS load filter. If it failed, an RSA key under 2048 bits or an EC key on another curve
// than the token's ES* algorithm that reached the cache some other way (a future storage, a
// library change) would verify tokens; for a token without kid, the weak keys of the set would.
func TestAllowKeyAtVerification(t *testing.T) {
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, c := range []struct {
		alg string
		key any
		ok  bool
	}{
		{"RS256", &rsa2048.PublicKey, true},
		{"PS512", &rsa2048.PublicKey, true},
		{"RS256", &rsa1024.PublicKey, false},
		{"PS256", &rsa1024.PublicKey, false},
		{"ES256", &p256.PublicKey, true},
		{"ES512", &p521.PublicKey, true},
		{"ES512", &p256.PublicKey, false},
		{"ES384", &p256.PublicKey, false},
		{"ES256", &p521.PublicKey, false},
		{"EdDSA", edPub, true},
	} {
		_, err := allowKey(c.alg, c.key)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, errKeyNotAllowed)) {
			t.Errorf("%s with %T: %v, want ok=%v", c.alg, c.key, err, c.ok)
		}
	}
	// A token without kid is tried against every key: the weak ones are left out.
	got, err := allowKey("RS256", jwt.VerificationKeySet{Keys: []jwt.VerificationKey{&rsa1024.PublicKey, &rsa2048.PublicKey, &p256.PublicKey}})
	if err != nil {
		t.Fatal(err)
	}
	if set := got.(jwt.VerificationKeySet); len(set.Keys) != 2 || set.Keys[0] != &rsa2048.PublicKey {
		t.Errorf("set %v, want the 2048-bit key and the EC key (which RS256 refuses by type)", set.Keys)
	}
	if _, err := allowKey("RS256", jwt.VerificationKeySet{Keys: []jwt.VerificationKey{&rsa1024.PublicKey}}); !errors.Is(err, errKeyNotAllowed) {
		t.Errorf("set of only weak keys: %v", err)
	}
}
