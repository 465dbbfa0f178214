package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"time"
)

// DefaultMaxSkew is how far a vote's time may be from the API's clock.
const DefaultMaxSkew = 2 * time.Minute

// Server is the approvals HTTP API:
//
//	GET  /approvals               requests in a state (?state=pending, the default; or approved, denied, expired, consumed, all)
//	GET  /approvals/{id}          one request: its status, its record (base64) and the hash to sign
//	POST /approvals/{id}/votes    a signed [Vote]
//
// The vote's Ed25519 signature is the approver's authentication: the server checks it against
// the keyring before writing the vote, refuses votes by approvers the request does not name,
// votes on another version of the request (hash), votes after the deadline, second votes, and
// votes whose time is more than [DefaultMaxSkew] from its clock (so no approver can backdate a
// vote through it). The handler does not authenticate reads: [Serve] does, at the TLS handshake,
// when given a client CA (every connection presents an operator's certificate, mTLS); without
// one, reads are open to whoever reaches the port and Serve warns so at start.
type Server struct {
	store   *Store
	keys    *Keyring
	prod    Producer
	actions ActionRecorder
	log     *slog.Logger
	skew    time.Duration
	wait    time.Duration
}

// NewServer returns the API over store, writing accepted votes with prod. actions may be nil.
func NewServer(store *Store, keys *Keyring, prod Producer, actions ActionRecorder, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{store: store, keys: keys, prod: prod, actions: actions, log: log.With("component", "approvals-api"),
		skew: DefaultMaxSkew, wait: DefaultWaitTimeout}
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /approvals", s.list)
	mux.HandleFunc("GET /approvals/{id}", s.get)
	mux.HandleFunc("POST /approvals/{id}/votes", s.vote)
	return mux
}

// RequestView is a request as the API shows it.
type RequestView struct {
	Status
	// Record is the request's record value, whose SHA-256 is Status.Hash: a client recomputes the
	// hash from it before signing, so it signs what it was shown.
	Record []byte `json:"record"`
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, format string, a ...any) {
	writeJSON(w, code, apiError{Error: fmt.Sprintf(format, a...)})
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	var states []State
	switch q := State(r.URL.Query().Get("state")); q {
	case "":
		states = []State{Pending}
	case "all":
	case Pending, Approved, Denied, Expired, Consumed:
		states = []State{q}
	default:
		fail(w, http.StatusBadRequest, "state %q: want pending, approved, denied, expired, consumed or all", clip(string(q)))
		return
	}
	out := []RequestView{}
	for _, st := range s.store.List(states...) {
		out = append(out, RequestView{Status: st, Record: st.Raw})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !ValidID(id) {
		fail(w, http.StatusBadRequest, "request id %q: use letters, digits, _ . - (at most 64)", clip(id))
		return
	}
	st, ok := s.store.Get(id)
	if !ok {
		fail(w, http.StatusNotFound, "no approval request %s (unknown, or finished long enough ago to be forgotten)", id)
		return
	}
	writeJSON(w, http.StatusOK, RequestView{Status: st, Record: st.Raw})
}

// maxVoteBody bounds a vote body: a vote is a few hundred bytes.
const maxVoteBody = 16 << 10

func (s *Server) vote(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
		fail(w, http.StatusUnsupportedMediaType, "content type %q: send application/json", clip(ct))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxVoteBody))
	if err != nil {
		fail(w, http.StatusRequestEntityTooLarge, "vote body over %d bytes", maxVoteBody)
		return
	}
	v, err := DecodeVote(body)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	if v.RequestID != id {
		fail(w, http.StatusBadRequest, "vote is for request %s, posted to %s", v.RequestID, clip(id))
		return
	}
	code, msg := s.check(&v)
	if code != 0 {
		s.log.Info("vote refused", "request", id, "approver", v.Approver, "status", code, "why", msg)
		fail(w, code, "%s", msg)
		return
	}
	before, _ := s.store.Get(id)
	key, value, err := EncodeVote(&v)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.wait)
	defer cancel()
	if err := s.prod.Produce(ctx, key, value); err != nil {
		s.log.Warn("writing vote failed", "request", id, "approver", v.Approver, "err", err)
		fail(w, http.StatusServiceUnavailable, "vote not recorded: the approvals topic is unavailable; retry")
		return
	}
	// Wait for the vote to be folded, so the answer shows its effect.
	var after Status
	_ = s.store.Wait(ctx, func(st *Store) bool {
		after, _ = st.Get(id)
		return slices.ContainsFunc(append(slices.Clone(after.Approvals), after.Denials...), func(x VoteInfo) bool { return x.Approver == v.Approver })
	})
	if s.actions != nil {
		status := string(after.State)
		if after.State == "" {
			status = string(before.State)
		}
		s.actions(r.Context(), ActionOf(after, "operator:"+v.Approver, status,
			fmt.Sprintf("%s: %s", v.Decision, v.Reason)))
	}
	s.log.Info("vote recorded", "request", id, "approver", v.Approver, "decision", v.Decision, "state", after.State)
	writeJSON(w, http.StatusCreated, RequestView{Status: after, Record: after.Raw})
}

// check says why a decoded vote is refused (an HTTP status and a message), or 0.
func (s *Server) check(v *Vote) (int, string) {
	st, ok := s.store.Get(v.RequestID)
	now := s.store.Now()
	switch {
	case !ok:
		return http.StatusNotFound, "no approval request " + v.RequestID
	case v.RequestHash != st.Hash:
		return http.StatusConflict, "vote signs request hash " + v.RequestHash + ", the request's is " + st.Hash + ": fetch it again and sign what you see"
	case !slices.Contains(st.Request.Approvers, v.Approver):
		return http.StatusForbidden, fmt.Sprintf("approver %s is not among this request's approvers [%s]", v.Approver, joinNames(st.Request.Approvers))
	}
	if err := s.keys.Verify(v); err != nil {
		if errors.Is(err, ErrUnknownApprover) {
			return http.StatusForbidden, err.Error()
		}
		return http.StatusUnauthorized, err.Error() + " (wrong key for this approver, or the vote was altered)"
	}
	switch {
	case v.Time.Before(now.Add(-s.skew)) || v.Time.After(now.Add(s.skew)):
		return http.StatusBadRequest, fmt.Sprintf("vote time %s is more than %s from the server's clock %s: check the approver's clock",
			v.Time.UTC().Format(time.RFC3339), s.skew, now.UTC().Format(time.RFC3339))
	case v.Time.After(st.Request.Deadline):
		return http.StatusConflict, "the request's deadline " + st.Request.Deadline.UTC().Format(time.RFC3339) + " has passed: " + st.Reason
	case st.State != Pending:
		return http.StatusConflict, "request is " + string(st.State) + " already: " + st.Reason
	}
	for _, x := range append(slices.Clone(st.Approvals), st.Denials...) {
		if x.Approver == v.Approver {
			return http.StatusConflict, "approver " + v.Approver + " has voted on this request already (the first vote counts)"
		}
	}
	return 0, ""
}

// RecordExpiries records, every interval until ctx ends, an action for each request that
// expired since the last look. Run it in one place per deployment (the approvals API); the
// action ids are derived from the request, so a second runner records duplicates under one id.
func (s *Server) RecordExpiries(ctx context.Context, interval time.Duration) {
	if s.actions == nil {
		return
	}
	seen := map[string]time.Time{} // request id → its UseBy, to forget it once the store has
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.store.Now()
		for _, st := range s.store.List(Expired, Approved) {
			byDefault := st.State == Approved && len(st.Approvals) < st.Request.Required
			if _, done := seen[st.Request.ID]; done || st.State == Approved && !byDefault {
				continue
			}
			seen[st.Request.ID] = st.UseBy
			s.actions(ctx, ActionOf(st, "approvals:timeout", string(st.State), st.Reason))
		}
		for id, useBy := range seen {
			if now.After(useBy.Add(s.store.grace + time.Hour)) {
				delete(seen, id)
			}
		}
	}
}
