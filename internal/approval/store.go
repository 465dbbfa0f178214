package approval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// State is where a request stands.
type State string

const (
	Pending  State = "pending"  // waiting for votes
	Approved State = "approved" // Required approvals in time (or the deadline passed with on_timeout approve)
	Denied   State = "denied"   // an approver denied it
	Expired  State = "expired"  // the deadline passed undecided (on_timeout deny), or an approval went unused
	Consumed State = "consumed" // an approved call was claimed by a gateway: it went through once
)

// Default bounds of a [Store].
const (
	DefaultGrace       = time.Hour
	DefaultMaxRequests = 100_000
)

// ErrFull is returned by [Store.Apply] for a new request when the store already holds its maximum:
// the request is not tracked, and a gateway that asked for it refuses the call (fail closed).
var ErrFull = errors.New("approval store full")

// Status is a request's folded state at one moment.
type Status struct {
	Request Request `json:"request"`
	// Raw is the request's record value and Hash its SHA-256: approvers sign the hash.
	Raw  []byte `json:"-"`
	Hash string `json:"request_hash"`

	State State `json:"state"`
	// Reason explains the state in words: who denied and why, that the deadline passed, ...
	Reason    string     `json:"reason"`
	Approvals []VoteInfo `json:"approvals"`
	Denials   []VoteInfo `json:"denials"`
	// DecidedAt is when the request left pending: the deciding vote's time or the deadline.
	DecidedAt time.Time `json:"decided_at,omitzero"`
	// EndedAt is when a denied or expired request ended: the deny, the deadline, or UseBy.
	EndedAt time.Time `json:"ended_at,omitzero"`
	// UseBy is when an approval ends unused: one timeout (deadline minus request time) after the
	// deadline.
	UseBy time.Time `json:"use_by"`
	// ClaimedBy is the gateway whose claim consumed the approval, and ClaimNonce its nonce.
	ClaimedBy  string    `json:"claimed_by,omitempty"`
	ClaimNonce string    `json:"-"`
	ClaimedAt  time.Time `json:"claimed_at,omitzero"`
}

// VoteInfo is a counted vote.
type VoteInfo struct {
	Approver string    `json:"approver"`
	Reason   string    `json:"reason"`
	Time     time.Time `json:"time"`
}

// reqState is one request's entries, as folded so far.
type reqState struct {
	req     Request
	raw     []byte
	hash    string
	callKey string
	votes   []Vote // counted votes in log order, at most one per approver
	claimer string
	nonce   string
	claimAt time.Time
	claims  map[string]bool // nonces of every claim seen, won or not
	useBy   time.Time
	dropAt  time.Time
}

// Store folds the approvals topic. It is safe for concurrent use and implements the follower's
// table (Apply, Len).
//
// The rules of the fold:
//   - the first request entry under an id is the request; later ones under the same id are ignored;
//   - a vote counts only if its approver is one of the request's approvers and in the keyring, its
//     signature verifies over the request's hash, its time is not after the deadline, and it is
//     the approver's first counted vote on the request (first valid wins: a later vote by the same
//     approver, changed mind or replay, is ignored);
//   - any counted deny denies the request (a veto: an approver who says no has a reason the
//     others may not see, and M of N is a floor for going ahead, not a vote among peers);
//   - Required counted approvals approve it; undecided at the deadline, it takes on_timeout;
//   - the first claim while approved consumes it; an approval unused by UseBy expires;
//   - a request is forgotten Grace after UseBy, bounding memory.
//
// Votes and claims are judged by the times they carry, not when a reader sees them, so readers
// that catch up later fold to the same states.
type Store struct {
	keys        *Keyring
	grace       time.Duration
	maxRequests int
	now         func() time.Time

	mu        sync.RWMutex
	reqs      map[string]*reqState
	byCall    map[string][]string // call key → request ids, oldest first
	changed   chan struct{}       // closed and replaced on every change
	lastSweep time.Time
	ignored   int // entries that decoded but did not count, for tests and metrics
}

// StoreOption configures a [Store].
type StoreOption func(*Store)

// WithGrace sets how long a finished request is kept after its UseBy ([DefaultGrace]).
func WithGrace(d time.Duration) StoreOption { return func(s *Store) { s.grace = d } }

// WithMaxRequests bounds the requests held ([DefaultMaxRequests]).
func WithMaxRequests(n int) StoreOption { return func(s *Store) { s.maxRequests = n } }

// WithClock sets the store's clock (tests).
func WithClock(now func() time.Time) StoreOption { return func(s *Store) { s.now = now } }

// NewStore returns an empty store that counts the votes of the approvers in keys.
func NewStore(keys *Keyring, opts ...StoreOption) *Store {
	s := &Store{keys: keys, grace: DefaultGrace, maxRequests: DefaultMaxRequests, now: time.Now,
		reqs: map[string]*reqState{}, byCall: map[string][]string{}, changed: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Now is the store's clock.
func (s *Store) Now() time.Time { return s.now() }

// Len returns the number of requests held.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.reqs)
}

// Ignored returns the number of entries that decoded but did not count (unknown request, vote
// by a stranger, bad signature, late, repeated; a claim on a request not approved).
func (s *Store) Ignored() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ignored
}

// CallKey identifies a tool call for approval: the same principal calling the same tool on the
// same server with the same arguments, under the same rule, is the same call.
func CallKey(tenant string, c *Call, rule string) string {
	h := sha256.New()
	for _, f := range []string{tenant, c.Subject, c.ClientID, c.Server, c.Tool, c.ArgsSHA256, rule} {
		fmt.Fprintf(h, "%d:%s", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Apply folds one record of the approvals topic. Tombstones (empty values) are ignored: entries
// leave the store by age. An entry that does not decode is refused with an error wrapping
// [ErrInvalid]; a new request beyond the store's bound with [ErrFull].
func (s *Store) Apply(key, value []byte) error {
	if len(value) == 0 {
		return nil
	}
	e, err := DecodeEntry(key, value)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep()
	switch {
	case e.Request != nil:
		err = s.applyRequest(e.Request, e.Raw)
	case e.Vote != nil:
		err = s.applyVote(e.Vote)
	case e.Claim != nil:
		err = s.applyClaim(e.Claim)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return err
}

func (s *Store) applyRequest(r *Request, raw []byte) error {
	if _, dup := s.reqs[r.ID]; dup {
		s.ignored++
		return nil
	}
	useBy := r.Deadline.Add(r.Deadline.Sub(r.Time))
	if s.now().After(useBy.Add(s.grace)) {
		return nil // long finished: a reader starting from the beginning skips it
	}
	if len(s.reqs) >= s.maxRequests {
		return fmt.Errorf("%w: %d requests held; request %s not tracked", ErrFull, len(s.reqs), r.ID)
	}
	st := &reqState{req: *r, raw: raw, hash: HashOf(raw), useBy: useBy, dropAt: useBy.Add(s.grace), claims: map[string]bool{}}
	if r.Call != nil {
		st.callKey = CallKey(r.Tenant, r.Call, r.Rule)
		s.byCall[st.callKey] = append(s.byCall[st.callKey], r.ID)
	}
	s.reqs[r.ID] = st
	return nil
}

func (s *Store) applyVote(v *Vote) error {
	st, ok := s.reqs[v.RequestID]
	switch {
	case !ok:
		s.ignored++
		return nil
	case v.RequestHash != st.hash,
		!slices.Contains(st.req.Approvers, v.Approver),
		v.Time.After(st.req.Deadline),
		s.keys.Verify(v) != nil:
		s.ignored++
		return nil
	}
	for _, o := range st.votes {
		if o.Approver == v.Approver {
			s.ignored++
			return nil
		}
	}
	st.votes = append(st.votes, *v)
	return nil
}

func (s *Store) applyClaim(c *Claim) error {
	st, ok := s.reqs[c.RequestID]
	if !ok {
		s.ignored++
		return nil
	}
	st.claims[c.Nonce] = true
	if st.claimer != "" || st.fold(c.Time).State != Approved {
		s.ignored++
		return nil
	}
	st.claimer, st.nonce, st.claimAt = c.Gateway, c.Nonce, c.Time
	return nil
}

// sweep forgets requests past their drop time, at most once a minute; s.mu must be held.
func (s *Store) sweep() {
	now := s.now()
	if now.Sub(s.lastSweep) < time.Minute {
		return
	}
	s.lastSweep = now
	for id, st := range s.reqs {
		if now.After(st.dropAt) {
			delete(s.reqs, id)
			if st.callKey != "" {
				ids := slices.DeleteFunc(s.byCall[st.callKey], func(x string) bool { return x == id })
				if len(ids) == 0 {
					delete(s.byCall, st.callKey)
				} else {
					s.byCall[st.callKey] = ids
				}
			}
		}
	}
}

// fold is the request's status at now.
func (st *reqState) fold(now time.Time) Status {
	r := &st.req
	out := Status{Request: *r, Raw: st.raw, Hash: st.hash, UseBy: st.useBy, State: Pending}
	for _, v := range st.votes {
		vi := VoteInfo{Approver: v.Approver, Reason: v.Reason, Time: v.Time}
		if v.Decision == Deny {
			out.Denials = append(out.Denials, vi)
		} else {
			out.Approvals = append(out.Approvals, vi)
		}
	}
	switch {
	case len(out.Denials) > 0:
		d := out.Denials[0]
		out.State, out.DecidedAt, out.EndedAt = Denied, d.Time, d.Time
		out.Reason = fmt.Sprintf("denied by %s: %s", d.Approver, d.Reason)
		return out
	case len(out.Approvals) >= r.Required:
		out.State, out.DecidedAt = Approved, out.Approvals[r.Required-1].Time
		out.Reason = fmt.Sprintf("approved by %s", approverList(out.Approvals[:r.Required]))
	case !now.After(r.Deadline):
		out.Reason = fmt.Sprintf("waiting for approval: %d of %d required approvals from [%s] by %s",
			len(out.Approvals), r.Required, joinNames(r.Approvers), r.Deadline.UTC().Format(time.RFC3339))
		return out
	case r.OnTimeout == Approve:
		out.State, out.DecidedAt = Approved, r.Deadline
		out.Reason = fmt.Sprintf("approved by default: no decision by the deadline %s (on_timeout: approve)", r.Deadline.UTC().Format(time.RFC3339))
	default:
		out.State, out.DecidedAt, out.EndedAt = Expired, r.Deadline, r.Deadline
		out.Reason = fmt.Sprintf("expired: %d of %d required approvals by the deadline %s (on_timeout: deny)",
			len(out.Approvals), r.Required, r.Deadline.UTC().Format(time.RFC3339))
		return out
	}
	// Approved: consumed once claimed, expired once unused past UseBy.
	if st.claimer != "" {
		out.State, out.ClaimedBy, out.ClaimNonce, out.ClaimedAt = Consumed, st.claimer, st.nonce, st.claimAt
		out.Reason = fmt.Sprintf("%s; used once, by gateway %s at %s", out.Reason, st.claimer, st.claimAt.UTC().Format(time.RFC3339))
		return out
	}
	if now.After(st.useBy) {
		out.State, out.EndedAt = Expired, st.useBy
		out.Reason = fmt.Sprintf("%s, but not used by %s", out.Reason, st.useBy.UTC().Format(time.RFC3339))
	}
	return out
}

func approverList(vs []VoteInfo) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.Approver
	}
	return joinNames(names)
}

func joinNames(n []string) string {
	out := ""
	for i, s := range n {
		if i > 0 {
			out += ", "
		}
		out += s
	}
	return out
}

// Get returns request id's status now.
func (s *Store) Get(id string) (Status, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.reqs[id]
	if !ok {
		return Status{}, false
	}
	return st.fold(s.now()), true
}

// Approved reports whether request id is approved now (and not yet used): the question a
// playbook asks before acting. Unknown ids are not approved.
func (s *Store) Approved(id string) bool {
	st, ok := s.Get(id)
	return ok && st.State == Approved
}

// LatestForCall returns the status of the newest request for the call key ([CallKey]).
func (s *Store) LatestForCall(key string) (Status, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := s.byCall[key]
	if len(ids) == 0 {
		return Status{}, false
	}
	return s.reqs[ids[len(ids)-1]].fold(s.now()), true
}

// List returns the statuses of the requests in the given states (all when none are given),
// oldest first.
func (s *Store) List(states ...State) []Status {
	s.mu.RLock()
	now := s.now()
	var out []Status
	for _, st := range s.reqs {
		f := st.fold(now)
		if len(states) == 0 || slices.Contains(states, f.State) {
			out = append(out, f)
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Request.Time.Equal(out[j].Request.Time) {
			return out[i].Request.Time.Before(out[j].Request.Time)
		}
		return out[i].Request.ID < out[j].Request.ID
	})
	return out
}

// Wait blocks until cond, evaluated under the store's read lock after every change, holds, or
// ctx ends.
func (s *Store) Wait(ctx context.Context, cond func(*Store) bool) error {
	for {
		s.mu.RLock()
		ch := s.changed
		s.mu.RUnlock()
		if cond(s) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// claimSeen reports whether the claim with nonce on request id has been folded, and whether the
// request is consumed by it.
func (s *Store) claimSeen(id, nonce string) (seen, won bool, st Status) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.reqs[id]
	if !ok || !r.claims[nonce] {
		return false, false, Status{}
	}
	return true, r.nonce == nonce, r.fold(s.now())
}

// has reports whether request id has been folded.
func (s *Store) has(id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.reqs[id]
	return ok
}
