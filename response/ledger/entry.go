// Package ledger is the audit trail of the response side: a stage that appends one hash-chained,
// Ed25519-signed entry per action record to the audit topic, exactly once, and the offline
// verifier behind `mcpwatch response verify`.
//
// The chain. Entry n carries the hash of entry n-1, so removing, inserting, reordering or editing
// any entry breaks every link after it; each hash is signed, so recomputing the chain needs the
// private key. [Canonical] fixes the bytes that are hashed so that an implementation in another
// language can check a chain (test/peers/audit_verify.py does, in CI).
//
// Exactly once. The ledger is the only writer of the audit topic. It produces each batch of
// entries in one Kafka transaction under a fixed transactional id, so a second instance fences the
// first, and it resumes from the last committed entry, which records the next offset of every
// actions partition ([event.AuditEntry.Next]). A crash before the commit leaves nothing behind; a
// crash after it leaves a tail that says exactly what was chained. Duplicate actions (one id
// published twice by an at-least-once producer) are chained once within a bounded window.
package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/mcpwatch/mcpwatch/event"
)

// Domain is the first field of every canonical encoding: it ties a hash to this format and
// version, so that no other mcpwatch signature can be replayed as an audit entry's.
const Domain = "mcpwatch-audit-v1"

// ZeroHash is the PrevHash of entry 1.
var ZeroHash = hex.EncodeToString(make([]byte, sha256.Size))

// Canonical returns the bytes an entry's hash is computed over: every field but Hash and Sig, in
// this order, big-endian, strings and byte strings prefixed with their length as a uint32:
//
//	lp(Domain) | u64(seq) | i64(time_ms) | prev_hash (32 raw bytes) | lp(key_id) |
//	i32(partition) | i64(offset) | u32(len(next)) | i64(next[0]) ... | lp(action_id) | lp(action)
//
// where lp(x) = u32(len(x)) | x, key_id and action_id are their UTF-8 bytes and action is the
// raw action record. It fails only when PrevHash is not 32 bytes of hex.
func Canonical(e *event.AuditEntry) ([]byte, error) {
	prev, err := hex.DecodeString(e.PrevHash)
	if err != nil || len(prev) != sha256.Size {
		return nil, fmt.Errorf("audit entry %d: prev_hash is not 32 bytes of hex", e.Seq)
	}
	n := 4 + len(Domain) + 8 + 8 + 32 + 4 + len(e.KeyID) + 4 + 8 + 4 + 8*len(e.Next) + 4 + len(e.ActionID) + 4 + len(e.Action)
	b := make([]byte, 0, n)
	lp := func(s []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	lp([]byte(Domain))
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.TimeMS))
	b = append(b, prev...)
	lp([]byte(e.KeyID))
	b = binary.BigEndian.AppendUint32(b, uint32(e.Partition))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Offset))
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Next)))
	for _, o := range e.Next {
		b = binary.BigEndian.AppendUint64(b, uint64(o))
	}
	lp([]byte(e.ActionID))
	lp(e.Action)
	return b, nil
}

// Hash returns SHA-256 of e's [Canonical] encoding.
func Hash(e *event.AuditEntry) ([sha256.Size]byte, error) {
	c, err := Canonical(e)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(c), nil
}

// Seal sets e's KeyID, Hash and Sig: the hash of its canonical encoding signed with key.
func Seal(e *event.AuditEntry, key *Key) error {
	e.Schema = event.SchemaVersion
	e.KeyID = key.ID
	h, err := Hash(e)
	if err != nil {
		return err
	}
	e.Hash = hex.EncodeToString(h[:])
	e.Sig = hex.EncodeToString(ed25519.Sign(key.Private, h[:]))
	return nil
}

// Reasons a link of the chain is broken, as [Break.Reason] reports them.
var (
	ErrMalformed    = errors.New("malformed entry")
	ErrHashMismatch = errors.New("hash mismatch")
	ErrBadSignature = errors.New("bad signature")
	ErrUnknownKey   = errors.New("unknown key")
	ErrSeqGap       = errors.New("seq gap")
	ErrOutOfOrder   = errors.New("out of order")
	ErrDuplicate    = errors.New("duplicate")
	ErrPrevMismatch = errors.New("prev mismatch")
)

// checkEntry checks e on its own: its hash, and its signature by a key of keys (ErrUnknownKey
// when its key is not there).
func checkEntry(e *event.AuditEntry, keys map[string]ed25519.PublicKey) error {
	h, err := Hash(e)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if got := hex.EncodeToString(h[:]); got != e.Hash {
		return fmt.Errorf("%w: the entry says %s, its content hashes to %s (the entry was changed after it was signed)", ErrHashMismatch, short(e.Hash), short(got))
	}
	pub, ok := keys[e.KeyID]
	if !ok {
		return fmt.Errorf("%w: signed by key %s, which is not among the public keys given", ErrUnknownKey, e.KeyID)
	}
	sig, err := hex.DecodeString(e.Sig)
	if err != nil || !ed25519.Verify(pub, h[:], sig) {
		return fmt.Errorf("%w: the signature does not verify with key %s", ErrBadSignature, e.KeyID)
	}
	return nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}
