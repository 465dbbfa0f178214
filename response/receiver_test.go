package response

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

var quiet = slog.New(slog.DiscardHandler)

// signed builds a request as a Standard Webhooks sender would.
func signed(t *testing.T, id string, body []byte) *http.Request {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Now()
	sig, err := wh.Sign(id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	return req
}

// The receiver delivers each verified webhook once, turns its callback's failure into a 500 so
// the sender retries, and refuses what it must not trust or cannot read.
func TestReceiver(t *testing.T) {
	var got []Delivery
	fail := errors.New("downstream unavailable")
	var next error
	rc, err := NewReceiver(secret, func(_ context.Context, d Delivery) error {
		if next != nil {
			return next
		}
		got = append(got, d)
		return nil
	}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(req *http.Request) int {
		w := httptest.NewRecorder()
		rc.ServeHTTP(w, req)
		return w.Code
	}
	body := []byte(`{"type":"mcpwatch.finding","timestamp":"2026-11-23T09:00:00Z","data":{"id":"f-1","score":91,"actions":[{"kind":"revoke","status":"issued","target":"revoke/subject/acme/mallory"}]}}`)

	next = fail
	if code := serve(signed(t, "f-1", body)); code != http.StatusInternalServerError || len(got) != 0 {
		t.Fatalf("failing callback: %d, %d deliveries", code, len(got))
	}
	next = nil
	if code := serve(signed(t, "f-1", body)); code != http.StatusNoContent || len(got) != 1 {
		t.Fatalf("retry after a failure: %d, %d deliveries", code, len(got))
	}
	d := got[0]
	if d.ID != "f-1" || d.Payload.Data.ID != "f-1" || d.Payload.Data.Score != 91 ||
		d.Payload.Data.Actions[0].Target != "revoke/subject/acme/mallory" || time.Since(d.Timestamp) > time.Minute {
		t.Fatalf("delivery %+v", d)
	}
	if code := serve(signed(t, "f-1", body)); code != http.StatusNoContent || len(got) != 1 {
		t.Fatalf("duplicate webhook id: %d, %d deliveries; want acknowledged, not delivered again", code, len(got))
	}

	get := httptest.NewRequest(http.MethodGet, "/hook", nil)
	big := bytes.Repeat([]byte(" "), ReceiverMaxBody+1)
	unknown := []byte(`{"type":"something.else","data":{}}`)
	for name, c := range map[string]struct {
		req  *http.Request
		want int
	}{
		"GET":          {get, http.StatusMethodNotAllowed},
		"too large":    {signed(t, "f-2", big), http.StatusRequestEntityTooLarge},
		"not JSON":     {signed(t, "f-3", []byte("not json")), http.StatusBadRequest},
		"unknown type": {signed(t, "f-4", unknown), http.StatusBadRequest},
	} {
		if code := serve(c.req); code != c.want {
			t.Errorf("%s: status %d, want %d", name, code, c.want)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
}

// The dedupe memory is bounded, and an evicted id does not evict a newer claim of itself.
func TestReceiverDedupeBounded(t *testing.T) {
	rc, err := NewReceiver(secret, func(context.Context, Delivery) error { return nil }, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for i := range receiverDedupe + 10 {
		if !rc.claim("id-" + strconv.Itoa(i)) {
			t.Fatalf("fresh id %d refused", i)
		}
	}
	if len(rc.seen) != receiverDedupe || rc.claim("id-"+strconv.Itoa(receiverDedupe+5)) {
		t.Fatalf("remembers %d ids, or forgot a recent one", len(rc.seen))
	}
	if !rc.claim("id-0") {
		t.Fatal("the oldest id is still remembered past the bound")
	}
}

// A receiver must not start with a secret that cannot be right.
func TestReceiverRejectsSecret(t *testing.T) {
	for _, s := range []string{"", "whsec_", "c2hvcnQ=", "whsec_c2hvcnQ=", "whsec_!!"} {
		if _, err := NewReceiver(s, func(context.Context, Delivery) error { return nil }, nil); err == nil {
			t.Errorf("secret %q accepted", s)
		}
	}
}
