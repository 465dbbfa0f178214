// Package approval is the human in the loop of mcpwatch's response side: actions and tool calls
// above a configured impact wait until M of N approvers have signed their approval.
//
// Everything lives on one compacted, single-partition Kafka topic ([event.Topics.Approvals]) as
// three kinds of entry, each under its own key so that compaction keeps them all:
//
//	<id>/request/<hash prefix>             a [Request]: what waits, who may approve, how many, until when
//	<id>/vote/<approver>/<signature prefix> a [Vote], signed with the approver's Ed25519 key
//	<id>/claim/<gateway>/<nonce>            a [Claim]: a gateway about to forward the approved call
//
// Every gateway and respond instance folds the topic into the same [Store] (a [Follower] keeps it
// in step), so every reader agrees on each request's [State]: the fold depends only on the entries,
// their order and the clock, never on when a reader saw them.
package approval

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// SchemaVersion is the version of the entries this build writes and reads.
const SchemaVersion = 1

// Limits on entries: what the topic and the HTTP API accept.
const (
	MaxEntryBytes = 64 << 10 // one encoded entry
	MaxReasonLen  = 1024     // a vote's or request's reason, in bytes
	MaxApprovers  = 32
	maxNameLen    = 64
	// MaxTimeout bounds a request's deadline after its time, as policy rules bound their
	// timeout: the approvals topic's retention (internal/kafkaio) relies on it.
	MaxTimeout = 24 * time.Hour
)

// Decision is an approver's answer, and what a request falls back to at its deadline.
type Decision string

const (
	Approve Decision = "approve"
	Deny    Decision = "deny"
)

// ErrInvalid marks an entry or vote that does not decode or breaks a rule of its kind. It is
// permanent: the entry is skipped (and counted) by every reader, and the HTTP API answers 400.
var ErrInvalid = errors.New("invalid approval entry")

// Request asks for approval of one tool call ([Call]) or one response action ([PlaybookAction]).
// Its hash ([HashOf] of the record value) is what approvers sign: a vote binds to exactly the
// request it was given, never to another written under the same id.
type Request struct {
	Schema    int       `json:"schema"`
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Tenant    string    `json:"tenant"`
	Requester string    `json:"requester"` // "gateway:<observer>", "playbook:<name>", "operator:<id>"
	// Rule is the policy rule or playbook rule that demands the approval.
	Rule   string          `json:"rule"`
	Reason string          `json:"reason,omitempty"`
	Call   *Call           `json:"call,omitempty"`
	Action *PlaybookAction `json:"action,omitempty"`
	// Approvers are the key ids whose votes count; Required of them must approve.
	Approvers []string  `json:"approvers"`
	Required  int       `json:"required"`
	Deadline  time.Time `json:"deadline"`
	// OnTimeout is the outcome when the deadline passes undecided: [Deny] unless set otherwise.
	OnTimeout Decision `json:"on_timeout"`
}

// Call is a tools/call held at a gateway.
type Call struct {
	Subject  string `json:"sub,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	TokenID  string `json:"jti,omitempty"`
	Server   string `json:"server"`
	Tool     string `json:"tool"`
	// ArgsSHA256 is the hex SHA-256 of the arguments' canonical JSON ([ArgsHash]): the approved
	// call goes through only with exactly these arguments.
	ArgsSHA256 string `json:"args_sha256"`
	// Arguments are the arguments as the audit trail shows them (masked), for the approvers.
	Arguments string `json:"arguments,omitempty"`
}

// PlaybookAction is a response action a playbook holds for approval.
type PlaybookAction struct {
	Kind      event.ActionKind   `json:"kind"`
	Scope     event.ControlScope `json:"scope,omitempty"`
	Value     string             `json:"value,omitempty"`
	Playbook  string             `json:"playbook,omitempty"`
	FindingID string             `json:"finding_id,omitempty"`
	Subject   string             `json:"sub,omitempty"`
	// Expires is when the action's control is to end; nil: permanent.
	Expires *time.Time `json:"expires,omitempty"`
}

// Vote is one approver's signed decision on one request.
type Vote struct {
	Schema      int       `json:"schema"`
	RequestID   string    `json:"request_id"`
	RequestHash string    `json:"request_hash"` // hex SHA-256 of the request record ([HashOf])
	Approver    string    `json:"approver"`     // key id in the keyring
	Decision    Decision  `json:"decision"`
	Reason      string    `json:"reason"`
	Time        time.Time `json:"time"`
	Signature   []byte    `json:"signature"` // Ed25519 over [Vote.SigningBytes], base64 in JSON
}

// Claim is a gateway's bid to forward an approved call. The first claim of a request in the log
// wins, at every reader alike: only the gateway whose claim that is forwards the call.
type Claim struct {
	Schema    int       `json:"schema"`
	RequestID string    `json:"request_id"`
	Gateway   string    `json:"gateway"`
	Nonce     string    `json:"nonce"`
	Time      time.Time `json:"time"`
}

// Entry kinds, the second segment of a record key.
const (
	kindRequest = "request"
	kindVote    = "vote"
	kindClaim   = "claim"
)

var (
	idRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$`)
	hexRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidID reports whether s can be a request id (letters, digits, _ . -; at most 64).
func ValidID(s string) bool { return idRE.MatchString(s) }

// ValidName reports whether s can be an approver key id or gateway name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// HashOf is the hex SHA-256 of an encoded request: what votes sign.
func HashOf(raw []byte) string {
	h := sha256.Sum256(raw)
	return hex.EncodeToString(h[:])
}

// EncodeRequest checks r and encodes it; it returns the record key and value.
func EncodeRequest(r *Request) (key string, value []byte, err error) {
	r.Schema = SchemaVersion
	if err := r.validate(); err != nil {
		return "", nil, err
	}
	value, err = json.Marshal(r)
	if err != nil {
		return "", nil, fmt.Errorf("encode approval request: %w", err)
	}
	return r.ID + "/" + kindRequest + "/" + HashOf(value)[:16], value, nil
}

// EncodeVote checks v (not its signature) and encodes it.
func EncodeVote(v *Vote) (key string, value []byte, err error) {
	v.Schema = SchemaVersion
	if err := v.validate(); err != nil {
		return "", nil, err
	}
	value, err = json.Marshal(v)
	if err != nil {
		return "", nil, fmt.Errorf("encode vote: %w", err)
	}
	sig := sha256.Sum256(v.Signature)
	return v.RequestID + "/" + kindVote + "/" + v.Approver + "/" + hex.EncodeToString(sig[:8]), value, nil
}

// EncodeClaim checks c and encodes it.
func EncodeClaim(c *Claim) (key string, value []byte, err error) {
	c.Schema = SchemaVersion
	if err := c.validate(); err != nil {
		return "", nil, err
	}
	value, err = json.Marshal(c)
	if err != nil {
		return "", nil, fmt.Errorf("encode claim: %w", err)
	}
	return c.RequestID + "/" + kindClaim + "/" + c.Gateway + "/" + c.Nonce, value, nil
}

// Entry is one decoded record of the approvals topic: exactly one of its fields is set.
type Entry struct {
	Request *Request
	Raw     []byte // the request's record value, for its hash
	Vote    *Vote
	Claim   *Claim
}

// DecodeEntry decodes one record of the approvals topic. It refuses, with an error wrapping
// [ErrInvalid] that says why, a record over [MaxEntryBytes], a key that is not of the three
// shapes, a value that does not decode strictly (unknown fields included) or breaks its kind's
// rules, and a value whose ids differ from its key's: an entry under the wrong key could shadow
// another after compaction.
func DecodeEntry(key, value []byte) (Entry, error) {
	if len(key) > 512 || len(value) > MaxEntryBytes {
		return Entry{}, fmt.Errorf("%w: record of %d+%d bytes exceeds the limit", ErrInvalid, len(key), len(value))
	}
	parts := strings.Split(string(key), "/")
	if len(parts) < 3 || !ValidID(parts[0]) {
		return Entry{}, fmt.Errorf("%w: key %q: want <id>/request, <id>/vote or <id>/claim followed by their parts", ErrInvalid, clip(string(key)))
	}
	id := parts[0]
	switch parts[1] {
	case kindRequest:
		var r Request
		if err := strict(value, &r); err != nil {
			return Entry{}, fmt.Errorf("%w: request %s: %v", ErrInvalid, id, err)
		}
		if err := r.validate(); err != nil {
			return Entry{}, err
		}
		if len(parts) != 3 || r.ID != id || parts[2] != HashOf(value)[:16] {
			return Entry{}, fmt.Errorf("%w: request key %q does not match its content", ErrInvalid, clip(string(key)))
		}
		return Entry{Request: &r, Raw: bytes.Clone(value)}, nil
	case kindVote:
		var v Vote
		if err := strict(value, &v); err != nil {
			return Entry{}, fmt.Errorf("%w: vote on %s: %v", ErrInvalid, id, err)
		}
		if err := v.validate(); err != nil {
			return Entry{}, err
		}
		sig := sha256.Sum256(v.Signature)
		if len(parts) != 4 || v.RequestID != id || v.Approver != parts[2] || parts[3] != hex.EncodeToString(sig[:8]) {
			return Entry{}, fmt.Errorf("%w: vote key %q does not match its content", ErrInvalid, clip(string(key)))
		}
		return Entry{Vote: &v}, nil
	case kindClaim:
		var c Claim
		if err := strict(value, &c); err != nil {
			return Entry{}, fmt.Errorf("%w: claim on %s: %v", ErrInvalid, id, err)
		}
		if err := c.validate(); err != nil {
			return Entry{}, err
		}
		if len(parts) != 4 || c.RequestID != id || c.Gateway != parts[2] || c.Nonce != parts[3] {
			return Entry{}, fmt.Errorf("%w: claim key %q does not match its content", ErrInvalid, clip(string(key)))
		}
		return Entry{Claim: &c}, nil
	}
	return Entry{}, fmt.Errorf("%w: key %q: unknown entry kind %q", ErrInvalid, clip(string(key)), clip(parts[1]))
}

// DecodeVote decodes a vote as the HTTP API receives it: strictly, with its rules checked (not
// its signature: see [Keyring.Verify]).
func DecodeVote(b []byte) (Vote, error) {
	var v Vote
	if len(b) > MaxEntryBytes {
		return v, fmt.Errorf("%w: vote larger than %d bytes", ErrInvalid, MaxEntryBytes)
	}
	if err := strict(b, &v); err != nil {
		return v, fmt.Errorf("%w: vote: %v", ErrInvalid, err)
	}
	if v.Schema == 0 {
		v.Schema = SchemaVersion
	}
	return v, v.validate()
}

func strict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

func (r *Request) validate() error {
	switch {
	case r.Schema != SchemaVersion:
		return invalid("request %q: schema %d, this build reads %d", r.ID, r.Schema, SchemaVersion)
	case !ValidID(r.ID):
		return invalid("request id %q: use letters, digits, _ . - (at most 64)", clip(r.ID))
	case r.Time.IsZero() || r.Deadline.IsZero():
		return invalid("request %s: time and deadline are required", r.ID)
	case !r.Deadline.After(r.Time):
		return invalid("request %s: deadline %s is not after its time %s", r.ID, r.Deadline.Format(time.RFC3339), r.Time.Format(time.RFC3339))
	case r.Deadline.Sub(r.Time) > MaxTimeout:
		return invalid("request %s: deadline %s is more than %s after its time %s", r.ID, r.Deadline.Format(time.RFC3339),
			MaxTimeout, r.Time.Format(time.RFC3339))
	case (r.Call == nil) == (r.Action == nil):
		return invalid("request %s: give exactly one of call and action", r.ID)
	case r.Call != nil && (r.Call.Server == "" || r.Call.Tool == "" || !hexRE.MatchString(r.Call.ArgsSHA256)):
		return invalid("request %s: a call needs server, tool and args_sha256 (64 hex digits)", r.ID)
	case r.Action != nil && r.Action.Kind == "":
		return invalid("request %s: an action needs its kind", r.ID)
	case len(r.Approvers) == 0 || len(r.Approvers) > MaxApprovers:
		return invalid("request %s: %d approvers, want 1 to %d", r.ID, len(r.Approvers), MaxApprovers)
	case r.Required < 1 || r.Required > len(r.Approvers):
		return invalid("request %s: required %d of %d approvers: want 1 to %d", r.ID, r.Required, len(r.Approvers), len(r.Approvers))
	case r.OnTimeout != Approve && r.OnTimeout != Deny:
		return invalid("request %s: on_timeout %q: want approve or deny", r.ID, clip(string(r.OnTimeout)))
	case len(r.Reason) > MaxReasonLen:
		return invalid("request %s: reason longer than %d bytes", r.ID, MaxReasonLen)
	}
	seen := map[string]bool{}
	for _, a := range r.Approvers {
		if !ValidName(a) {
			return invalid("request %s: approver %q: use letters, digits, _ . @ : - (at most %d)", r.ID, clip(a), maxNameLen)
		}
		if seen[a] {
			return invalid("request %s: approver %q listed twice", r.ID, a)
		}
		seen[a] = true
	}
	return nil
}

func (v *Vote) validate() error {
	switch {
	case v.Schema != SchemaVersion:
		return invalid("vote: schema %d, this build reads %d", v.Schema, SchemaVersion)
	case !ValidID(v.RequestID):
		return invalid("vote: request id %q: use letters, digits, _ . - (at most 64)", clip(v.RequestID))
	case !hexRE.MatchString(v.RequestHash):
		return invalid("vote on %s: request_hash must be 64 lowercase hex digits (the SHA-256 of the request)", v.RequestID)
	case !ValidName(v.Approver):
		return invalid("vote on %s: approver %q: use letters, digits, _ . @ : - (at most %d)", v.RequestID, clip(v.Approver), maxNameLen)
	case v.Decision != Approve && v.Decision != Deny:
		return invalid("vote on %s: decision %q: want approve or deny", v.RequestID, clip(string(v.Decision)))
	case strings.TrimSpace(v.Reason) == "":
		return invalid("vote on %s: a reason is required", v.RequestID)
	case len(v.Reason) > MaxReasonLen:
		return invalid("vote on %s: reason longer than %d bytes", v.RequestID, MaxReasonLen)
	case v.Time.IsZero():
		return invalid("vote on %s: time is required", v.RequestID)
	case len(v.Signature) != 64:
		return invalid("vote on %s: signature must be 64 bytes (Ed25519), got %d", v.RequestID, len(v.Signature))
	}
	return nil
}

func (c *Claim) validate() error {
	switch {
	case c.Schema != SchemaVersion:
		return invalid("claim: schema %d, this build reads %d", c.Schema, SchemaVersion)
	case !ValidID(c.RequestID):
		return invalid("claim: request id %q invalid", clip(c.RequestID))
	case !ValidName(c.Gateway) || !ValidID(c.Nonce):
		return invalid("claim on %s: gateway %q or nonce %q invalid", c.RequestID, clip(c.Gateway), clip(c.Nonce))
	case c.Time.IsZero():
		return invalid("claim on %s: time is required", c.RequestID)
	}
	return nil
}

// voteDomain separates vote signatures from any other use of an approver's key.
const voteDomain = "mcpwatch approval vote v1"

// SigningBytes is the canonical encoding a vote's signature covers: a domain string, then the
// request id, request hash, approver, decision, reason and time (UTC, RFC 3339 with nanoseconds),
// each preceded by its length as a uvarint. Lengths make the encoding unambiguous, so no two votes
// share signing bytes; the approver is covered so a signature cannot be passed off as another's.
func (v *Vote) SigningBytes() []byte {
	fields := []string{voteDomain, v.RequestID, v.RequestHash, v.Approver, string(v.Decision), v.Reason,
		v.Time.UTC().Format(time.RFC3339Nano)}
	var b []byte
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}
