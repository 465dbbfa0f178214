package mcp

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// A source that keeps failing authentication is slowed down: after its burst it gets 429 with
// Retry-After and the gateway's JSON-RPC error instead of 401, while a valid token from the same
// address still gets through. The refusals are audited within a budget, and every refusal not
// published on its own is counted on the next one that is. If this failed, a token-guessing
// client would get unlimited tries, or could flood the audit topic with refusals, or the
// limiting would silently hide how many attempts there were.
func TestUnauthenticatedRateLimited(t *testing.T) {
	up := newUpstream(t, true)
	f := newFixture(t, up, func(c *Config) {
		c.Unauthenticated = UnauthLimit{Rate: 0.2, Burst: 3, AuditRate: 5, AuditBurst: 2}
	})
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	sent := 0
	for i := range 3 {
		r := f.post(t, "guess-"+strconv.Itoa(i)+"-0123456789abcdef", ping)
		sent++
		if r.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: status %d, want 401 within the burst", i, r.status)
		}
	}
	for i := range 10 {
		r := f.post(t, "", ping)
		sent++
		if r.status != http.StatusTooManyRequests {
			t.Fatalf("attempt %d past the burst: status %d, want 429", i, r.status)
		}
		if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 5 {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
		if r.header.Get("WWW-Authenticate") != "" || !strings.Contains(r.body, fmt.Sprint(CodeRateLimited)) {
			t.Fatalf("429 answer: %v %s", r.header, r.body)
		}
	}
	// A valid credential is never limited.
	if r := f.post(t, aliceToken, ping); r.status != http.StatusOK {
		t.Fatalf("valid token from the limited address: status %d %s", r.status, r.body)
	}
	time.Sleep(300 * time.Millisecond) // the audit budget refills one event
	f.post(t, "", ping)
	sent++

	var published, suppressed, limited int
	for _, e := range f.events.all() {
		if e.Principal.Subject == "alice" {
			continue
		}
		published++
		if e.Outcome.Result != event.ResultDenied {
			t.Fatalf("refusal audited as %+v", e.Outcome)
		}
		if e.Outcome.HTTPStatus == http.StatusTooManyRequests {
			limited++
			if e.Outcome.ErrorCode != CodeRateLimited {
				t.Fatalf("429 event code %d", e.Outcome.ErrorCode)
			}
		}
		if s := e.Attributes[attrUnauthSuppressed]; s != "" {
			n, _ := strconv.Atoi(s)
			suppressed += n
		}
	}
	if published+suppressed != sent || published >= sent || limited == 0 {
		t.Fatalf("%d refusals: %d published (%d of them 429) + %d counted as suppressed", sent, published, limited, suppressed)
	}
	if n := metricValue(t, f.reg, "mcpwatch_gateway_denied_total", "reason", denyRateLimited); n != 11 {
		t.Fatalf("rate_limited denials %v, want 11", n)
	}
	if up.hits.Load() != 1 {
		t.Fatalf("upstream hits %d, want only alice's", up.hits.Load())
	}
}

// Sources are bounded (least recently seen forgotten first), and an IPv6 /64 is one source.
func TestUnauthLimiterSources(t *testing.T) {
	l := newUnauthLimiter(UnauthLimit{Rate: 0.001, Burst: 1, MaxSources: 2})
	now := time.Now()
	for _, ip := range []string{"10.0.0.1", "2001:db8::1", "10.0.0.2"} {
		if ok, _ := l.refused(ip, now); !ok {
			t.Fatalf("%s: first refusal limited", ip)
		}
	}
	if l.Len() != 2 {
		t.Fatalf("%d sources remembered, want 2", l.Len())
	}
	if ok, retry := l.refused("2001:db8::ffff", now); ok || retry < time.Second {
		t.Fatalf("same /64: ok=%v retry=%v, want limited", ok, retry)
	}
	if ok, _ := l.refused("10.0.0.1", now); !ok {
		t.Fatal("forgotten source not given a fresh bucket")
	}
	off := newUnauthLimiter(UnauthLimit{Rate: -1})
	for range 100 {
		if ok, _ := off.refused("10.0.0.1", now); !ok {
			t.Fatal("limiting off yet limited")
		}
	}
}
