package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
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

// GatewayModes are the upstreams [GatewayOptions.Modes] may name: json or sse, a minimal
// endpoint answering application/json or text/event-stream; sdk-json or sdk-sse, the demo
// server on the official Go SDK, stateless.
var GatewayModes = []string{"json", "sse", "sdk-json", "sdk-sse"}

// GatewayOptions configure [RunGateway]. The benchmark settings have no defaults here: the
// command's flags supply them.
type GatewayOptions struct {
	Rates        []int         // calls per second sent to each target, one measurement per rate
	Duration     time.Duration // measured time per rate and mode
	Warmup       time.Duration // unmeasured load before each measurement
	Conns        int           // concurrent HTTP connections per target
	Modes        []string      // upstreams, from [GatewayModes]
	CPUProfile   string        // write a CPU profile of the whole process here; empty: none
	MaxErrorRate float64       // fail when a target's error rate exceeds this fraction
	// Slice, when positive, alternates the targets in slices of this length instead of sending
	// to both at once (each still gets Duration at the full rate).
	Slice time.Duration

	// Kafka is where the gateway's audit publisher produces; its ClientID is replaced.
	Kafka kafkaio.Config
	// TopicPrefix starts the names of the fresh topics the benchmark creates and deletes;
	// "mcpwatch-bench" when empty.
	TopicPrefix string
	Partitions  int32
	Replication int16
	// Log receives the benchmark's warnings; the gateway logs to it only at debug level (it
	// logs per refused call otherwise).
	Log *slog.Logger // nil: discard
	Out io.Writer    // the report; nil: discard
}

// validate refuses settings the load generator cannot run with, and fills in Log and Out.
func (o *GatewayOptions) validate() error {
	o.Log, o.Out = orDiscard(o.Log, o.Out)
	if o.Duration <= 0 || o.Conns <= 0 || len(o.Rates) == 0 {
		return errors.New("bench gateway: --duration, --conns and --rates must be positive")
	}
	for _, r := range o.Rates {
		if r <= 0 {
			return fmt.Errorf("bench gateway: rate %d must be positive", r)
		}
	}
	return nil
}

// RunGateway measures the latency the gateway adds to tools/call over a direct connection. Per
// mode it starts a stateless MCP upstream on loopback and a gateway in front of it with
// static-token auth, a 50-rule policy, masking and the durable audit publisher producing to
// Kafka under fresh topics, spooling to a temporary directory; then it sends the same tools/call
// bytes open-loop at each rate to both the upstream (direct) and the gateway, and prints a table
// of latency percentiles with the gateway's added p50 and p99. It fails when more than
// MaxErrorRate of the calls of any target fail.
func RunGateway(ctx context.Context, o GatewayOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	gwLog := o.Log
	if !gwLog.Enabled(ctx, slog.LevelDebug) {
		// The gateway logs per refused call; keep the figures readable.
		gwLog = slog.New(slog.DiscardHandler)
	}
	env, err := startGatewayEnv(ctx, &o, gwLog)
	if err != nil {
		return err
	}
	defer env.close(o.Log)
	out := o.Out
	fmt.Fprintf(out, "upstream: per mode (json/sse: minimal stateless endpoint; sdk-*: demo acme-data on the Go SDK, stateless); gateway: static token, %d-rule policy, masking, durable audit to Kafka %s topic %s\n",
		env.rules, strings.Join(o.Kafka.Brokers, ","), env.topics.Raw)
	schedule := "interleaved per request"
	if o.Slice > 0 {
		schedule = fmt.Sprintf("alternating in %s slices", o.Slice)
	}
	fmt.Fprintf(out, "load: open loop, each target at the given rate, %s; %d connections per target; warm-up %s, measured %s\n\n",
		schedule, o.Conns, o.Warmup, o.Duration)

	stop, err := startCPUProfile(o.CPUProfile)
	if err != nil {
		return err
	}
	defer stop()
	if la, ok := loadAverage(); ok {
		fmt.Fprintf(out, "load average at the start (1, 5, 15 min): %s; %d CPUs\n\n", la, runtime.NumCPU())
	}
	var firstErr errOnce
	var rows []gatewayRow
	for _, rate := range o.Rates {
		for _, mode := range o.Modes {
			targets := []target{
				{name: "direct", url: env.upstream[mode]},
				{name: "gateway", url: env.gateway[mode]},
			}
			if _, err := runOpenLoop(ctx, targets, rate, o.Warmup, o.Conns, o.Slice, &firstErr); err != nil {
				return err
			}
			res, err := runOpenLoop(ctx, targets, rate, o.Duration, o.Conns, o.Slice, &firstErr)
			if err != nil {
				return err
			}
			for i, t := range targets {
				rows = append(rows, gatewayRow{rate: rate, mode: mode, target: t.name, sum: summarize(res[i].lat, res[i].errs, o.Duration)})
			}
		}
	}
	writeGatewayTable(out, rows)
	if la, ok := loadAverage(); ok {
		fmt.Fprintf(out, "\nload average at the end (1, 5, 15 min): %s", la)
	}
	st := env.dp.Healthy()
	fmt.Fprintf(out, "\n\naudit publisher healthy: %v; spool records: %d\n", st == nil, env.sp.Len())
	if bad := overErrorRate(rows, o.MaxErrorRate); len(bad) > 0 {
		return fmt.Errorf("bench gateway: error rate above %.1f%%: %s (first error: %v)", o.MaxErrorRate*100, strings.Join(bad, "; "), firstErr.get())
	}
	return nil
}

// overErrorRate describes the rows whose share of failed calls exceeds max.
func overErrorRate(rows []gatewayRow, max float64) []string {
	var bad []string
	for _, r := range rows {
		if n := r.sum.n + r.sum.errors; n > 0 && float64(r.sum.errors)/float64(n) > max {
			bad = append(bad, fmt.Sprintf("%d/s %s %s: %d of %d failed", r.rate, r.mode, r.target, r.sum.errors, n))
		}
	}
	return bad
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

// gatewayEnv is the upstream, the gateways in front of it and the audit path.
type gatewayEnv struct {
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

// upstreamHandler is the MCP upstream of one mode.
func upstreamHandler(mode string, srv *sdk.Server) (http.Handler, error) {
	switch mode {
	case "json", "sse":
		return rawUpstream(mode == "sse"), nil
	case "sdk-json", "sdk-sse":
		return sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv },
			&sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: mode == "sdk-json"}), nil
	}
	return nil, fmt.Errorf("bench gateway: mode %q: want json, sse, sdk-json or sdk-sse", mode)
}

func startGatewayEnv(ctx context.Context, o *GatewayOptions, gwLog *slog.Logger) (_ *gatewayEnv, err error) {
	env := &gatewayEnv{upstream: map[string]string{}, gateway: map[string]string{}}
	defer func() {
		if err != nil {
			env.close(o.Log)
		}
	}()
	pol, err := policy.Load(strings.NewReader(benchPolicy()), "bench-policy.yaml")
	if err != nil {
		return nil, fmt.Errorf("bench policy: %w", err)
	}
	env.rules = pol.Len()

	// Kafka: fresh topics under a unique prefix, deleted afterwards.
	env.topics = event.TopicNames(fmt.Sprintf("%s-%d", topicPrefix(o.TopicPrefix), time.Now().UnixNano()))
	kc := o.Kafka
	kc.ClientID = "mcpwatch-bench-gateway"
	cl, err := kafkaio.NewClient(kc)
	if err != nil {
		return nil, err
	}
	env.cl = cl
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(env.topics, o.Partitions, o.Replication, 1)); err != nil {
		return nil, fmt.Errorf("bench topics: %w", err)
	}
	env.deleteTopics = func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := kadm.NewClient(cl).DeleteTopics(dctx, env.topics.All()...); err != nil {
			o.Log.Warn("bench: delete topics", "err", err)
		}
	}
	if env.spoolDir, err = os.MkdirTemp("", "mcpwatch-bench-spool-"); err != nil {
		return nil, err
	}
	if env.sp, err = spool.Open(env.spoolDir); err != nil {
		return nil, err
	}
	if env.dp, err = mcp.NewDurablePublisher(cl, env.sp, env.topics.Raw, mcp.WithDurableLogger(gwLog)); err != nil {
		return nil, err
	}

	srv := demo.Server()
	for _, mode := range o.Modes {
		h, err := upstreamHandler(mode, srv)
		if err != nil {
			return nil, err
		}
		up, upURL, err := serveLoopback(h)
		if err != nil {
			return nil, err
		}
		env.servers = append(env.servers, up)
		env.upstream[mode] = upURL

		gw, err := newGateway(ctx, upURL, pol, env.dp, gwLog)
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

// newGateway builds the gateway under test in front of upstream: static-token auth for the
// benchmark principal (an analyst), the policy, masking, scores that are zero for everyone, and
// audit through dp. It is the one place the harness builds a gateway.
func newGateway(ctx context.Context, upstream string, pol *policy.Policy, dp *mcp.DurablePublisher, log *slog.Logger) (*mcp.Gateway, error) {
	cfg := mcp.Config{
		Upstream: upstream, ServerName: "acme-data", Observer: "bench",
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
	return mcp.New(cfg, auth, dp, control.NewStore(), nil, log)
}

func (env *gatewayEnv) close(log *slog.Logger) {
	for _, s := range env.servers {
		_ = s.Close()
	}
	for _, gw := range env.gws {
		gw.Close()
	}
	if env.dp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := env.dp.Close(ctx); err != nil {
			log.Warn("bench: close audit publisher", "err", err)
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

// topicPrefix is the start of the benchmark's fresh topic names.
func topicPrefix(p string) string {
	if p == "" {
		return "mcpwatch-bench"
	}
	return p
}
