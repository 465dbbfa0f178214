package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/demo"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/response"
)

// ResponseOptions configures [RunResponse].
type ResponseOptions struct {
	Kafka          kafkaio.Config
	Partitions     int32
	Replication    int16
	Findings       int           // measured findings (default 200)
	Interval       time.Duration // between findings (default 50ms)
	Replicas       int           // gateway replicas following the control topic (default 2)
	Timeout        time.Duration // per finding, before it counts as lost (default 10s)
	Log            *slog.Logger
	Out            io.Writer
	MetadataMinAge time.Duration // lowered for tests; 0 keeps the client default
}

func (o *ResponseOptions) defaults() {
	if o.Findings == 0 {
		o.Findings = 200
	}
	if o.Interval == 0 {
		o.Interval = 50 * time.Millisecond
	}
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Partitions == 0 {
		o.Partitions = 3
	}
	if o.Replication == 0 {
		o.Replication = 1
	}
}

// ResponseResult is what [RunResponse] measured: per replica, and for the last replica of each
// finding (the revocation is enforced everywhere only then), the time from the finding's
// publication to the first moment that replica's control store refuses the principal.
type ResponseResult struct {
	PerReplica [][]time.Duration
	Everywhere []time.Duration
	Lost       int
	// HTTPPerReplica and HTTPEverywhere are the same from the client's side: until a call to
	// the replica's HTTP gateway (a real [mcp.Router] over the store) is refused.
	HTTPPerReplica [][]time.Duration
	HTTPEverywhere []time.Duration
	HTTPLost       int
}

// RunResponse measures finding → revocation enforced at every gateway replica, on the real Kafka:
// it runs the respond stage (the responder that revokes the finding's subject) on a fresh topic
// prefix and Replicas control followers, each with the control store a gateway replica consults on
// every call ([control.Store.Check]). For each finding — a new subject each time, score 95 — it
// records when the finding was handed to Kafka and when each replica's store first refuses the
// subject (observed from the store's change hook, the moment the gateway's next call would be
// refused). Findings go one at a time, Interval apart, so each latency is that of an idle
// pipeline, not of a queue.
func RunResponse(ctx context.Context, o ResponseOptions) (*ResponseResult, error) {
	o.defaults()
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	names := event.TopicNames("bench-response-" + hex.EncodeToString(rb[:]))
	var extra []kgo.Opt
	if o.MetadataMinAge > 0 {
		extra = append(extra, kgo.MetadataMinAge(o.MetadataMinAge))
	}
	cl, err := kafkaio.NewClient(o.Kafka, extra...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(names, o.Partitions, o.Replication, 1)); err != nil {
		return nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = kadm.NewClient(cl).DeleteTopics(dctx, names.All()...)
	}()

	rcfg := response.DefaultConfig()
	rcfg.Threshold, rcfg.RevokeFor = 50, 10*time.Minute
	r, err := response.New(names, rcfg, nil, o.Log)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	scfg := o.Kafka
	scfg.ClientID = "bench-respond"
	st, err := kafkaio.NewStage(scfg, kafkaio.StageConfig{Name: response.StageRespond, Group: "bench-respond-" + hex.EncodeToString(rb[:]),
		Topics: []string{names.Findings}, DeadLetterTopic: names.DeadLetter}, r.EnforceHandler(), nil, o.Log)
	if err != nil {
		return nil, err
	}
	defer func() { _ = st.Close() }()

	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	wg.Go(func() { _ = st.Run(rctx) })

	// Each replica: its own follower and store; the hook notes when a watched subject is first
	// refused.
	type replica struct {
		store *control.Store
		mu    sync.Mutex
		want  string
		seen  chan time.Time
		url   string // the replica's HTTP gateway
	}
	// Every replica serves one demo MCP server (Streamable HTTP) to principals with static tokens.
	upstream, err := demo.Serve(rctx, demo.Handler())
	if err != nil {
		return nil, err
	}
	warm := 5
	var toks []mcp.StaticToken
	for i := range o.Findings + warm {
		toks = append(toks, mcp.StaticToken{Token: responseToken(i), Principal: event.Principal{Subject: fmt.Sprintf("bench-user-%d", i)}})
	}
	auth, err := mcp.NewStaticTokens(toks)
	if err != nil {
		return nil, err
	}
	reps := make([]*replica, o.Replicas)
	for i := range reps {
		rp := &replica{store: control.NewStore(), seen: make(chan time.Time, 1)}
		rp.store.OnChange(func() {
			rp.mu.Lock()
			sub := rp.want
			rp.mu.Unlock()
			if sub == "" {
				return
			}
			if _, ok := rp.store.Check("bench", event.Principal{Subject: sub}, "files", "echo", time.Now()); ok {
				rp.mu.Lock()
				if rp.want == sub {
					rp.want = ""
					rp.seen <- time.Now()
				}
				rp.mu.Unlock()
			}
		})
		fcfg := o.Kafka
		fcfg.ClientID = fmt.Sprintf("bench-gateway-%d", i+1)
		f, err := control.NewFollower(fcfg, names.Control, rp.store, nil, o.Log, extra...)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		wg.Go(func() { _ = f.Run(rctx) })
		if err := f.WaitReady(ctx); err != nil {
			return nil, fmt.Errorf("replica %d: %w", i+1, err)
		}
		gw, err := mcp.NewRouter(mcp.Config{Tenant: "bench", Observer: fmt.Sprintf("bench-gateway-%d", i+1)},
			[]mcp.Route{{Name: "files", Prefix: "/mcp", URL: upstream + "/mcp"}}, auth,
			mcp.PublisherFunc(func(context.Context, *event.Event) {}), rp.store, prometheus.NewRegistry(), o.Log)
		if err != nil {
			return nil, err
		}
		defer gw.Close()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		hs := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() { _ = hs.Serve(ln) })
		defer func() { _ = hs.Close() }()
		rp.url = "http://" + ln.Addr().String() + "/mcp"
		reps[i] = rp
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()

	res := &ResponseResult{PerReplica: make([][]time.Duration, o.Replicas), HTTPPerReplica: make([][]time.Duration, o.Replicas)}
	for i := -warm; i < o.Findings; i++ {
		sub := fmt.Sprintf("bench-user-%d", i+warm)
		for _, rp := range reps {
			rp.mu.Lock()
			rp.want = sub
			select { // a late signal of the previous round
			case <-rp.seen:
			default:
			}
			rp.mu.Unlock()
		}
		now := time.Now()
		f := &event.Finding{ID: event.NewID(), Time: now.UTC(), Tenant: "bench", Principal: event.Principal{Subject: sub},
			Detector: "bench", Score: 95, Severity: 9, Summary: "bench finding", WindowStart: now, WindowEnd: now}
		rec, err := kafkaio.RecordOf(names.Findings, event.PrincipalKey(f.Tenant, f.Principal), f)
		if err != nil {
			return nil, err
		}
		// The subject's calls are served before the finding (checked), then each replica's HTTP
		// gateway is called every 2 ms until it refuses one.
		for j, rp := range reps {
			if refusedHTTP(ctx, hc, rp.url, responseToken(i+warm)) {
				return nil, fmt.Errorf("replica %d refused %s before the finding", j+1, sub)
			}
		}
		t0 := time.Now()
		httpAt := make([]chan time.Duration, len(reps))
		for j, rp := range reps {
			httpAt[j] = make(chan time.Duration, 1)
			go func() {
				for time.Since(t0) < o.Timeout && ctx.Err() == nil {
					if refusedHTTP(ctx, hc, rp.url, responseToken(i+warm)) {
						httpAt[j] <- time.Since(t0)
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
				httpAt[j] <- -1
			}()
		}
		cl.Produce(ctx, rec, nil) // timed from the hand-over, as a detector's producer would
		var last time.Duration
		lost := false
		for j, rp := range reps {
			select {
			case at := <-rp.seen:
				d := at.Sub(t0)
				if i >= 0 {
					res.PerReplica[j] = append(res.PerReplica[j], d)
				}
				last = max(last, d)
			case <-time.After(o.Timeout - time.Since(t0)):
				lost = true
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if i >= 0 {
			if lost {
				res.Lost++
			} else {
				res.Everywhere = append(res.Everywhere, last)
			}
		}
		var lastHTTP time.Duration
		for j := range reps {
			d := <-httpAt[j]
			if d < 0 {
				lastHTTP = -1
				break
			}
			if i >= 0 {
				res.HTTPPerReplica[j] = append(res.HTTPPerReplica[j], d)
			}
			lastHTTP = max(lastHTTP, d)
		}
		if i >= 0 {
			if lastHTTP < 0 {
				res.HTTPLost++
			} else {
				res.HTTPEverywhere = append(res.HTTPEverywhere, lastHTTP)
			}
		}
		time.Sleep(o.Interval)
	}
	if len(res.Everywhere) == 0 {
		return res, errors.New("bench response: no revocation reached every replica")
	}
	writeResponseReport(o.Out, &o, res)
	return res, nil
}

func writeResponseReport(w io.Writer, o *ResponseOptions, res *ResponseResult) {
	fmt.Fprintf(w, "finding → revocation enforced (respond stage, %d gateway replicas following the control topic), %d findings, %s apart\n",
		o.Replicas, o.Findings, o.Interval)
	fmt.Fprintf(w, "%-22s %6s %9s %9s %9s %9s\n", "where", "n", "p50_ms", "p90_ms", "p99_ms", "max_ms")
	row := func(name string, lat []time.Duration) {
		s := slices.Clone(lat)
		slices.Sort(s)
		mx := time.Duration(0)
		if len(s) > 0 {
			mx = s[len(s)-1]
		}
		fmt.Fprintf(w, "%-22s %6d %9s %9s %9s %9s\n", name, len(s), fmtMS(percentile(s, 50)), fmtMS(percentile(s, 90)),
			fmtMS(percentile(s, 99)), fmtMS(mx))
	}
	for i, lat := range res.PerReplica {
		row(fmt.Sprintf("replica %d store", i+1), lat)
	}
	row("every replica's store", res.Everywhere)
	for i, lat := range res.HTTPPerReplica {
		row(fmt.Sprintf("replica %d HTTP", i+1), lat)
	}
	row("every replica's HTTP", res.HTTPEverywhere)
	fmt.Fprintf(w, "lost (not enforced within %s): %d in the stores, %d over HTTP\n", o.Timeout, res.Lost, res.HTTPLost)
}

// responseToken is the static bearer token of bench principal i.
func responseToken(i int) string { return fmt.Sprintf("bench-response-token-%08d-0123456789", i) }

// refusedHTTP reports whether the gateway at url refuses a ping with token (no session: the
// upstream opens none, and answers it with an error the gateway passes on), i.e. whether the
// revocation is enforced there. Transport errors count as not refused (the call is retried).
func refusedHTTP(ctx context.Context, hc *http.Client, url, token string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized
}
