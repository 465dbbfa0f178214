package mcp

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/control"
)

// flakyAudit is a publisher whose audit trail can be switched off, as a DurablePublisher reports
// when Kafka is down and its spool is full.
type flakyAudit struct {
	recorder
	down atomic.Bool
}

func (f *flakyAudit) Healthy() error {
	if f.down.Load() {
		return ErrAuditUnavailable
	}
	return nil
}

// A call that cannot be audited is not served: with the audit trail down the gateway refuses with
// 503 and never reaches the upstream, and serves again once the trail is back.
func TestFailClosedWhenAuditUnavailable(t *testing.T) {
	up := newUpstream(t, false)
	auth, err := NewStaticTokens([]StaticToken{{Token: aliceToken, Principal: event.Principal{Subject: "alice"}}})
	if err != nil {
		t.Fatal(err)
	}
	pub := &flakyAudit{}
	gw, err := New(Config{Upstream: up.srv.URL, ServerName: "files", Tenant: "acme"}, auth, pub, control.NewStore(),
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	defer gw.Close()
	f := &fixture{up: up, gw: gw, srv: srv}

	call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`
	pub.down.Store(true)
	hits := up.hits.Load()
	r := f.post(t, aliceToken, call, "Mcp-Protocol-Version", "2025-06-18")
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "-32083") {
		t.Fatalf("audit down: status %d body %s", r.status, r.body)
	}
	if up.hits.Load() != hits {
		t.Fatal("an unaudited call reached the upstream")
	}
	evs := pub.all()
	if len(evs) == 0 || evs[len(evs)-1].Outcome.PolicyRule != "audit:fail_closed" || evs[len(evs)-1].Outcome.Result != event.ResultDenied {
		t.Fatalf("the refusal was not handed to the audit trail: %s", dump(evs))
	}

	pub.down.Store(false)
	r = f.post(t, aliceToken, call, "Mcp-Protocol-Version", "2025-06-18")
	if r.status == http.StatusServiceUnavailable || up.hits.Load() == hits {
		t.Fatalf("audit back: status %d, upstream hits %d", r.status, up.hits.Load()-hits)
	}
}
