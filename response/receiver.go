package response

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Delivery is one verified webhook.
type Delivery struct {
	ID        string    // webhook-id: the finding id
	Timestamp time.Time // webhook-timestamp: when this attempt was signed
	Payload   Payload
}

// Receiver limits.
const (
	ReceiverMaxBody = 1 << 20 // bytes; a finding is a few KiB
	receiverDedupe  = 10_000  // webhook ids remembered for deduplication
)

// Receiver is an [http.Handler] that accepts mcpwatch webhooks: it verifies each with the
// Standard Webhooks library (signature, and a timestamp within 5 minutes against replays),
// drops repeats of a webhook id it has already delivered, and hands the payload to a callback.
//
// Responses: 204 delivered (or a repeat), 401 bad or missing signature, 400 undecodable or of
// an unknown type, 405 not a POST, 413 too large, 500 the callback failed (the sender retries).
type Receiver struct {
	wh      *standardwebhooks.Webhook
	deliver func(context.Context, Delivery) error
	log     *slog.Logger

	mu   sync.Mutex
	seen map[string]int // webhook id → its slot in ring
	ring []string
	next int
}

// NewReceiver returns a Receiver for webhooks signed with secret ("whsec_..."), calling deliver
// once per webhook id. A deliver error answers 500 so that the sender retries. log may be nil.
func NewReceiver(secret string, deliver func(context.Context, Delivery) error, log *slog.Logger) (*Receiver, error) {
	if err := validateSecret(secret); err != nil {
		return nil, err
	}
	if deliver == nil {
		return nil, errors.New("response: receiver needs a deliver callback")
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, errors.New("response: receiver secret does not decode")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Receiver{wh: wh, deliver: deliver, log: log.With("component", "webhook-receiver"),
		seen: make(map[string]int), ring: make([]string, receiverDedupe)}, nil
}

// ServeHTTP implements [http.Handler].
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, ReceiverMaxBody+1))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	if len(body) > ReceiverMaxBody {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if err := rc.wh.Verify(body, req.Header); err != nil {
		rc.log.Warn("webhook rejected", "remote", req.RemoteAddr, "err", err)
		http.Error(w, "signature verification failed", http.StatusUnauthorized)
		return
	}
	id := req.Header.Get(standardwebhooks.HeaderWebhookID)
	ts, _ := strconv.ParseInt(req.Header.Get(standardwebhooks.HeaderWebhookTimestamp), 10, 64) // Verify parsed it
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "payload is not JSON of a known shape", http.StatusBadRequest)
		return
	}
	if p.Type != EventTypeFinding {
		http.Error(w, "unknown payload type", http.StatusBadRequest)
		return
	}
	if !rc.claim(id) {
		w.WriteHeader(http.StatusNoContent) // a retry of what was delivered: acknowledge, do not repeat
		return
	}
	if err := rc.deliver(req.Context(), Delivery{ID: id, Timestamp: time.Unix(ts, 0).UTC(), Payload: p}); err != nil {
		rc.release(id)
		rc.log.Error("webhook delivery failed", "webhook_id", id, "err", err)
		http.Error(w, "delivery failed", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// claim records id as delivered, or reports false if it already was.
func (rc *Receiver) claim(id string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if _, ok := rc.seen[id]; ok {
		return false
	}
	if old := rc.ring[rc.next]; old != "" && rc.seen[old] == rc.next {
		delete(rc.seen, old)
	}
	rc.ring[rc.next], rc.seen[id] = id, rc.next
	rc.next = (rc.next + 1) % len(rc.ring)
	return true
}

// release forgets id after a failed delivery, so that the sender's retry is delivered.
func (rc *Receiver) release(id string) {
	rc.mu.Lock()
	delete(rc.seen, id)
	rc.mu.Unlock()
}
