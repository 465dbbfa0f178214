package approval

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"
)

// Keyring holds the approvers' Ed25519 public keys by key id. Only a vote whose signature verifies
// under the key of its approver counts; the private keys stay with the approvers.
type Keyring struct {
	keys map[string]ed25519.PublicKey
}

// NewKeyring returns a keyring of the given keys.
func NewKeyring(keys map[string]ed25519.PublicKey) (*Keyring, error) {
	k := &Keyring{keys: map[string]ed25519.PublicKey{}}
	for id, pub := range keys {
		if !ValidName(id) {
			return nil, fmt.Errorf("approver key id %q: use letters, digits, _ . @ : - (at most %d)", id, maxNameLen)
		}
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("approver %s: public key of %d bytes, want %d (Ed25519)", id, len(pub), ed25519.PublicKeySize)
		}
		k.keys[id] = pub
	}
	return k, nil
}

// Has reports whether id is a known approver.
func (k *Keyring) Has(id string) bool {
	if k == nil {
		return false
	}
	_, ok := k.keys[id]
	return ok
}

// IDs returns the known approvers, sorted.
func (k *Keyring) IDs() []string {
	if k == nil {
		return nil
	}
	out := make([]string, 0, len(k.keys))
	for id := range k.keys {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// ErrBadSignature is returned by [Keyring.Verify] for a vote whose signature does not verify.
var ErrBadSignature = errors.New("vote signature does not verify")

// ErrUnknownApprover is returned by [Keyring.Verify] for a vote by an approver not in the keyring.
var ErrUnknownApprover = errors.New("unknown approver")

// Verify checks v's signature under its approver's key.
func (k *Keyring) Verify(v *Vote) error {
	if !k.Has(v.Approver) {
		return fmt.Errorf("%w %q (not in the approvers keyring)", ErrUnknownApprover, v.Approver)
	}
	if !ed25519.Verify(k.keys[v.Approver], v.SigningBytes(), v.Signature) {
		return fmt.Errorf("%w: approver %s, request %s", ErrBadSignature, v.Approver, v.RequestID)
	}
	return nil
}

// Sign signs v with priv, setting its signature.
func Sign(v *Vote, priv ed25519.PrivateKey) {
	v.Signature = ed25519.Sign(priv, v.SigningBytes())
}

// keyringFile is the YAML form of a keyring.
type keyringFile struct {
	Approvers []struct {
		ID        string `yaml:"id"`
		PublicKey string `yaml:"public_key"`
	} `yaml:"approvers"`
}

// LoadKeyring reads a keyring file:
//
//	approvers:
//	  - id: alice
//	    public_key: MCowBQYDK2VwAyEA...   # base64 of the PKIX DER (or the raw 32 bytes), or PEM
//
// Unknown fields, duplicate ids and keys that are not Ed25519 are errors with their line.
func LoadKeyring(path string) (*Keyring, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("approvers keyring: %w", err)
	}
	var f keyringFile
	if err := yaml.UnmarshalWithOptions(src, &f, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("approvers keyring %s: %s", path, yaml.FormatError(err, false, false))
	}
	if len(f.Approvers) == 0 {
		return nil, fmt.Errorf("approvers keyring %s: no approvers", path)
	}
	keys := map[string]ed25519.PublicKey{}
	for i, a := range f.Approvers {
		if _, dup := keys[a.ID]; dup {
			return nil, fmt.Errorf("approvers keyring %s: approver #%d: id %q given twice", path, i+1, a.ID)
		}
		pub, err := ParsePublicKey(a.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("approvers keyring %s: approver %q: %w", path, a.ID, err)
		}
		keys[a.ID] = pub
	}
	k, err := NewKeyring(keys)
	if err != nil {
		return nil, fmt.Errorf("approvers keyring %s: %w", path, err)
	}
	return k, nil
}

// ParsePublicKey reads an Ed25519 public key as PEM ("PUBLIC KEY", PKIX), base64 of the PKIX DER,
// or base64 of the raw 32 bytes.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	der := []byte(nil)
	if b, _ := pem.Decode([]byte(s)); b != nil {
		der = b.Bytes
	} else {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, errors.New("public_key: want PEM or base64 of an Ed25519 public key")
		}
		if len(raw) == ed25519.PublicKeySize {
			return ed25519.PublicKey(raw), nil
		}
		der = raw
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("public_key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public_key: a %T, want Ed25519", k)
	}
	return pub, nil
}

// LoadPrivateKey reads an approver's Ed25519 private key from a PEM file ("PRIVATE KEY", PKCS #8,
// as `openssl genpkey -algorithm ed25519` or [WritePrivateKey] write it). A key file others can
// read is refused: it is the approver's signature.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("approver key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("approver key %s: readable by group or others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("approver key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("approver key %s: want a PEM \"PRIVATE KEY\" block (PKCS #8 Ed25519)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("approver key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("approver key %s: a %T, want Ed25519", path, k)
	}
	return priv, nil
}

// GenerateKey makes a new approver key; it returns the PKCS #8 PEM of the private key and the
// base64 PKIX public key for the keyring.
func GenerateKey() (privPEM []byte, pubB64 string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, "", err
	}
	pder, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, "", err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), base64.StdEncoding.EncodeToString(pder), nil
}

// ErrDuplicateKey is returned by [ArgsHash] for arguments with a key given twice in one object.
var ErrDuplicateKey = errors.New("arguments repeat a key")

// ArgsHash is the hex SHA-256 of a tool call's arguments in canonical JSON: objects with sorted
// keys, no insignificant whitespace, numbers as written. Absent or null arguments hash as "{}".
// Arguments that repeat a key in one object are refused ([ErrDuplicateKey]): JSON parsers differ
// on which of the two wins, so the approvers could see one value and the server act on the other.
func ArgsHash(args json.RawMessage) (string, error) {
	args = bytes.TrimSpace(args)
	if len(args) == 0 || bytes.Equal(args, []byte("null")) {
		args = []byte("{}")
	}
	if err := noDuplicateKeys(args); err != nil {
		return "", err
	}
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("arguments: %w", err)
	}
	canon, err := json.Marshal(v) // sorts object keys; json.Number keeps numbers as written
	if err != nil {
		return "", fmt.Errorf("arguments: %w", err)
	}
	h := sha256.Sum256(canon)
	return hex.EncodeToString(h[:]), nil
}

// noDuplicateKeys walks the JSON tokens and refuses an object with a key given twice.
func noDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		obj    bool
		keys   map[string]bool
		expect bool // in an object, the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("arguments: %w", err)
		}
		top := (*frame)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.obj {
					top.expect = true // the container is the value; the next string is a key
				}
				stack = append(stack, &frame{obj: t == '{', keys: map[string]bool{}, expect: t == '{'})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].expect = true
				}
			}
		case string:
			if top != nil && top.obj && top.expect {
				if top.keys[t] {
					return fmt.Errorf("%w %q", ErrDuplicateKey, clip(t))
				}
				top.keys[t] = true
				top.expect = false
				continue
			}
			if top != nil && top.obj {
				top.expect = true
			}
		default:
			if top != nil && top.obj {
				top.expect = true
			}
		}
	}
}
