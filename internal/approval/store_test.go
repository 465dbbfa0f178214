package approval

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// testKeys are three approvers with their private keys, and one stranger not in the keyring.
type testKeys struct {
	ring *Keyring
	priv map[string]ed25519.PrivateKey
}

func newTestKeys(t testing.TB, ids ...string) *testKeys {
	t.Helper()
	k := &testKeys{priv: map[string]ed25519.PrivateKey{}}
	pubs := map[string]ed25519.PublicKey{}
	for _, id := range ids {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k.priv[id], pubs[id] = priv, pub
	}
	// The stranger signs but is in no keyring.
	_, k.priv["mallory"], _ = ed25519.GenerateKey(rand.Reader)
	var err error
	if k.ring, err = NewKeyring(pubs); err != nil {
		t.Fatal(err)
	}
	return k
}

var t0 = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func testRequest(id string, onTimeout Decision) *Request {
	return &Request{ID: id, Time: t0, Tenant: "acme", Requester: "gateway:gw1", Rule: "wire-transfer",
		Call:      &Call{Subject: "alice", Server: "bank", Tool: "transfer", ArgsSHA256: strings.Repeat("ab", 32)},
		Approvers: []string{"ann", "ben", "cat"}, Required: 2, Deadline: t0.Add(10 * time.Minute), OnTimeout: onTimeout}
}

func mustApply(t *testing.T, s *Store, key string, value []byte) {
	t.Helper()
	if err := s.Apply([]byte(key), value); err != nil {
		t.Fatalf("apply %s: %v", key, err)
	}
}

func putRequest(t *testing.T, s *Store, r *Request) string {
	t.Helper()
	key, value, err := EncodeRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, key, value)
	return HashOf(value)
}

func signedVote(k *testKeys, id, hash, approver string, d Decision, at time.Time) *Vote {
	v := &Vote{Schema: SchemaVersion, RequestID: id, RequestHash: hash, Approver: approver, Decision: d, Reason: "checked with the desk", Time: at}
	Sign(v, k.priv[approver])
	return v
}

func putVote(t *testing.T, s *Store, v *Vote) {
	t.Helper()
	key, value, err := EncodeVote(v)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, key, value)
}

func putClaim(t *testing.T, s *Store, id, gw, nonce string, at time.Time) {
	t.Helper()
	key, value, err := EncodeClaim(&Claim{RequestID: id, Gateway: gw, Nonce: nonce, Time: at})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, key, value)
}

func wantState(t *testing.T, s *Store, id string, want State) Status {
	t.Helper()
	st, ok := s.Get(id)
	if !ok {
		t.Fatalf("request %s unknown", id)
	}
	if st.State != want {
		t.Fatalf("request %s is %s (%s), want %s", id, st.State, st.Reason, want)
	}
	return st
}

// The fold's rules, one step at a time, on a 2-of-3 request: one approval keeps it pending, a
// forged signature, a stranger, a vote on another version of the request and a late vote count
// for nothing, the second approver approves it, the first claim consumes it and a second claim
// loses. If this failed, a call could go through on fewer approvals than required, on a vote
// nobody signed, or twice.
func TestFoldTwoOfThree(t *testing.T) {
	k := newTestKeys(t, "ann", "ben", "cat")
	c := &clock{t: t0.Add(time.Minute)}
	s := NewStore(k.ring, WithClock(c.now))
	h := putRequest(t, s, testRequest("r1", Deny))
	wantState(t, s, "r1", Pending)

	putVote(t, s, signedVote(k, "r1", h, "ann", Approve, t0.Add(time.Minute)))
	if st := wantState(t, s, "r1", Pending); len(st.Approvals) != 1 || !strings.Contains(st.Reason, "1 of 2") {
		t.Fatalf("one approval: %+v", st)
	}
	// Forged: ben's name, mallory's key.
	forged := signedVote(k, "r1", h, "ben", Approve, t0.Add(time.Minute))
	Sign(forged, k.priv["mallory"])
	putVote(t, s, forged)
	// Altered after signing: the reason changed.
	altered := signedVote(k, "r1", h, "cat", Approve, t0.Add(time.Minute))
	altered.Reason = "something else"
	putVote(t, s, altered)
	// A stranger's own key, under its own name.
	putVote(t, s, signedVote(k, "r1", h, "mallory", Approve, t0.Add(time.Minute)))
	// A vote on another version of the request.
	putVote(t, s, signedVote(k, "r1", strings.Repeat("00", 32), "ben", Approve, t0.Add(time.Minute)))
	// Ann again: the first vote counts.
	putVote(t, s, signedVote(k, "r1", h, "ann", Approve, t0.Add(2*time.Minute)))
	// Cat, after the deadline.
	putVote(t, s, signedVote(k, "r1", h, "cat", Approve, t0.Add(11*time.Minute)))
	wantState(t, s, "r1", Pending)
	if s.Ignored() != 6 {
		t.Fatalf("ignored %d entries, want 6", s.Ignored())
	}

	putVote(t, s, signedVote(k, "r1", h, "ben", Approve, t0.Add(3*time.Minute)))
	st := wantState(t, s, "r1", Approved)
	if st.Reason != "approved by ann, ben" || !st.DecidedAt.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("approved: %q at %v", st.Reason, st.DecidedAt)
	}
	if !s.Approved("r1") || s.Approved("nope") {
		t.Fatal("Approved disagrees with the state")
	}
	putClaim(t, s, "r1", "gw1", "n1", t0.Add(4*time.Minute))
	putClaim(t, s, "r1", "gw2", "n2", t0.Add(4*time.Minute))
	st = wantState(t, s, "r1", Consumed)
	if st.ClaimedBy != "gw1" {
		t.Fatalf("claimed by %q, want the first claim's gw1", st.ClaimedBy)
	}
	if seen, won, _ := s.claimSeen("r1", "n2"); !seen || won {
		t.Fatalf("second claim: seen %v won %v, want seen and lost", seen, won)
	}
}

// Any counted deny denies, even after one approval; a deny by a stranger does nothing. If this
// failed, a veto would be lost or anyone could veto.
func TestFoldDeny(t *testing.T) {
	k := newTestKeys(t, "ann", "ben", "cat")
	c := &clock{t: t0.Add(time.Minute)}
	s := NewStore(k.ring, WithClock(c.now))
	h := putRequest(t, s, testRequest("r1", Deny))
	putVote(t, s, signedVote(k, "r1", h, "mallory", Deny, t0.Add(time.Minute)))
	putVote(t, s, signedVote(k, "r1", h, "ann", Approve, t0.Add(time.Minute)))
	wantState(t, s, "r1", Pending)
	putVote(t, s, signedVote(k, "r1", h, "cat", Deny, t0.Add(2*time.Minute)))
	putVote(t, s, signedVote(k, "r1", h, "ben", Approve, t0.Add(3*time.Minute)))
	st := wantState(t, s, "r1", Denied)
	if st.Reason != "denied by cat: checked with the desk" {
		t.Fatalf("reason %q", st.Reason)
	}
	// A claim on a denied request consumes nothing.
	putClaim(t, s, "r1", "gw1", "n1", t0.Add(4*time.Minute))
	wantState(t, s, "r1", Denied)
}

// At the deadline an undecided request takes on_timeout: expired (deny) by default, approved when
// the rule says so; an approval unused by UseBy expires; a claim is judged at its own time, so a
// claim after UseBy consumes nothing. If this failed, a timeout would let calls through by
// default, or an approval would stay usable forever.
func TestFoldTimeout(t *testing.T) {
	k := newTestKeys(t, "ann", "ben", "cat")
	c := &clock{t: t0.Add(time.Minute)}
	s := NewStore(k.ring, WithClock(c.now))
	putRequest(t, s, testRequest("deny", Deny))
	hApprove := putRequest(t, s, testRequest("approve", Approve))
	_ = hApprove
	c.set(t0.Add(10*time.Minute + time.Second))
	if st := wantState(t, s, "deny", Expired); !strings.Contains(st.Reason, "on_timeout: deny") {
		t.Fatalf("reason %q", st.Reason)
	}
	if st := wantState(t, s, "approve", Approved); !strings.Contains(st.Reason, "approved by default") {
		t.Fatalf("reason %q", st.Reason)
	}
	// UseBy is one timeout after the deadline.
	c.set(t0.Add(20*time.Minute + time.Second))
	wantState(t, s, "approve", Expired)
	putClaim(t, s, "approve", "gw1", "n1", t0.Add(20*time.Minute+time.Second))
	wantState(t, s, "approve", Expired)
}

// Memory is bounded: requests are forgotten a grace period after UseBy, and beyond the maximum a
// new request is refused with ErrFull. If this failed, a flood of held calls would grow every
// gateway's memory without bound.
func TestStoreBounded(t *testing.T) {
	k := newTestKeys(t, "ann", "ben", "cat")
	c := &clock{t: t0.Add(time.Minute)}
	s := NewStore(k.ring, WithClock(c.now), WithMaxRequests(2), WithGrace(time.Minute))
	putRequest(t, s, testRequest("a", Deny))
	putRequest(t, s, testRequest("b", Deny))
	key, value, _ := EncodeRequest(testRequest("c", Deny))
	if err := s.Apply([]byte(key), value); !errors.Is(err, ErrFull) {
		t.Fatalf("third request: %v, want ErrFull", err)
	}
	c.set(t0.Add(22 * time.Minute)) // past UseBy (20m) + grace (1m)
	d := testRequest("d", Deny)
	d.Time, d.Deadline = t0.Add(21*time.Minute), t0.Add(31*time.Minute)
	putRequest(t, s, d)
	if s.Len() != 1 {
		t.Fatalf("%d requests held after the sweep, want 1", s.Len())
	}
	if _, ok := s.LatestForCall(CallKey("acme", testRequest("a", Deny).Call, "wire-transfer")); !ok {
		t.Fatal("the call index lost the live request d")
	}
}

// The decoder refuses records that would confuse the fold: entries under keys that do not match
// their content (a forged request under another's key, a vote filed under another approver),
// unknown fields and kinds, oversize records. If this failed, compaction could let one entry
// replace another, or a malformed record could poison every gateway.
func TestDecodeEntryRefuses(t *testing.T) {
	k := newTestKeys(t, "ann")
	r := testRequest("r1", Deny)
	rkey, rval, err := EncodeRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	v := signedVote(k, "r1", HashOf(rval), "ann", Approve, t0)
	vkey, vval, _ := EncodeVote(v)
	var withExtra map[string]any
	_ = json.Unmarshal(rval, &withExtra)
	withExtra["surprise"] = 1
	extra, _ := json.Marshal(withExtra)
	for name, c := range map[string]struct{ key, value string }{
		"request under another id":    {strings.Replace(rkey, "r1/", "r2/", 1), string(rval)},
		"request under a wrong hash":  {"r1/request/0000000000000000", string(rval)},
		"vote under another approver": {strings.Replace(vkey, "/ann/", "/ben/", 1), string(vval)},
		"unknown field":               {rkey, string(extra)},
		"unknown kind":                {"r1/verdict/x", string(rval)},
		"short key":                   {"r1", string(rval)},
		"bad id":                      {"../r1/request/x", string(rval)},
		"oversize":                    {rkey, strings.Repeat(" ", MaxEntryBytes+1)},
		"not json":                    {rkey, "{"},
		"trailing data":               {rkey, string(rval) + "{}"},
		"claim key mismatch":          {"r1/claim/gw1/n1", `{"schema":1,"request_id":"r1","gateway":"gw2","nonce":"n1","time":"2026-12-07T09:00:00Z"}`},
	} {
		if _, err := DecodeEntry([]byte(c.key), []byte(c.value)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
	if _, err := DecodeEntry([]byte(rkey), rval); err != nil {
		t.Fatalf("the genuine request: %v", err)
	}
	// A deadline beyond MaxTimeout: the topic's retention could delete the request while it is
	// still usable, so neither the writer nor a reader takes it.
	long := testRequest("r3", Deny)
	long.Deadline = t0.Add(MaxTimeout + time.Second)
	if _, _, err := EncodeRequest(long); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "more than 24h0m0s after") {
		t.Errorf("a request with a 24h1s timeout encoded: %v", err)
	}
	long.Schema = SchemaVersion
	lval, _ := json.Marshal(long)
	if _, err := DecodeEntry([]byte("r3/request/"+HashOf(lval)[:16]), lval); !errors.Is(err, ErrInvalid) {
		t.Errorf("a request with a 24h1s timeout decoded: %v", err)
	}
	if _, err := DecodeEntry([]byte(vkey), vval); err != nil {
		t.Fatalf("the genuine vote: %v", err)
	}
}

// The signing bytes cover every field, and a signature survives an encode/decode round trip (the
// vote's time in another zone included). If this failed, a vote could be altered without
// breaking its signature, or genuine votes would stop verifying after passing through Kafka.
func TestSigningBytes(t *testing.T) {
	k := newTestKeys(t, "ann")
	v := signedVote(k, "r1", strings.Repeat("ab", 32), "ann", Approve, time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("KST", 9*3600)))
	_, val, _ := EncodeVote(v)
	got, err := DecodeVote(val)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.ring.Verify(&got); err != nil {
		t.Fatalf("round-tripped vote: %v", err)
	}
	base := string(v.SigningBytes())
	for name, change := range map[string]func(*Vote){
		"request":  func(x *Vote) { x.RequestID = "r2" },
		"hash":     func(x *Vote) { x.RequestHash = strings.Repeat("cd", 32) },
		"approver": func(x *Vote) { x.Approver = "ben" },
		"decision": func(x *Vote) { x.Decision = Deny },
		"reason":   func(x *Vote) { x.Reason += "!" },
		"time":     func(x *Vote) { x.Time = x.Time.Add(time.Nanosecond) },
		// Moving bytes between adjacent fields must change the encoding too.
		"boundary": func(x *Vote) { x.RequestID, x.RequestHash = x.RequestID+"a", x.RequestHash[1:] },
	} {
		x := *v
		change(&x)
		if string(x.SigningBytes()) == base {
			t.Errorf("changing the %s leaves the signing bytes unchanged", name)
		}
	}
}

// Canonical arguments: key order and whitespace do not change the hash, values do, absent and
// null arguments are {}, and repeated keys are refused. If this failed, an approval could be
// reused for other arguments, or a call sending `{"amount":1,"amount":1000}` could show the
// approvers one amount while the server acts on the other.
func TestArgsHash(t *testing.T) {
	h := func(s string) string {
		t.Helper()
		x, err := ArgsHash(json.RawMessage(s))
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return x
	}
	if h(`{"a":1,"b":{"c":[1,2]}}`) != h(" { \"b\" : {\"c\":[1, 2]}, \"a\":1 } ") {
		t.Fatal("key order or whitespace changes the hash")
	}
	if h(`{"amount":100}`) == h(`{"amount":1000}`) {
		t.Fatal("different values hash alike")
	}
	if h(``) != h(`{}`) || h(`null`) != h(`{}`) {
		t.Fatal("absent or null arguments do not hash as {}")
	}
	for _, bad := range []string{`{"amount":1,"amount":1000}`, `{"x":{"a":1,"a":2}}`, `[{"a":1,"a":1}]`, `{"a":`} {
		if _, err := ArgsHash(json.RawMessage(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	if h(`{"a":{"a":1},"b":[{"a":2}]}`) == "" { // the same key in different objects is fine
		t.Fatal("unreachable")
	}
}
