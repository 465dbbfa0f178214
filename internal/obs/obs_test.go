package obs

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Orchestrators route traffic by /readyz: it must fail while any check fails, and /metrics must
// expose registered metrics.
func TestHandler(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	h := NewHealth()
	h.NotReady("kafka")
	srv := httptest.NewServer(Handler(reg, h))
	defer srv.Close()

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "kafka") {
		t.Fatalf("readyz while starting: %d %q", code, body)
	}
	h.Set("kafka", nil)
	h.Set("clickhouse", errors.New("down"))
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "clickhouse: down") {
		t.Fatalf("readyz with clickhouse down: %d %q", code, body)
	}
	h.Set("clickhouse", nil)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz when ready: %d", code)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "mcpwatch_test_total 1") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics missing: %q", body[:min(len(body), 200)])
	}
}

func TestNewLoggerRejectsBadConfig(t *testing.T) {
	if _, err := NewLogger("xml", "info"); err == nil {
		t.Fatal("accepted log format xml")
	}
	if _, err := NewLogger("json", "loud"); err == nil {
		t.Fatal("accepted log level loud")
	}
}
