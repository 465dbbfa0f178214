package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

// The bench's percentiles are nearest-rank: if this broke, the figures in BENCHMARKS.md would be
// off by a rank or, at the edges, index out of range.
func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		vals []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{nil, 100, 0},
		{ms(7), 0.001, 7 * time.Millisecond},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99.9, 7 * time.Millisecond},
		{ms(7), 100, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 0, 1 * time.Millisecond}, // below the first rank: the smallest value
		{ms(1, 2, 3, 4), 25, 1 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 99.9, 100 * time.Millisecond},
		{ms(hundred...), 100, 100 * time.Millisecond},
		{ms(hundred...), 0.001, 1 * time.Millisecond},
	} {
		if got := percentile(tc.vals, tc.p); got != tc.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(tc.vals), tc.p, got, tc.want)
		}
	}
}

// summarize must sort what the workers recorded in completion order and count the achieved rate
// from successful calls only; with nothing measured (every call failed, or no time) it must
// report zeros, not panic or divide by zero.
func TestSummarize(t *testing.T) {
	lat := ms(5, 1, 3, 2)
	s := summarize(lat, 1, 2*time.Second)
	if s.n != 4 || s.errors != 1 || s.achieved != 2 || s.p50 != 2*time.Millisecond || s.p90 != 5*time.Millisecond ||
		s.maxLat != 5*time.Millisecond || !slices.IsSorted(lat) {
		t.Fatalf("summary %+v", s)
	}
	if s := summarize(nil, 3, time.Second); s != (latencySummary{errors: 3}) {
		t.Fatalf("no successful calls: %+v", s)
	}
	one := summarize(ms(4), 0, 500*time.Millisecond)
	if one.n != 1 || one.achieved != 2 || one.p50 != 4*time.Millisecond || one.p999 != 4*time.Millisecond || one.maxLat != 4*time.Millisecond {
		t.Fatalf("one sample: %+v", one)
	}
	if s := summarize(ms(4), 0, 0); s.achieved != 0 || s.n != 1 {
		t.Fatalf("no measured time: %+v", s)
	}
}

// countingUpstream is the raw upstream, recording which request ids reached it.
type countingUpstream struct {
	mu  sync.Mutex
	ids map[int]int
	h   http.Handler
}

func newCountingUpstream(h http.Handler) *countingUpstream {
	return &countingUpstream{ids: map[int]int{}, h: h}
}

func (c *countingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req struct {
		ID int `json:"id"`
	}
	if json.Unmarshal(body, &req) == nil {
		c.mu.Lock()
		c.ids[req.ID]++
		c.mu.Unlock()
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	c.h.ServeHTTP(w, r)
}

// each reports whether ids 0..n-1 each arrived exactly once and nothing else did.
func (c *countingUpstream) each(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ids) != n {
		return false
	}
	for i := range n {
		if c.ids[i] != 1 {
			return false
		}
	}
	return true
}

// The open-loop scheduler must send every target exactly rate×d calls, each request id once,
// whether interleaved or in slices (also when the last slice is partial), and count failures
// per target. Counts, not timings: the timings are what the benchmark measures. If this broke,
// the table's calls and achieved/s columns would not be the load that was asked for.
func TestOpenLoopCounts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rate  int
		d     time.Duration
		slice time.Duration
		n     int
	}{
		{"interleaved", 100, 200 * time.Millisecond, 0, 20},
		{"slices", 100, 200 * time.Millisecond, 50 * time.Millisecond, 20},
		{"partial last slice", 100, 230 * time.Millisecond, 50 * time.Millisecond, 23},
		{"slice longer than the run", 100, 100 * time.Millisecond, 200 * time.Millisecond, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok := newCountingUpstream(rawUpstream(false))
			sse := newCountingUpstream(rawUpstream(true))
			failing := newCountingUpstream(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "upstream down", http.StatusBadGateway)
			}))
			var targets []target
			for _, u := range []struct {
				name string
				h    http.Handler
			}{{"json", ok}, {"sse", sse}, {"failing", failing}} {
				srv := httptest.NewServer(u.h)
				t.Cleanup(srv.Close)
				targets = append(targets, target{name: u.name, url: srv.URL})
			}
			var firstErr errOnce
			res, err := runOpenLoop(context.Background(), targets, tc.rate, tc.d, 4, tc.slice, &firstErr)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range []struct{ lat, errs int }{{tc.n, 0}, {tc.n, 0}, {0, tc.n}} {
				if len(res[i].lat) != want.lat || res[i].errs != want.errs {
					t.Errorf("%s: %d latencies, %d errors; want %d, %d", targets[i].name, len(res[i].lat), res[i].errs, want.lat, want.errs)
				}
			}
			for i, u := range []*countingUpstream{ok, sse, failing} {
				if !u.each(tc.n) {
					t.Errorf("%s: request ids %v, want 0..%d once each", targets[i].name, u.ids, tc.n-1)
				}
			}
			if err := firstErr.get(); err == nil || !strings.Contains(err.Error(), "failing: status 502") {
				t.Errorf("first error %v", err)
			}
		})
	}
}

// A call counts as failed when the upstream answers 200 without a JSON-RPC result or with a
// tool error: the benchmark measures successful tools/call round trips only.
func TestCallChecksTheResult(t *testing.T) {
	for body, wantErr := range map[string]bool{
		`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`:                false,
		`{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}`: true,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32003,"message":"no"}}`: true,
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+benchToken || r.Header.Get("Mcp-Method") != "tools/call" {
				http.Error(w, "headers", http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte(body))
		}))
		err := call(context.Background(), srv.Client(), srv.URL, benchBody(1))
		srv.Close()
		if (err != nil) != wantErr {
			t.Errorf("%s: %v", body, err)
		}
	}
}

// A cancelled run stops scheduling and reports the cancellation instead of figures.
func TestOpenLoopCancelled(t *testing.T) {
	srv := httptest.NewServer(rawUpstream(false))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var firstErr errOnce
	if _, err := runOpenLoop(ctx, []target{{"direct", srv.URL}}, 100, time.Second, 2, 0, &firstErr); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
}
