package approval

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// PostVote relays a vote signed elsewhere: a good one is counted, a tampered one comes back as an
// *APIError carrying the API's 401 and its reason, and a vote without a valid request id is
// refused before any request is made. If this failed, the Grafana plugin could not forward votes
// signed in the browser, or would turn the API's reasons into a bare 502.
func TestClientPostVote(t *testing.T) {
	k := newTestKeys(t, "ann", "ben", "cat")
	store := NewStore(k.ring)
	apply := ProducerFunc(func(_ context.Context, key string, value []byte) error { return store.Apply([]byte(key), value) })
	api := httptest.NewServer(NewServer(store, k.ring, apply, nil, nil).Handler())
	t.Cleanup(api.Close)
	c := &Client{BaseURL: api.URL}
	r := testRequest("r1", Deny)
	r.Time, r.Deadline = time.Now().UTC(), time.Now().UTC().Add(time.Hour)
	hash := putRequest(t, store, r)

	forged := signedVote(k, "r1", hash, "ben", Approve, time.Now())
	forged.Reason = "changed after signing"
	_, err := c.PostVote(context.Background(), forged)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != http.StatusUnauthorized || ae.Reason == "" {
		t.Fatalf("tampered vote: %v; want an *APIError 401 with the API's reason", err)
	}
	after, err := c.PostVote(context.Background(), signedVote(k, "r1", hash, "ann", Approve, time.Now()))
	if err != nil || after.State != Pending || len(after.Approvals) != 1 || after.Approvals[0].Approver != "ann" {
		t.Fatalf("good vote: %v %+v", err, after.Status)
	}
	if _, err := c.PostVote(context.Background(), &Vote{RequestID: "../x"}); err == nil || errors.As(err, &ae) {
		t.Fatalf("bad request id: %v; want a local refusal", err)
	}
}
