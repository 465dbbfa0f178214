package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/demo"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/scores"
	"github.com/mcpwatch/mcpwatch/internal/spool"
	"github.com/mcpwatch/mcpwatch/policy"
)

// benchCmd holds the performance benchmarks that need real servers: they print figures and never
// fail on timing, only on errors (performance targets do not belong in timed unit tests).
func benchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Performance benchmarks against real servers (print figures)"}
	cmd.AddCommand(benchGatewayCmd(g), benchPipelineCmd(g))
	return cmd
}

// gatewayBench configures `mcpwatch bench gateway`.
type gatewayBench struct {
	rates      []int
	duration   time.Duration
	warmup     time.Duration
	conns      int
	modes      []string
	cpuProfile string
	maxErrors  float64
	slice      time.Duration
}

func benchGatewayCmd(g *globals) *cobra.Command {
	b := &gatewayBench{}
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Latency the gateway adds to tools/call over a direct connection, with auth, policy, masking and audit on",
		Long: `Starts a stateless MCP upstream on loopback per --modes (a minimal endpoint answering like the
demo's db_query, or the demo server on the official Go SDK) and a gateway in front of each with static-token auth, a 50-rule policy, masking, and the durable audit
publisher producing to the real Kafka (--kafka) under a fresh topic prefix, spooling to a
temporary directory. It then sends the same tools/call bytes open-loop at each rate to both the
upstream (direct) and the gateway, interleaved request by request, each target receiving the
full rate. Latency is measured from each request's scheduled send time (no coordinated
omission) to the end of its response body. Exits non-zero if more than --max-error-rate of the
calls of any target fail.`,
		RunE: func(cmd *cobra.Command, _ []string) error { return b.run(cmd, g) },
	}
	f := cmd.Flags()
	f.IntSliceVar(&b.rates, "rates", []int{500, 2000}, "calls per second sent to each target")
	f.DurationVar(&b.duration, "duration", 10*time.Second, "measured time per rate and mode")
	f.DurationVar(&b.warmup, "warmup", 2*time.Second, "unmeasured load before each measurement")
	f.IntVar(&b.conns, "conns", 256, "concurrent HTTP connections per target")
	f.StringSliceVar(&b.modes, "modes", []string{"json"}, "upstreams: json or sse (a minimal endpoint answering application/json or text/event-stream), sdk-json or sdk-sse (the demo server on the official Go SDK, stateless)")
	f.StringVar(&b.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole process (gateway, upstream and load generator) to this file")
	f.Float64Var(&b.maxErrors, "max-error-rate", 0.01, "fail when a target's error rate exceeds this fraction")
	f.DurationVar(&b.slice, "slice", 0, "instead of sending to both targets at once, alternate them in slices of this length (each still gets --duration at the full rate): halves the machine's load, for rates where two targets at once saturate it")
	return cmd
}

// benchToken is the static bearer token of the benchmark principal.
const benchToken = "bench-token-0123456789abcdef"

// benchBody is the JSON-RPC tools/call both targets receive, in the stateless 2026-07-28 shape.
// The SQL names an owner's e-mail address so that masking has something to find.
func benchBody(id int) []byte {
	return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"db_query",`+
		`"arguments":{"sql":"SELECT region, revenue FROM sales WHERE owner = 'kim.minji@acme.example' AND quarter = '2026-Q3' ORDER BY revenue DESC LIMIT 20"},`+
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",`+
		`"io.modelcontextprotocol/clientInfo":{"name":"mcpwatch-bench","version":"1"},`+
		`"io.modelcontextprotocol/clientCapabilities":{}}}}`, id)
}

// benchPolicy is a policy of 50 rules in the demo's spirit: the allowing rule for the benchmark's
// call sits among deny rules, other servers' and roles' rules, IP ranges and time windows.
func benchPolicy() string {
	var b strings.Builder
	b.WriteString(`version: 1
defaults:
  decision: deny
rules:
  - id: no-pii-email
    effect: deny
    resource: "tool:*/send_email"
    actions: [call]
    conditions:
      - data_class: [pii]
  - id: no-secret-anywhere
    effect: deny
    resource: "tool:*/*"
    actions: [call]
    conditions:
      - data_class: [secret]
  - id: analysts-acme-list
    resource: "tool:acme-data/*"
    actions: [list]
    principals: [role:analyst]
  - id: analysts-email
    resource: "tool:acme-data/send_email"
    actions: [call]
    principals: [role:analyst]
    conditions:
      - data_class: {none_of: [pii, secret]}
      - max_risk: 100
`)
	for i := range 45 {
		fmt.Fprintf(&b, `  - id: team-%02d-tools
    resources: ["tool:svc-%02d/read_*", "tool:svc-%02d/list_*"]
    actions: [call]
    principals: [role:team-%02d]
    conditions:
      - ip_range: ["10.%d.0.0/16", "192.168.%d.0/24"]
      - time: "07:00-22:00"
        timezone: Asia/Seoul
        days: [mon-fri]
      - max_risk: 70
`, i, i, i, i, i, i)
	}
	b.WriteString(`  - id: analysts-acme-data
    resources: ["tool:acme-data/db_query", "tool:acme-data/file_read"]
    actions: [call]
    principals: [role:analyst]
    conditions:
      - ip_range: ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]
      - max_risk: 80
`)
	return b.String()
}

func (b *gatewayBench) run(cmd *cobra.Command, g *globals) error {
	if b.duration <= 0 || b.conns <= 0 || len(b.rates) == 0 {
		return errors.New("bench gateway: --duration, --conns and --rates must be positive")
	}
	for _, r := range b.rates {
		if r <= 0 {
			return fmt.Errorf("bench gateway: rate %d must be positive", r)
		}
	}
	ctx := cmd.Context()
	log := g.log
	if !log.Enabled(ctx, slog.LevelDebug) {
		// The gateway logs per refused call; keep the figures readable.
		log = slog.New(slog.DiscardHandler)
	}
	env, err := startBenchEnv(ctx, g, b.modes, log)
	if err != nil {
		return err
	}
	defer env.close(g)
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "upstream: per mode (json/sse: minimal stateless endpoint; sdk-*: demo acme-data on the Go SDK, stateless); gateway: static token, %d-rule policy, masking, durable audit to Kafka %s topic %s\n",
		env.rules, g.kafka, env.topics.Raw)
	schedule := "interleaved per request"
	if b.slice > 0 {
		schedule = fmt.Sprintf("alternating in %s slices", b.slice)
	}
	fmt.Fprintf(out, "load: open loop, each target at the given rate, %s; %d connections per target; warm-up %s, measured %s\n\n",
		schedule, b.conns, b.warmup, b.duration)

	if b.cpuProfile != "" {
		f, err := os.Create(b.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(out, "load average at the start (1, 5, 15 min): %s; %d CPUs\n\n", strings.Join(strings.Fields(string(la))[:3], " "), runtime.NumCPU())
	}
	var rows []benchRow
	for _, rate := range b.rates {
		for _, mode := range b.modes {
			targets := []benchTarget{
				{name: "direct", url: env.upstream[mode]},
				{name: "gateway", url: env.gateway[mode]},
			}
			if _, err := runOpenLoop(ctx, targets, rate, b.warmup, b.conns, b.slice); err != nil {
				return err
			}
			res, err := runOpenLoop(ctx, targets, rate, b.duration, b.conns, b.slice)
			if err != nil {
				return err
			}
			for i, t := range targets {
				rows = append(rows, benchRow{rate: rate, mode: mode, target: t.name, sum: summarize(res[i].lat, res[i].errs, b.duration)})
			}
		}
	}
	writeBenchTable(out, rows)
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(out, "\nload average at the end (1, 5, 15 min): %s", strings.Join(strings.Fields(string(la))[:3], " "))
	}
	st := env.dp.Healthy()
	fmt.Fprintf(out, "\n\naudit publisher healthy: %v; spool records: %d\n", st == nil, env.sp.Len())
	var bad []string
	for _, r := range rows {
		if n := r.sum.n + r.sum.errors; n > 0 && float64(r.sum.errors)/float64(n) > b.maxErrors {
			bad = append(bad, fmt.Sprintf("%d/s %s %s: %d of %d failed", r.rate, r.mode, r.target, r.sum.errors, n))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("bench gateway: error rate above %.1f%%: %s (first error: %v)", b.maxErrors*100, strings.Join(bad, "; "), firstErr.get())
	}
	return nil
}

// benchResult is the db_query tool's result, as the demo server answers it.
const benchResult = `"result":{"content":[{"type":"text","text":"region,revenue\nAPAC,1200000\nEMEA,980000\n"}]}}`

// rawUpstream is a minimal stateless MCP endpoint that answers every POST with the demo
// db_query's result for the request's id, as JSON or as one server-sent event. It costs the
// machine next to nothing, so the load that the figures measure is the gateway's.
func rawUpstream(sse bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID json.RawMessage `json:"id"`
		}
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&req) != nil || len(req.ID) == 0 {
			http.Error(w, "want a JSON-RPC request", http.StatusBadRequest)
			return
		}
		msg := make([]byte, 0, 256)
		msg = append(msg, `{"jsonrpc":"2.0","id":`...)
		msg = append(msg, req.ID...)
		msg = append(msg, ',')
		msg = append(msg, benchResult...)
		if sse {
			w.Header().Set("Content-Type", "text/event-stream")
			msg = append(append([]byte("event: message\ndata: "), msg...), "\n\n"...)
		} else {
			w.Header().Set("Content-Type", "application/json")
		}
		_, _ = w.Write(msg)
	})
}

// benchEnv is the upstream, the gateways in front of it and the audit path.
type benchEnv struct {
	rules             int
	topics            event.Topics
	upstream, gateway map[string]string // by mode
	servers           []*http.Server
	gws               []*mcp.Gateway
	dp                *mcp.DurablePublisher
	sp                *spool.Spool
	spoolDir          string
	cl                interface{ Close() }
	deleteTopics      func()
}

func serveLoopback(h http.Handler) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, "http://" + ln.Addr().String() + "/mcp", nil
}

func startBenchEnv(ctx context.Context, g *globals, modes []string, log *slog.Logger) (_ *benchEnv, err error) {
	env := &benchEnv{upstream: map[string]string{}, gateway: map[string]string{}}
	defer func() {
		if err != nil {
			env.close(g)
		}
	}()
	pol, err := policy.Load(strings.NewReader(benchPolicy()), "bench-policy.yaml")
	if err != nil {
		return nil, fmt.Errorf("bench policy: %w", err)
	}
	env.rules = pol.Len()

	// Kafka: fresh topics under a unique prefix, deleted afterwards.
	env.topics = event.TopicNames(fmt.Sprintf("mcpwatch-bench-%d", time.Now().UnixNano()))
	cl, err := kafkaio.NewClient(g.kafkaConfig("mcpwatch-bench-gateway"))
	if err != nil {
		return nil, err
	}
	env.cl = cl
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(env.topics, g.partitions, g.replication, 1)); err != nil {
		return nil, fmt.Errorf("bench topics: %w", err)
	}
	env.deleteTopics = func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := kadm.NewClient(cl).DeleteTopics(dctx, env.topics.All()...); err != nil {
			g.log.Warn("bench: delete topics", "err", err)
		}
	}
	if env.spoolDir, err = os.MkdirTemp("", "mcpwatch-bench-spool-"); err != nil {
		return nil, err
	}
	if env.sp, err = spool.Open(env.spoolDir); err != nil {
		return nil, err
	}
	if env.dp, err = mcp.NewDurablePublisher(cl, env.sp, env.topics.Raw, mcp.WithDurableLogger(log)); err != nil {
		return nil, err
	}

	srv := demo.Server()
	for _, mode := range modes {
		var h http.Handler
		switch mode {
		case "json", "sse":
			h = rawUpstream(mode == "sse")
		case "sdk-json", "sdk-sse":
			h = sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv },
				&sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: mode == "sdk-json"})
		default:
			return nil, fmt.Errorf("bench gateway: mode %q: want json, sse, sdk-json or sdk-sse", mode)
		}
		up, upURL, err := serveLoopback(h)
		if err != nil {
			return nil, err
		}
		env.servers = append(env.servers, up)
		env.upstream[mode] = upURL

		cfg := mcp.Config{
			Upstream: upURL, ServerName: "acme-data", Observer: "bench",
			Tokens: []mcp.StaticToken{{Token: benchToken,
				Principal: event.Principal{Subject: "alice", ClientID: "mcpwatch-bench", Roles: []string{"analyst"}}}},
			Policy: pol,
			Scores: scores.ZeroWhenAbsent{Store: scores.NewStore()},
			DataClasses: map[string][]string{
				"tool:db_query": {"internal"},
			},
		}
		auth, err := mcp.NewAuthenticator(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		gw, err := mcp.New(cfg, auth, env.dp, control.NewStore(), nil, log)
		if err != nil {
			return nil, err
		}
		env.gws = append(env.gws, gw)
		gsrv, gwURL, err := serveLoopback(gw)
		if err != nil {
			return nil, err
		}
		env.servers = append(env.servers, gsrv)
		env.gateway[mode] = gwURL
	}
	return env, nil
}

func (env *benchEnv) close(g *globals) {
	for _, s := range env.servers {
		_ = s.Close()
	}
	for _, gw := range env.gws {
		gw.Close()
	}
	if env.dp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := env.dp.Close(ctx); err != nil {
			g.log.Warn("bench: close audit publisher", "err", err)
		}
		cancel()
	}
	if env.sp != nil {
		_ = env.sp.Close()
	}
	if env.deleteTopics != nil {
		env.deleteTopics()
	}
	if env.cl != nil {
		env.cl.Close()
	}
	if env.spoolDir != "" {
		_ = os.RemoveAll(env.spoolDir)
	}
}

// benchTarget is one endpoint the load generator calls.
type benchTarget struct {
	name, url string
}

// targetResult holds one target's latencies (successful calls only) and error count.
type targetResult struct {
	lat  []time.Duration
	errs int
}

// firstErr remembers the first failure, for the error message.
var firstErr errOnce

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
// target is charged for the calls queued behind the stall (no coordinated omission).
func runOpenLoop(ctx context.Context, targets []benchTarget, rate int, d time.Duration, conns int, slice time.Duration) ([]targetResult, error) {
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

// benchRow is one line of the report.
type benchRow struct {
	rate   int
	mode   string
	target string
	sum    latencySummary
}

// added returns, for a gateway row, the direct row of the same rate and mode, so that the report
// can show gateway − direct.
func added(rows []benchRow, r benchRow) (benchRow, bool) {
	if r.target != "gateway" {
		return benchRow{}, false
	}
	for _, d := range rows {
		if d.target == "direct" && d.rate == r.rate && d.mode == r.mode {
			return d, true
		}
	}
	return benchRow{}, false
}

func fmtMS(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

// writeBenchTable prints the rows, latencies in milliseconds, with the gateway's added p50 and p99.
func writeBenchTable(w io.Writer, rows []benchRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate/s\tmode\ttarget\tachieved/s\tcalls\terrors\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tadded p50\tadded p99\t")
	for _, r := range rows {
		a50, a99 := "", ""
		if d, ok := added(rows, r); ok {
			a50, a99 = fmtMS(r.sum.p50-d.sum.p50), fmtMS(r.sum.p99-d.sum.p99)
		}
		s := r.sum
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.0f\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.rate, r.mode, r.target, s.achieved,
			s.n, s.errors, fmtMS(s.p50), fmtMS(s.p90), fmtMS(s.p99), fmtMS(s.p999), fmtMS(s.maxLat), a50, a99)
	}
	_ = tw.Flush()
}
