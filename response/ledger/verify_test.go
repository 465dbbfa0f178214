package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// testChain seals n entries with key, one per action on partition 0, and returns them encoded.
func testChain(t testing.TB, key *Key, n int) [][]byte {
	t.Helper()
	var out [][]byte
	prev := ZeroHash
	for i := 1; i <= n; i++ {
		a := &event.Action{ID: fmt.Sprintf("act-%d", i), Time: time.Unix(1_700_000_000, 0).UTC(), Tenant: "acme",
			Kind: event.ActionRevoke, Target: "revoke/subject/acme/mallory", Status: "succeeded", Actor: "operator:alice", Reason: "test"}
		ab, err := event.Encode(a)
		if err != nil {
			t.Fatal(err)
		}
		e := &event.AuditEntry{Seq: uint64(i), TimeMS: 1_700_000_000_000 + int64(i), PrevHash: prev, Partition: 0,
			Offset: int64(i - 1), Next: []int64{int64(i), 7}, ActionID: a.ID, Action: ab}
		if err := Seal(e, key); err != nil {
			t.Fatal(err)
		}
		b, err := event.EncodeAudit(e)
		if err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		out = append(out, b)
	}
	return out
}

func mustKey(t testing.TB) *Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func verifyLines(t *testing.T, lines [][]byte, keys ...*Key) Report {
	t.Helper()
	m := map[string]ed25519.PublicKey{}
	for _, k := range keys {
		m[k.ID] = k.Public
	}
	rep, err := Verify(context.Background(), ReaderSource(bytes.NewReader(bytes.Join(lines, []byte("\n")))), m)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func reseal(t *testing.T, raw []byte, key *Key, mod func(*event.AuditEntry)) []byte {
	t.Helper()
	var e event.AuditEntry
	if err := event.DecodeAudit(raw, &e); err != nil {
		t.Fatal(err)
	}
	mod(&e)
	if key != nil {
		if err := Seal(&e, key); err != nil {
			t.Fatal(err)
		}
	}
	b, err := event.EncodeAudit(&e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An intact chain verifies, and each kind of tampering is caught at the entry where it happened
// with its own reason. If this fails, `mcpwatch response verify` either passes a forged trail or
// points an investigator at the wrong entry or the wrong cause.
func TestVerifyDetectsTampering(t *testing.T) {
	key, other := mustKey(t), mustKey(t)
	chain := testChain(t, key, 6)
	if rep := verifyLines(t, chain, key); !rep.OK() || rep.Verified != 6 || rep.Last != 6 {
		t.Fatalf("intact chain: %+v", rep)
	}
	clone := func() [][]byte {
		out := make([][]byte, len(chain))
		for i, c := range chain {
			out[i] = bytes.Clone(c)
		}
		return out
	}
	for name, c := range map[string]struct {
		tamper  func() [][]byte
		keys    []*Key
		seq     uint64
		reason  error
		nBreaks int
	}{
		"one byte of an action": {tamper: func() [][]byte {
			c := clone()
			var e event.AuditEntry
			_ = event.DecodeAudit(c[2], &e)
			e.Action = bytes.Replace(e.Action, []byte("mallory"), []byte("mallorz"), 1)
			c[2], _ = event.EncodeAudit(&e)
			return c
		}, keys: []*Key{key}, seq: 3, reason: ErrHashMismatch, nBreaks: 1},
		"action changed and rehashed without the key": {tamper: func() [][]byte {
			c := clone()
			c[2] = reseal(t, c[2], nil, func(e *event.AuditEntry) {
				e.Action = bytes.Replace(e.Action, []byte("mallory"), []byte("mallorz"), 1)
				h, _ := Hash(e)
				e.Hash = fmt.Sprintf("%x", h)
			})
			return c
		}, keys: []*Key{key}, seq: 3, reason: ErrBadSignature, nBreaks: 2}, // and entry 4's prev no longer matches
		"an entry deleted": {tamper: func() [][]byte {
			c := clone()
			return append(c[:3], c[4:]...)
		}, keys: []*Key{key}, seq: 5, reason: ErrSeqGap, nBreaks: 1},
		"the first entry deleted": {tamper: func() [][]byte { return clone()[1:] }, keys: []*Key{key}, seq: 2, reason: ErrSeqGap, nBreaks: 1},
		"two entries swapped": {tamper: func() [][]byte {
			c := clone()
			c[2], c[3] = c[3], c[2]
			return c
		}, keys: []*Key{key}, seq: 4, reason: ErrSeqGap, nBreaks: 3}, // 4 after 2, then 3 after 4 (out of order), then 5 after 3
		"an entry repeated": {tamper: func() [][]byte {
			c := clone()
			return append(c[:4], append([][]byte{c[3]}, c[4:]...)...)
		}, keys: []*Key{key}, seq: 4, reason: ErrDuplicate, nBreaks: 1},
		"entries re-signed with another key": {tamper: func() [][]byte {
			c := clone()
			c[1] = reseal(t, c[1], other, func(*event.AuditEntry) {})
			return c
		}, keys: []*Key{key}, seq: 2, reason: ErrUnknownKey, nBreaks: 2},
		"a forged entry inserted with a known key but a wrong prev": {tamper: func() [][]byte {
			c := clone()
			c[3] = reseal(t, c[3], key, func(e *event.AuditEntry) { e.PrevHash = ZeroHash })
			return c
		}, keys: []*Key{key}, seq: 4, reason: ErrPrevMismatch, nBreaks: 2},
		"not json": {tamper: func() [][]byte {
			c := clone()
			c[0] = []byte(`{"seq":`)
			return c
		}, keys: []*Key{key}, seq: 0, reason: ErrMalformed, nBreaks: 1},
	} {
		t.Run(name, func(t *testing.T) {
			rep := verifyLines(t, c.tamper(), c.keys...)
			fb := rep.FirstBreak()
			if rep.OK() || fb == nil {
				t.Fatalf("tampering not detected: %+v", rep)
			}
			if fb.Seq != c.seq || !errors.Is(fb.Reason, c.reason) {
				t.Fatalf("first break %v, want seq %d: %v", fb, c.seq, c.reason)
			}
			if rep.BreakCount != c.nBreaks {
				t.Fatalf("%d breaks, want %d: %v", rep.BreakCount, c.nBreaks, rep.Breaks)
			}
		})
	}
	// With both keys given, a chain signed partly by each (a rotation) verifies.
	rotated := clone()
	for i := 3; i < len(rotated); i++ {
		prev := ""
		if i > 0 {
			var p event.AuditEntry
			_ = event.DecodeAudit(rotated[i-1], &p)
			prev = p.Hash
		}
		rotated[i] = reseal(t, rotated[i], other, func(e *event.AuditEntry) { e.PrevHash = prev })
	}
	if rep := verifyLines(t, rotated, key, other); !rep.OK() || rep.Keys[key.ID] != 3 || rep.Keys[other.ID] != 3 {
		t.Fatalf("rotated chain: %+v", rep)
	}
}

// The canonical encoding is pinned: a fixed entry must hash to the digest in testdata. If this
// fails, the encoding changed and every chain already written stops verifying — and so does the
// independent verifier (test/peers/audit_verify.py), which implements the documented layout.
func TestCanonicalPinned(t *testing.T) {
	e := &event.AuditEntry{Seq: 7, TimeMS: 1_700_000_000_123, PrevHash: strings.Repeat("ab", 32), KeyID: "0123456789abcdef",
		Partition: 2, Offset: 41, Next: []int64{3, 0, 42}, ActionID: "a-1", Action: []byte(`{"id":"a-1"}`)}
	c, err := Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "canonical.hex")
	got := fmt.Sprintf("%x", c)
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(golden, []byte(got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(b)) != got {
		t.Fatalf("canonical encoding changed:\n got %s\nwant %s", got, b)
	}
	// The layout's first field is the domain, length-prefixed.
	if !bytes.HasPrefix(c, append([]byte{0, 0, 0, byte(len(Domain))}, Domain...)) {
		t.Fatalf("canonical encoding does not start with the domain: %x", c[:24])
	}
}

// Keys round-trip through PEM, the id is derived from the public key alone, and a key file is
// written owner-only and never overwritten. If this fails, a ledger may sign with a key whose id
// verify cannot match, or keygen may destroy an existing key.
func TestKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.pem")
	k, err := WriteNewKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	if _, err := WriteNewKey(path); err == nil {
		t.Fatal("an existing key file was overwritten")
	}
	b, _ := os.ReadFile(path)
	k2, err := ParsePrivatePEM(b)
	if err != nil || k2.ID != k.ID || !k2.Public.Equal(k.Public) {
		t.Fatalf("round trip: %v %v", k2, err)
	}
	pub, _ := MarshalPublicPEM(k.Public)
	if err := os.WriteFile(filepath.Join(dir, "ledger.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err := ReadPublicKeys(filepath.Join(dir, "ledger.pub"))
	if err != nil || !keys[k.ID].Equal(k.Public) {
		t.Fatalf("public key: %v %v", keys, err)
	}
	if len(k.ID) != 16 || fmt.Sprint(k) != "ed25519:"+k.ID {
		t.Fatalf("key id %q, String %q", k.ID, fmt.Sprint(k))
	}
	if _, err := ParsePrivatePEM(pub); err == nil || strings.Contains(err.Error(), string(pub[30:40])) {
		t.Fatalf("a public key parsed as private, or the error quotes the input: %v", err)
	}
}
