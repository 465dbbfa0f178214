package event

import (
	"encoding/hex"
	"fmt"

	json "github.com/goccy/go-json"
)

// AuditEntry is one link of the response audit trail: the hash chain the ledger stage appends to
// the audit topic, one entry per record of the actions topic (docs/response.md, "Signed audit
// trail"). Hash is SHA-256 over the entry's canonical encoding (every field but Hash and Sig, in
// a fixed order, length-prefixed; package response/ledger defines and verifies it), and Sig is
// the Ed25519 signature of Hash by the key named KeyID. An entry is immutable: nothing about it
// is ever rewritten, only verified.
type AuditEntry struct {
	Schema int `json:"schema"`
	// Seq numbers the entries from 1 without gaps.
	Seq uint64 `json:"seq"`
	// TimeMS is when the ledger chained the entry, Unix milliseconds.
	TimeMS int64 `json:"time_ms"`
	// PrevHash is the Hash of entry Seq-1, hex; 64 zeros for entry 1.
	PrevHash string `json:"prev_hash"`
	// KeyID names the signing key: the first 16 hex digits of SHA-256 of its raw 32-byte
	// Ed25519 public key.
	KeyID string `json:"key_id"`
	// Partition and Offset locate the action on the actions topic.
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
	// Next is, per actions partition (index = partition), the offset after the last record
	// chained from it once this entry is: where the ledger resumes.
	Next []int64 `json:"next"`
	// ActionID is the action's id, "" when the record did not decode as an action.
	ActionID string `json:"action_id"`
	// Action is the action record exactly as read from the actions topic (base64 in JSON, so
	// that no encoder can change a byte of it).
	Action []byte `json:"action"`
	// Hash is SHA-256 of the canonical encoding, hex; Sig the Ed25519 signature of the 32 hash
	// bytes, hex.
	Hash string `json:"hash"`
	Sig  string `json:"sig"`
}

// EncodeAudit stamps e with [SchemaVersion] and encodes it as JSON (one line).
func EncodeAudit(e *AuditEntry) ([]byte, error) {
	e.Schema = SchemaVersion
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode audit entry %d: %w", e.Seq, err)
	}
	return b, nil
}

// DecodeAudit parses an audit entry and checks its shape: schema version, a sequence number,
// hashes of 32 bytes and a signature of 64 bytes in hex, a 16-digit key id. It does not check the
// hash or the signature (package response/ledger does). Errors wrap [ErrMalformed] or
// [ErrSchema].
func DecodeAudit(b []byte, e *AuditEntry) error {
	*e = AuditEntry{}
	if err := json.Unmarshal(b, e); err != nil {
		return fmt.Errorf("%w: audit entry: %v", ErrMalformed, err)
	}
	switch {
	case e.Schema == 0:
		return fmt.Errorf("%w: audit entry has no schema version", ErrMalformed)
	case e.Schema > SchemaVersion:
		return fmt.Errorf("%w: audit entry schema %d, this build reads up to %d", ErrSchema, e.Schema, SchemaVersion)
	case e.Seq == 0:
		return fmt.Errorf("%w: audit entry has no seq (entries count from 1)", ErrMalformed)
	}
	for _, f := range []struct {
		name, v string
		n       int
	}{{"prev_hash", e.PrevHash, 32}, {"hash", e.Hash, 32}, {"sig", e.Sig, 64}, {"key_id", e.KeyID, 8}} {
		if len(f.v) != 2*f.n {
			return fmt.Errorf("%w: audit entry %d: %s has %d hex digits, want %d", ErrMalformed, e.Seq, f.name, len(f.v), 2*f.n)
		}
		if _, err := hex.DecodeString(f.v); err != nil || !isLowerHex(f.v) {
			return fmt.Errorf("%w: audit entry %d: %s is not lower-case hex", ErrMalformed, e.Seq, f.name)
		}
	}
	if e.Partition < 0 || e.Offset < 0 {
		return fmt.Errorf("%w: audit entry %d: negative partition or offset", ErrMalformed, e.Seq)
	}
	return nil
}
