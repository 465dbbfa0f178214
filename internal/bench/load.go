package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

// target is one endpoint the load generator calls.
type target struct {
	name, url string
}

// targetResult holds one target's latencies (successful calls only) and error count.
type targetResult struct {
	lat  []time.Duration
	errs int
}

// errOnce remembers the first failure, for the error message.
type errOnce struct {
	mu  sync.Mutex
	err error
}

func (e *errOnce) set(err error) {
	e.mu.Lock()
	if e.err == nil {
		e.err = err
	}
	e.mu.Unlock()
}

func (e *errOnce) get() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// runOpenLoop sends rate calls per second to every target for d, interleaved: call i goes to
// target i mod len(targets) at its scheduled time start + i/(rate·len(targets)). With slice > 0
// the targets take turns instead, each receiving rate calls per second for one slice at a time,
// until each has had d. A call's latency
// runs from that scheduled time, not from when a connection was free to send it, so a stalled
// target is charged for the calls queued behind the stall (no coordinated omission). The first
// failed call's error goes to firstErr.
func runOpenLoop(ctx context.Context, targets []target, rate int, d time.Duration, conns int, slice time.Duration, firstErr *errOnce) ([]targetResult, error) {
	type job struct {
		at   time.Time
		body []byte
		slot *time.Duration // where the latency goes; -1 marks an error
	}
	nt := len(targets)
	n := int(d.Seconds() * float64(rate)) // per target
	lats := make([][]time.Duration, nt)
	queues := make([]chan job, nt)
	var wg sync.WaitGroup
	for i, t := range targets {
		lats[i] = make([]time.Duration, n)
		queues[i] = make(chan job, n)
		client := &http.Client{Transport: &http.Transport{
			MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
			IdleConnTimeout: time.Minute, DisableCompression: true,
		}, Timeout: 30 * time.Second}
		for range conns {
			wg.Go(func() {
				for j := range queues[i] {
					if err := call(ctx, client, t.url, j.body); err != nil {
						firstErr.set(fmt.Errorf("%s: %w", t.name, err))
						*j.slot = -1
						continue
					}
					*j.slot = time.Since(j.at)
				}
			})
		}
		defer client.CloseIdleConnections()
	}
	interval := time.Duration(float64(time.Second) / float64(rate*nt))
	perSlice := 0 // calls per slice when taking turns
	if slice > 0 {
		interval = time.Duration(float64(time.Second) / float64(rate))
		perSlice = max(1, int(slice.Seconds()*float64(rate)))
	}
	total := n * nt
	if perSlice > 0 { // whole rounds, so that every target gets all n of its calls
		total = (n + perSlice - 1) / perSlice * perSlice * nt
	}
	start := time.Now().Add(10 * time.Millisecond)
	for k := 0; k < total; k++ {
		if ctx.Err() != nil {
			break
		}
		at := start.Add(time.Duration(k) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		i, seq := k%nt, k/nt
		if perSlice > 0 {
			round := k / (perSlice * nt)
			i, seq = (k/perSlice)%nt, round*perSlice+k%perSlice
			if seq >= n { // the last round may be partial
				continue
			}
		}
		queues[i] <- job{at: at, body: benchBody(seq), slot: &lats[i][seq]}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := make([]targetResult, nt)
	for i, l := range lats {
		for _, v := range l {
			if v < 0 {
				res[i].errs++
			} else {
				res[i].lat = append(res[i].lat, v)
			}
		}
	}
	return res, nil
}

// call POSTs one tools/call and checks that a JSON-RPC result came back.
func call(ctx context.Context, c *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	h.Set("Authorization", "Bearer "+benchToken)
	h.Set("Mcp-Protocol-Version", "2026-07-28")
	h.Set("Mcp-Method", "tools/call")
	h.Set("Mcp-Name", "db_query")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
	}
	if !bytes.Contains(b, []byte(`"result"`)) || bytes.Contains(b, []byte(`"isError":true`)) {
		return fmt.Errorf("no result: %.200s", b)
	}
	return nil
}

// latencySummary is one target's figures at one rate.
type latencySummary struct {
	n, errors                   int
	achieved                    float64 // successful calls per second of measured time
	p50, p90, p99, p999, maxLat time.Duration
}

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of sorted: the smallest value
// with at least p% of the values at or below it; 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// summarize sorts lat in place and computes its figures over a measured time of d.
func summarize(lat []time.Duration, errs int, d time.Duration) latencySummary {
	slices.Sort(lat)
	s := latencySummary{n: len(lat), errors: errs,
		p50: percentile(lat, 50), p90: percentile(lat, 90), p99: percentile(lat, 99), p999: percentile(lat, 99.9)}
	if len(lat) > 0 {
		s.maxLat = lat[len(lat)-1]
	}
	if d > 0 {
		s.achieved = float64(len(lat)) / d.Seconds()
	}
	return s
}
