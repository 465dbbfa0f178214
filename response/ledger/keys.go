package ledger

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Key is the ledger's signing key. It never prints its private half: String is its id.
type Key struct {
	ID      string
	Private ed25519.PrivateKey
	Public  ed25519.PublicKey
}

// String names the key by its id.
func (k *Key) String() string { return "ed25519:" + k.ID }

// KeyID is the id of an Ed25519 public key: the first 16 hex digits of SHA-256 of its raw 32
// bytes.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// GenerateKey returns a new random key.
func GenerateKey() (*Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return &Key{ID: KeyID(pub), Private: priv, Public: pub}, nil
}

// MarshalPrivatePEM is the key as a PKCS#8 "PRIVATE KEY" PEM block.
func (k *Key) MarshalPrivatePEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicPEM is the public key as a PKIX "PUBLIC KEY" PEM block.
func MarshalPublicPEM(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivatePEM reads a PKCS#8 Ed25519 private key in PEM. The errors never quote the input.
func ParsePrivatePEM(b []byte) (*Key, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("ledger key: no PEM block found (want a PKCS#8 \"PRIVATE KEY\" from `mcpwatch response keygen`)")
	}
	if blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("ledger key: PEM block is %q, want \"PRIVATE KEY\" (PKCS#8)", blk.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("ledger key: PKCS#8 does not parse")
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("ledger key: a %T, want an Ed25519 key", k)
	}
	pub := priv.Public().(ed25519.PublicKey)
	return &Key{ID: KeyID(pub), Private: priv, Public: pub}, nil
}

// ParsePublicPEM reads an Ed25519 public key: a PKIX "PUBLIC KEY" PEM block, or 64 hex digits of
// the raw key.
func ParsePublicPEM(b []byte) (ed25519.PublicKey, error) {
	if s := strings.TrimSpace(string(b)); len(s) == 2*ed25519.PublicKeySize {
		raw, err := hex.DecodeString(s)
		if err == nil {
			return ed25519.PublicKey(raw), nil
		}
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("public key: want a \"PUBLIC KEY\" PEM block (as `mcpwatch response keygen` prints) or 64 hex digits")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key: a %T, want Ed25519", k)
	}
	return pub, nil
}

// ReadPublicKeys reads public key files into a map from key id to key.
func ReadPublicKeys(paths ...string) (map[string]ed25519.PublicKey, error) {
	out := make(map[string]ed25519.PublicKey, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read public key: %w", err)
		}
		pub, err := ParsePublicPEM(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out[KeyID(pub)] = pub
	}
	return out, nil
}

// WriteNewKey generates a key and writes it to path as PKCS#8 PEM, readable by its owner only
// (0600). It refuses to overwrite an existing file: a lost signing key cannot be recovered, and
// overwriting one by mistake is how it gets lost.
func WriteNewKey(path string) (*Key, error) {
	k, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	b, err := k.MarshalPrivatePEM()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	return k, nil
}
