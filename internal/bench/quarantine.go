package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/response"
)

// QuarantineOptions configures [RunQuarantine].
type QuarantineOptions struct {
	Kafka       kafkaio.Config
	Partitions  int32
	Replication int16
	Findings    int           // measured findings (default 100)
	Interval    time.Duration // pause after each thaw (default 50ms)
	Timeout     time.Duration // per finding, before it counts as lost (default 10s)
	// Server is the stdio MCP server the gateway runs in a sandbox: its command and arguments,
	// and its whole environment.
	Server    []string
	ServerEnv []string
	// CgroupParent is the sandboxes' parent cgroup (default a fresh "mcpwatch-bench-<random>").
	CgroupParent   string
	Log            *slog.Logger
	Out            io.Writer
	MetadataMinAge time.Duration // lowered for tests; 0 keeps the client default
}

func (o *QuarantineOptions) defaults() {
	if o.Findings == 0 {
		o.Findings = 100
	}
	if o.Interval == 0 {
		o.Interval = 50 * time.Millisecond
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

// QuarantineResult is what [RunQuarantine] measured for each finding: from its hand-over to
// Kafka until the gateway's quarantine action record (the freeze confirmed by cgroup.events),
// and that span split at the control's time into the respond stage's part (finding → control
// decided) and the rest (control → frozen and confirmed: the control topic, the gateway's
// follower and the kernel; the action's latency_ms).
type QuarantineResult struct {
	Frozen  []time.Duration
	Control []time.Duration
	Gateway []time.Duration
	Lost    int
}

// benchPlaybook quarantines the sandbox a finding of detector "bench" names in its evidence.
const benchPlaybook = `playbooks:
  - name: bench-quarantine
    match: {detector: bench, sandbox: "*"}
    actions:
      - quarantine: sandbox
        expire_after: 10m
`

// actionWaiter is the gateway's action publisher: it hands each action record to whoever waits.
type actionWaiter struct {
	ch chan *event.Action
}

func (w *actionWaiter) PublishAction(_ context.Context, a *event.Action) {
	select {
	case w.ch <- a:
	default: // nobody can be waiting for more than a few; a full buffer is a bug the timeout shows
	}
}

// RunQuarantine measures finding → sandbox frozen and confirmed, end to end on the real Kafka and
// real cgroups (needs root and cgroup v2): the respond stage, built by its factory as `mcpwatch
// respond` builds it, decides under a playbook that quarantines the finding's sandbox (evidence
// feature "sandbox"); its control record goes through the control topic to a gateway — an
// [mcp.Router] following the topic, with a sandboxed stdio MCP server (o.Server) whose session
// the benchmark opens with the official Go SDK client — which freezes the sandbox's cgroup and
// records its quarantine action once cgroup.events says frozen 1. For each finding the benchmark
// checks cgroup.events itself, then lifts the quarantine (a tombstone, as `mcpwatch response
// lift` writes) and waits for the thaw before the next finding, so each latency is that of an
// idle pipeline.
func RunQuarantine(ctx context.Context, o QuarantineOptions) (*QuarantineResult, error) {
	o.defaults()
	if len(o.Server) == 0 {
		return nil, errors.New("bench quarantine: no server command to sandbox")
	}
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	run := hex.EncodeToString(rb[:])
	if o.CgroupParent == "" {
		o.CgroupParent = "mcpwatch-bench-" + run
	}
	names := event.TopicNames("bench-quarantine-" + run)
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
	dir, err := os.MkdirTemp("", "mcpwatch-bench-quarantine-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	pbPath := filepath.Join(dir, "playbooks.yaml")
	if err := os.WriteFile(pbPath, []byte(benchPlaybook), 0o600); err != nil {
		return nil, err
	}

	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()

	// The respond stage, as its factory builds it for `mcpwatch respond` with respond.playbooks.
	rcfg := response.DefaultConfig()
	rcfg.Playbooks = pbPath
	set := component.Settings{Type: response.TypeRespond, Logger: o.Log.With("component", "respond"), Registerer: prometheus.NewRegistry(),
		Health: obs.NewHealth(), Topics: names, Kafka: o.Kafka, GroupPrefix: "bench-" + run}
	respond, err := response.NewRespondFactory().Create(ctx, set, &rcfg)
	if err != nil {
		return nil, fmt.Errorf("respond stage: %w", err)
	}
	defer func() { _ = respond.Close() }()
	wg.Go(func() { _ = respond.Run(rctx) })

	// The gateway: a control follower and a router with one sandboxed route.
	m, err := sandbox.NewManager(sandbox.Options{Parent: o.CgroupParent, StopGrace: time.Second, Log: o.Log})
	if err != nil {
		return nil, fmt.Errorf("sandboxes (needs root and cgroup v2): %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = m.Close(cctx)
	}()
	bridge, err := sandbox.NewBridge(m, sandbox.BridgeConfig{
		Spec: sandbox.Spec{Server: "bench", Path: o.Server[0], Args: o.Server[1:], Env: o.ServerEnv,
			Limits: sandbox.Limits{MemoryMax: 512 << 20, PidsMax: 64}},
		Log: o.Log,
	})
	if err != nil {
		return nil, err
	}
	store := control.NewStore()
	fcfg := o.Kafka
	fcfg.ClientID = "bench-gateway"
	fol, err := control.NewFollower(fcfg, names.Control, store, nil, o.Log, extra...)
	if err != nil {
		_ = bridge.Close(ctx)
		return nil, err
	}
	defer fol.Close()
	wg.Go(func() { _ = fol.Run(rctx) })
	const token = "bench-quarantine-token-0123456789"
	auth, err := mcp.NewStaticTokens([]mcp.StaticToken{{Token: token, Principal: event.Principal{Subject: "bench-user"}}})
	if err != nil {
		_ = bridge.Close(ctx)
		return nil, err
	}
	actions := &actionWaiter{ch: make(chan *event.Action, 16)}
	router, err := mcp.NewRouter(mcp.Config{Tenant: "bench", Observer: "bench-gateway", Actions: actions},
		[]mcp.Route{{Name: "bench", Prefix: "/bench/mcp", Bridge: bridge}}, auth,
		mcp.PublisherFunc(func(context.Context, *event.Event) {}), store, prometheus.NewRegistry(), o.Log)
	if err != nil {
		_ = bridge.Close(ctx)
		return nil, err
	}
	defer router.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	wg.Go(func() { _ = hs.Serve(ln) })
	defer func() { _ = hs.Close() }()
	if err := fol.WaitReady(ctx); err != nil {
		return nil, fmt.Errorf("gateway control follower: %w", err)
	}

	// One MCP session: its sandbox is the one the findings name.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := sdk.NewClient(&sdk.Implementation{Name: "mcpwatch-bench", Version: "1"}, nil)
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	cs, err := client.Connect(cctx, &sdk.StreamableClientTransport{Endpoint: "http://" + ln.Addr().String() + "/bench/mcp", MaxRetries: -1,
		HTTPClient: &http.Client{Transport: bearerTransport{token: token, base: tr}}}, nil)
	ccancel()
	if err != nil {
		return nil, fmt.Errorf("MCP session with the sandboxed server: %w", err)
	}
	defer func() { _ = cs.Close() }()
	sbs := m.Sandboxes()
	if len(sbs) != 1 {
		return nil, fmt.Errorf("want one sandbox for the session, have %d", len(sbs))
	}
	sb := sbs[0]

	res := &QuarantineResult{}
	warm := 3
	for i := -warm; i < o.Findings; i++ {
		now := time.Now()
		f := &event.Finding{ID: event.NewID(), Time: now.UTC(), Tenant: "bench", Principal: event.Principal{Subject: "bench-user"},
			Detector: "bench", Score: 95, Severity: 9, Summary: "bench finding on a sandboxed session", WindowStart: now, WindowEnd: now,
			Evidence: []event.Evidence{{Detector: "bench", Feature: "sandbox", ObservedText: sb.ID()}}}
		rec, err := kafkaio.RecordOf(names.Findings, event.PrincipalKey(f.Tenant, f.Principal), f)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		cl.Produce(ctx, rec, nil) // timed from the hand-over, as a detector's producer would
		a, err := waitAction(ctx, actions.ch, o.Timeout-time.Since(t0), func(a *event.Action) bool {
			return a.Kind == event.ActionQuarantine && a.FindingID == f.ID && a.Target == sb.ID()
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if i >= 0 {
				res.Lost++
			}
			o.Log.Warn("bench quarantine: no freeze", "finding", f.ID, "err", err)
			// A late freeze would leave the sandbox frozen and every later finding without effect.
			if err := lift(ctx, cl, names.Control, sb.ID()); err != nil {
				return nil, err
			}
			_, _ = waitAction(ctx, actions.ch, o.Timeout, func(l *event.Action) bool { return l.Kind == event.ActionLift })
			continue
		}
		if a.Status != "succeeded" {
			return nil, fmt.Errorf("finding %s: freeze %s: %s", f.ID, a.Status, a.Detail)
		}
		if frozen, err := cgroupFrozen(sb.CgroupPath()); err != nil || !frozen {
			return nil, fmt.Errorf("finding %s: the gateway recorded a freeze, but cgroup.events says frozen=%v (%v)", f.ID, frozen, err)
		}
		total := a.Time.Sub(t0)
		gw := time.Duration(a.LatencyMS * float64(time.Millisecond))
		if i >= 0 {
			res.Frozen = append(res.Frozen, total)
			res.Gateway = append(res.Gateway, gw)
			res.Control = append(res.Control, total-gw)
		}
		// Lift it, as an operator would, and wait for the thaw before the next finding.
		if err := lift(ctx, cl, names.Control, sb.ID()); err != nil {
			return nil, err
		}
		if _, err := waitAction(ctx, actions.ch, o.Timeout, func(l *event.Action) bool {
			return l.Kind == event.ActionLift && l.ControlID == a.ControlID && l.Status == "succeeded"
		}); err != nil {
			return nil, fmt.Errorf("thaw after finding %s: %w", f.ID, err)
		}
		time.Sleep(o.Interval)
	}
	if len(res.Frozen) == 0 {
		return res, errors.New("bench quarantine: no finding froze the sandbox")
	}
	writeQuarantineReport(o.Out, &o, res)
	return res, nil
}

// lift writes the tombstone of the bench tenant's quarantine of sandbox id, as `mcpwatch
// response lift` does.
func lift(ctx context.Context, cl *kgo.Client, topic, id string) error {
	key := event.Control{Kind: event.ControlQuarantine, Scope: event.ScopeSandbox, Tenant: "bench", Value: id}.Key()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key)}).FirstErr(); err != nil {
		return fmt.Errorf("lift %s: %w", key, err)
	}
	return nil
}

// waitAction returns the first action from ch that want accepts, within d.
func waitAction(ctx context.Context, ch <-chan *event.Action, d time.Duration, want func(*event.Action) bool) (*event.Action, error) {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	for {
		select {
		case a := <-ch:
			if want(a) {
				return a, nil
			}
		case <-t.C:
			return nil, fmt.Errorf("no matching action record within %s", d)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// cgroupFrozen reads the kernel's own word on the cgroup: cgroup.events "frozen 1".
func cgroupFrozen(cgroupPath string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(cgroupPath, "cgroup.events"))
	if err != nil {
		return false, err
	}
	for line := range bytes.Lines(b) {
		if string(bytes.TrimSpace(line)) == "frozen 1" {
			return true, nil
		}
	}
	return false, nil
}

type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

func writeQuarantineReport(w io.Writer, o *QuarantineOptions, res *QuarantineResult) {
	fmt.Fprintf(w, "finding → sandbox frozen and confirmed (respond stage with a quarantine playbook → control topic → gateway router → cgroup.freeze, cgroup.events frozen 1), %d findings\n",
		o.Findings)
	fmt.Fprintf(w, "%-28s %6s %9s %9s %9s %9s\n", "span", "n", "p50_ms", "p90_ms", "p99_ms", "max_ms")
	row := func(name string, lat []time.Duration) {
		s := slices.Clone(lat)
		slices.Sort(s)
		mx := time.Duration(0)
		if len(s) > 0 {
			mx = s[len(s)-1]
		}
		fmt.Fprintf(w, "%-28s %6d %9s %9s %9s %9s\n", name, len(s), fmtMS(percentile(s, 50)), fmtMS(percentile(s, 90)),
			fmtMS(percentile(s, 99)), fmtMS(mx))
	}
	row("finding → control decided", res.Control)
	row("control → frozen (gateway)", res.Gateway)
	row("finding → frozen confirmed", res.Frozen)
	fmt.Fprintf(w, "lost (not frozen within %s): %d\n", o.Timeout, res.Lost)
}
