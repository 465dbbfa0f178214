package ledger

import (
	"crypto/ed25519"
	"testing"

	"github.com/mcpwatch/mcpwatch/event"
)

// The verifier reads files handed to an investigator: anyone may have written them. Whatever
// the bytes, decoding and verifying never panics, and an entry that verifies is one whose
// re-encoding verifies too (what was checked is what the fields say). Corpus in testdata/fuzz.
func FuzzVerifyEntry(f *testing.F) {
	key, err := GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range testChain(f, key, 2) {
		f.Add(c)
	}
	f.Add([]byte(`{"schema":1,"seq":1}`))
	f.Add([]byte(`{"schema":1,"seq":18446744073709551615,"next":[-1],"partition":-5}`))
	keys := map[string]ed25519.PublicKey{key.ID: key.Public}
	f.Fuzz(func(t *testing.T, raw []byte) {
		v := NewVerifier(keys, Resume())
		v.Add(raw)
		v.Add(raw)
		var e event.AuditEntry
		if event.DecodeAudit(raw, &e) != nil {
			return
		}
		if _, err := Canonical(&e); err != nil {
			t.Fatalf("a decoded entry has no canonical encoding: %v", err)
		}
		if rep := v.Report(); rep.Verified > 0 {
			b, err := event.EncodeAudit(&e)
			if err != nil {
				t.Fatal(err)
			}
			w := NewVerifier(keys, Resume())
			w.Add(b)
			if w.Report().Verified != 1 {
				t.Fatalf("verified as read, not once re-encoded: %s", raw)
			}
		}
	})
}
