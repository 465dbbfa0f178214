package bench

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/policy"
)

// The generated policy must load and hold the ~50 rules the benchmark claims.
func TestBenchPolicy(t *testing.T) {
	p, err := policy.Load(strings.NewReader(benchPolicy()), "bench")
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 50 {
		t.Fatalf("%d rules", p.Len())
	}
}

// Settings the load generator cannot run with are refused before anything starts, with the
// flags to fix.
func TestGatewayOptionsValidate(t *testing.T) {
	good := GatewayOptions{Rates: []int{500}, Duration: time.Second, Conns: 1}
	if err := good.validate(); err != nil || good.Log == nil || good.Out == nil {
		t.Fatalf("good options: %v", err)
	}
	for name, o := range map[string]GatewayOptions{
		"no duration": {Rates: []int{500}, Conns: 1},
		"no conns":    {Rates: []int{500}, Duration: time.Second},
		"no rates":    {Duration: time.Second, Conns: 1},
	} {
		if err := o.validate(); err == nil || err.Error() != "bench gateway: --duration, --conns and --rates must be positive" {
			t.Errorf("%s: %v", name, err)
		}
	}
	o := GatewayOptions{Rates: []int{500, 0}, Duration: time.Second, Conns: 1}
	if err := o.validate(); err == nil || err.Error() != "bench gateway: rate 0 must be positive" {
		t.Errorf("zero rate: %v", err)
	}
	if _, err := upstreamHandler("grpc", nil); err == nil || !strings.Contains(err.Error(), "want json, sse, sdk-json or sdk-sse") {
		t.Errorf("unknown mode: %v", err)
	}
}

// The raw upstream answers each request with its own id, as JSON or as one server-sent event,
// and refuses what is not a JSON-RPC request: if it answered another id, the gateway would
// reject the response and the benchmark would measure errors.
func TestRawUpstream(t *testing.T) {
	for _, sse := range []bool{false, true} {
		rec := httptest.NewRecorder()
		rawUpstream(sse).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(string(benchBody(4711)))))
		body := rec.Body.String()
		wantType, prefix := "application/json", `{"jsonrpc":"2.0","id":4711,"result":`
		if sse {
			wantType, prefix = "text/event-stream", "event: message\ndata: "+prefix
		}
		if rec.Code != 200 || rec.Header().Get("Content-Type") != wantType || !strings.HasPrefix(body, prefix) {
			t.Errorf("sse=%v: %d %q %q", sse, rec.Code, rec.Header().Get("Content-Type"), body)
		}
	}
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/mcp", nil),
		httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)),
		httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`not json`)),
	} {
		rec := httptest.NewRecorder()
		rawUpstream(false).ServeHTTP(rec, r)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: %d", r.Method, rec.Code)
		}
	}
}
