package approval

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// FuzzDecodeEntry: whatever a record of the approvals topic holds, the decoder and the fold never
// panic, and anything that decodes re-encodes under the same key. If this failed, one hostile
// record could stop every gateway's follower, or an entry could hide under another's key.
func FuzzDecodeEntry(f *testing.F) {
	k := newTestKeys(f, "ann")
	r := testRequest("r1", Deny)
	rk, rv, _ := EncodeRequest(r)
	v := signedVote(k, "r1", HashOf(rv), "ann", Approve, t0)
	vk, vv, _ := EncodeVote(v)
	ck, cv, _ := EncodeClaim(&Claim{RequestID: "r1", Gateway: "gw1", Nonce: "n1", Time: t0})
	f.Add([]byte(rk), rv)
	f.Add([]byte(vk), vv)
	f.Add([]byte(ck), cv)
	f.Add([]byte("r1/vote/ann/x"), []byte(`{"schema":1}`))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		s := NewStore(k.ring, WithClock(func() time.Time { return t0 }))
		_ = s.Apply([]byte(rk), rv)
		e, err := DecodeEntry(key, value)
		_ = s.Apply(key, value)
		_, _ = s.Get("r1")
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		var k2 string
		switch {
		case e.Request != nil:
			_, _, err = EncodeRequest(e.Request)
			// A request re-encodes to equal JSON only if the input was canonical; its key is
			// then the same. Non-canonical input keys by its own bytes' hash, which is fine.
			if err != nil {
				t.Fatalf("decoded request does not re-encode: %v", err)
			}
			return
		case e.Vote != nil:
			k2, _, err = EncodeVote(e.Vote)
		case e.Claim != nil:
			k2, _, err = EncodeClaim(e.Claim)
		}
		if err != nil || k2 != string(key) {
			t.Fatalf("decoded entry re-encodes under %q (%v), was %q", k2, err, key)
		}
	})
}

// FuzzVoteAPI: whatever body is posted as a vote, the API answers with a 4xx and writes nothing
// unless the body is a vote signed by an approver of the request. If this failed, a malformed or
// unsigned body could crash the API or reach the topic.
func FuzzVoteAPI(f *testing.F) {
	k := newTestKeys(f, "ann", "ben", "cat")
	s := NewStore(k.ring, WithClock(func() time.Time { return t0.Add(time.Minute) }))
	rk, rv, _ := EncodeRequest(testRequest("r1", Deny))
	if err := s.Apply([]byte(rk), rv); err != nil {
		f.Fatal(err)
	}
	written := 0
	srv := NewServer(s, k.ring, ProducerFunc(func(_ context.Context, key string, value []byte) error {
		written++
		return nil
	}), nil, nil)
	srv.wait = time.Millisecond
	h := srv.Handler()
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"schema":1,"request_id":"r1","request_hash":"` + HashOf(rv) + `","approver":"ann","decision":"approve","reason":"ok","time":"2026-12-07T09:01:00Z","signature":"` + "AAAA" + `"}`))
	f.Add(bytes.Repeat([]byte("["), 100))
	f.Fuzz(func(t *testing.T, body []byte) {
		before := written
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/approvals/r1/votes", bytes.NewReader(body)))
		if rec.Code == http.StatusCreated {
			vote, err := DecodeVote(body)
			if err != nil || k.ring.Verify(&vote) != nil {
				t.Fatalf("accepted a vote that does not verify: %s", body)
			}
			return
		}
		if rec.Code < 400 || rec.Code >= 500 || written != before {
			t.Fatalf("status %d, %d writes for %q", rec.Code, written-before, body)
		}
	})
}
