package ueba

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/event"
)

// mix builds n events over principals with realistic variety: tools, servers, resources,
// classes, clients, networks, responses, a few denials.
func mix(n, principals int, seed uint64) []*event.Event {
	rng := rand.New(rand.NewPCG(seed, 2))
	tools := []string{"acme-data/db_query", "acme-data/file_read", "search", "list_reports", "acme-mail/send_email", "jira/create_issue", "github/get_file", "slack/post_message"}
	groups := []string{"finance-analysts", "sales-analysts", "support", "engineering", "batch-jobs"}
	out := make([]*event.Event, n)
	at := t0
	for i := range out {
		at = at.Add(time.Duration(rng.IntN(2000)) * time.Microsecond)
		p := rng.IntN(principals)
		e := &event.Event{ID: fmt.Sprintf("ev-%09d", i), Time: at, Source: event.SourceMCP, Tenant: "acme",
			Principal: event.Principal{Subject: fmt.Sprintf("user-%06d@acme.example", p), ClientID: "claude-desktop",
				PeerGroup: groups[p%len(groups)], TokenID: fmt.Sprintf("jti-%d", p)},
			MCP: &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: tools[(p+rng.IntN(3))%len(tools)],
				ClientName: "claude-desktop", ClientVersion: "1.4", ProtocolVersion: "2025-06-18"},
			Target:     event.Target{Server: "acme-data"},
			Network:    event.Network{SrcIP: fmt.Sprintf("10.%d.%d.%d", p%200, p%7, p%250), UserAgent: "claude-desktop/1.4"},
			Outcome:    event.Outcome{Result: event.ResultAllowed},
			Size:       event.Size{Request: 300},
			Normalized: &event.Normalized{Sensitivity: 0.1},
		}
		switch r := rng.IntN(20); {
		case r < 8:
			e.MCP.Direction, e.Size = event.DirResponse, event.Size{Response: 1000 + rng.IntN(20000)}
		case r == 8:
			e.MCP.Method, e.MCP.Tool, e.MCP.ResourceURI = "resources/read", "", fmt.Sprintf("file:///reports/q%d/%d.pdf", rng.IntN(4), rng.IntN(50))
			e.DataClasses, e.Normalized.Sensitivity = []string{"finance"}, 0.6
		case r == 9:
			e.DataClasses, e.Normalized.Sensitivity = []string{"finance", "pii"}, 0.7
		case r == 10:
			e.Outcome.Result = event.ResultDenied
		}
		out[i] = e
	}
	return out
}

// BenchmarkObserve: events/s per core over 100,000 principals in the steady state (profiles
// warmed first), with the per-event latency p99.
func BenchmarkObserve(b *testing.B) {
	const principals = 100_000
	d, _ := New(DefaultConfig())
	warm := mix(2_000_000, principals, 1)
	var out detect.Output
	for _, e := range warm {
		out.Reset()
		d.Observe(e, &out)
	}
	evs := mix(1<<18, principals, 3)
	last := warm[len(warm)-1].Time
	for _, e := range evs { // continue after the warm-up
		e.Time = e.Time.Add(last.Sub(t0))
	}
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		e := evs[i%len(evs)]
		if i > 0 && i%len(evs) == 0 {
			shift := evs[len(evs)-1].Time.Sub(evs[0].Time) + time.Second
			for _, e := range evs {
				e.Time = e.Time.Add(shift)
			}
		}
		out.Reset()
		if i%64 == 0 && len(lat) < cap(lat) {
			s := time.Now()
			d.Observe(e, &out)
			lat = append(lat, time.Since(s))
			continue
		}
		d.Observe(e, &out)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns/event")
	}
}

// TestMemoryPerPrincipal measures the heap a profile costs with realistic variety and holds it
// under the 16 KiB budget.
func TestMemoryPerPrincipal(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates ~100 MB")
	}
	const principals = 10_000
	evs := mix(1_000_000, principals, 5)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	d, _ := New(DefaultConfig())
	var out detect.Output
	for _, e := range evs {
		out.Reset()
		d.Observe(e, &out)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(evs)
	per := float64(after.HeapAlloc-before.HeapAlloc) / principals
	t.Logf("%d principals: %.0f bytes each (%.1f KiB)", d.Stats().Principals, per, per/1024)
	if per > 16<<10 {
		t.Fatalf("%.0f bytes per principal, over 16 KiB", per)
	}
	runtime.KeepAlive(d)
}
