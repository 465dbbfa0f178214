// Package live runs `mcpwatch eval --live`: the labelled evaluation of package eval driven
// through the real pipeline on loopback — Kafka, the process, detect and sink stages, ClickHouse,
// and the gateway in front of MCP servers of the official Go SDK — instead of in process. The
// generated clean history is published to the raw topic as the gateway would have published it;
// the test phase is real MCP traffic through the gateway, in real time; the findings and scores
// are read back from ClickHouse as the read-only user and judged by the same code as offline.
// It is a host: it builds stages (internal/archtest).
package live

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/app"
	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/detectors"
	"github.com/mcpwatch/mcpwatch/eval"
	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/ingest/gateway"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/internal/demo"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/internal/pins"
	"github.com/mcpwatch/mcpwatch/processors"
	"github.com/mcpwatch/mcpwatch/storage"
	"github.com/mcpwatch/mcpwatch/storage/sink"
)

// Options of a live evaluation.
type Options struct {
	// Config holds Kafka, ClickHouse and the detect section; Run sets its own topic prefix,
	// consumer groups, process and gateway settings in it.
	Config *app.Config
	// TopicPrefix is the run's topic and consumer-group prefix; "" makes a fresh one, whose
	// topics are deleted at the end.
	TopicPrefix string
	// Migrate creates or updates the ClickHouse schema of the configured database.
	Migrate  func(ctx context.Context, out io.Writer) error
	ReadOnly storage.Options // the account results are read as
	Log      *slog.Logger    // the pipeline's; nil: silent

	Seed       uint64
	Principals int
	History    time.Duration
	Test       time.Duration  // the live test window (the first part of the generated test phase)
	PerKind    int            // attack instances per kind (generator default when 0)
	Kinds      []traffic.Kind // the kinds to run; empty: all
	Split      traffic.Split
	// Drain bounds each wait for the pipeline to catch up (default 3 minutes).
	Drain time.Duration

	Out      io.Writer // progress and the table; nil: none
	JSONFile string
}

// Result is a live run: the report, as offline, and what only a live run can tell.
type Result struct {
	Report *eval.Report
	Tenant string // the run's tenant: every row it stored carries it
	Cut    Cut
	// HistoryEvents are the raw events published for the history; Calls the test-phase calls
	// issued through the gateway, Refused those the client got an error for (policy denials).
	HistoryEvents, Calls, Refused int
	// Audited is the test phase's request events in ClickHouse (of the calls' methods);
	// ToolChanges the gateway's tool-change events.
	Audited, ToolChanges int
	// LatencyP50, LatencyP95: seconds from a test-phase finding's event time until a reader
	// polling ClickHouse (every 200 ms) saw it stored; LatencyFindings how many that is over.
	LatencyP50, LatencyP95 float64
	LatencyFindings        int
}

// pinMode is how the gateway treats a changed tool here: audited, not blocked, as the offline
// driver's tool-change event says.
const pinMode = pins.Audit

// Run runs one live evaluation.
func Run(ctx context.Context, o Options) (*Result, error) {
	began := time.Now()
	if o.Drain == 0 {
		o.Drain = 3 * time.Minute
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	full, err := traffic.Generate(traffic.Config{Seed: o.Seed, Principals: o.Principals, History: o.History, PerKind: o.PerKind, Split: o.Split})
	if err != nil {
		return nil, err
	}
	d, cut, err := Window(full, o.Test, o.Kinds)
	if err != nil {
		return nil, err
	}
	id := demo.RandomHex(4)
	res := &Result{Tenant: "eval-" + id, Cut: cut}
	hist, test := split(d)
	say("live eval seed %d: %d principals, %d history calls (%s), %d test calls in %s, %d attack instances, tenant %s",
		o.Seed, len(d.Principals), len(hist), o.History, len(test), o.Test, len(d.Instances), res.Tenant)

	if err := o.Migrate(ctx, out); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mcpwatch-eval-live-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	toks := newTokens(res.Tenant, test)
	ups := newServers(d.Calls)
	upURL, err := demo.Serve(ctx, ups.handler())
	if err != nil {
		return nil, err
	}
	pinFile := filepath.Join(dir, "pins.json")
	if err := ups.pin(pinFile); err != nil {
		return nil, err
	}
	files := map[string][]byte{"catalog.yaml": traffic.CatalogYAML(), "directory.yaml": traffic.DirectoryYAML(d.Principals),
		"policy.yaml": traffic.PolicyYAML(), "tokens.yaml": toks.file()}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}

	prefix := o.TopicPrefix
	if prefix == "" {
		prefix = "mcpwatch-eval-" + id
		defer deleteTopics(o.Config, log)
	}
	cfg := o.Config
	cfg.Kafka.TopicPrefix, cfg.Kafka.GroupPrefix = prefix, prefix
	proc := cfg.Section(string(processors.Type)).(*processors.Config)
	proc.CatalogFile, proc.DirectoryFile = filepath.Join(dir, "catalog.yaml"), filepath.Join(dir, "directory.yaml")
	gwc := cfg.Section(string(gateway.Type)).(*gateway.Config)
	gwc.Listen, gwc.Tenant, gwc.Upstream = "127.0.0.1:0", res.Tenant, ""
	gwc.Upstreams = nil
	for _, name := range ups.names() {
		gwc.Upstreams = append(gwc.Upstreams, gateway.Upstream{Name: name, Route: "/" + name + "/mcp", URL: upURL + "/" + name + "/mcp"})
	}
	gwc.Auth = gateway.Auth{TokensFile: filepath.Join(dir, "tokens.yaml")}
	gwc.Policy.File, gwc.Policy.None = filepath.Join(dir, "policy.yaml"), false
	gwc.Spool.Dir = filepath.Join(dir, "spool")
	gwc.ToolPins.File, gwc.ToolPins.Mode = pinFile, string(pinMode)
	// The driver is the clients' proxy: it forwards each call's source address.
	gwc.TrustedProxies = []string{"127.0.0.1"}
	health := obs.NewHealth()
	types := []component.Type{processors.Type, sink.Type, detectors.Type, gateway.Type}
	p, err := app.Build(ctx, cfg, types, app.Host{Logger: log, Registerer: prometheus.NewRegistry(), Health: health})
	if err != nil {
		return nil, err
	}
	// URL names the first route; the gateway serves every route under its address.
	gu, err := url.Parse(p.Component(gateway.Type).(*gateway.Gateway).URL())
	if err != nil {
		return nil, err
	}
	gwURL := gu.Scheme + "://" + gu.Host
	pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(pctx) }()
	defer func() { stop(); <-pdone }()
	for health.Ready() != nil {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("pipeline not ready: %w", health.Ready())
		case err := <-pdone:
			pdone <- err
			return nil, fmt.Errorf("pipeline stopped: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	say("pipeline: topics %s.*, process + detect + sink, gateway %s in front of %d MCP servers, ClickHouse %s/%s",
		prefix, gwURL, len(ups.names()), cfg.ClickHouse.Addr, cfg.ClickHouse.Database)

	// History: the dataset moved so that it ends now, published as the gateway would have.
	k, err := newKafka(cfg)
	if err != nil {
		return nil, err
	}
	defer k.close()
	histShift := time.Now().Truncate(time.Millisecond).Sub(d.TestStart)
	t0 := time.Now()
	res.HistoryEvents, err = k.publishHistory(ctx, hist, histShift, res.Tenant, toks)
	if err != nil {
		return nil, err
	}
	if err := k.waitDrained(ctx, o.Drain, prefix, processors.Type, detectors.Type); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	say("history: %d raw events published and consumed by the detect stage in %s", res.HistoryEvents, time.Since(t0).Round(100*time.Millisecond))

	// Test phase: real calls through the gateway, each at its time.
	testShift := time.Now().Add(2 * time.Second).Truncate(time.Millisecond).Sub(d.TestStart)
	say("test phase: %d calls through the gateway over %s, from %s", len(test), o.Test, d.TestStart.Add(testShift).Format(time.TimeOnly))
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	seen, err := watchFindings(wctx, o.ReadOnly, cfg.ClickHouse.Database, res.Tenant, d.TestStart.Add(testShift))
	if err != nil {
		return nil, err
	}
	cs := drive(ctx, gwURL, test, testShift, toks, ups, log)
	res.Calls, res.Refused = cs.issued, cs.refused
	if cs.failed > 0 {
		return nil, fmt.Errorf("test phase: %d calls failed beyond a refusal (first: %v)", cs.failed, cs.firstErr)
	}
	if err := k.waitDrained(ctx, o.Drain, prefix, processors.Type, detectors.Type, sink.Type); err != nil {
		return nil, fmt.Errorf("test phase: %w", err)
	}

	time.Sleep(time.Second) // the watcher's last look, after the sink's last write
	stopWatch()
	st, err := readStored(ctx, o.ReadOnly, cfg.ClickHouse.Database, res.Tenant, d.TestStart.Add(testShift), seen())
	if err != nil {
		return nil, err
	}
	res.Audited, res.ToolChanges = st.audited, st.toolChanges
	res.LatencyP50, res.LatencyP95, res.LatencyFindings = eval.Quantile(st.latencies, 0.5), eval.Quantile(st.latencies, 0.95), len(st.latencies)
	// Back to the dataset's time, where the labels are: the test phase and the history were
	// moved by different amounts.
	realTest := d.TestStart.Add(testShift)
	back := func(t time.Time) time.Time {
		if t.Before(realTest) {
			return t.Add(-histShift)
		}
		return t.Add(-testShift)
	}
	for i := range st.findings {
		st.findings[i].Time = back(st.findings[i].Time)
	}
	for i := range st.scores {
		st.scores[i].Time = back(st.scores[i].Time)
	}
	w := eval.LabelWindows(d)
	sr := eval.SeedResult{Seed: o.Seed, Calls: len(d.Calls), Events: res.HistoryEvents + st.events, Findings: len(st.findings), Scores: len(st.scores)}
	for _, l := range w.Label {
		if l {
			sr.Positives++
		} else {
			sr.Negatives++
		}
	}
	sr.Detector = eval.JudgeDetector(d, w, st.findings, st.scores)
	sr.Took = time.Since(began).Seconds()
	res.Report = eval.NewReport(o.Split, "live", []eval.SeedResult{sr})
	if o.Out != nil {
		res.Report.Print(o.Out)
		res.print(o.Out)
	}
	if o.JSONFile != "" {
		b, err := json.MarshalIndent(res.Report, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(o.JSONFile, b, 0o644); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// print writes what only a live run measures, and what its window did to the scenarios.
func (r *Result) print(w io.Writer) {
	fmt.Fprintf(w, "\nlive: %d test calls issued through the gateway (%d refused), %d request events audited in ClickHouse, %d tool-change events\n",
		r.Calls, r.Refused, r.Audited, r.ToolChanges)
	fmt.Fprintf(w, "live: pipeline latency, event time → finding seen in ClickHouse (polled every 200 ms): p50 %s s, p95 %s s over %d findings\n",
		fmtS(r.LatencyP50), fmtS(r.LatencyP95), r.LatencyFindings)
	fmt.Fprint(w, "live: instances started in the window, by kind (cut short at its end):")
	for _, k := range traffic.Kinds {
		if n := r.Cut.Kept[k]; n > 0 {
			fmt.Fprintf(w, " %s %d (%d)", k, n, r.Cut.Truncated[k])
		}
	}
	fmt.Fprintln(w)
}

func fmtS(x float64) string {
	if math.IsNaN(x) {
		return "—"
	}
	return fmt.Sprintf("%.2f", x)
}

// split is d's history and test-phase calls.
func split(d *traffic.Dataset) (hist, test []traffic.Call) {
	i, _ := slices.BinarySearchFunc(d.Calls, d.TestStart, func(c traffic.Call, t time.Time) int { return c.Time.Compare(t) })
	return d.Calls[:i], d.Calls[i:]
}

// tokens are the static bearer tokens of the run: one per generated token id, so a stolen token
// is the same credential from another client, as generated. Events carry the gateway's token id
// (a fingerprint of the token), so the history's events are given the same.
type tokens struct {
	tenant  string
	secret  map[string]string // by generated token id
	entries []string
}

func newTokens(tenant string, test []traffic.Call) *tokens {
	t := &tokens{tenant: tenant, secret: map[string]string{}}
	for i := range test {
		c := &test[i]
		if _, ok := t.secret[c.TokenID]; ok {
			continue
		}
		s := t.of(c.TokenID)
		t.secret[c.TokenID] = s
		t.entries = append(t.entries, fmt.Sprintf("- token: %s\n  sub: %q\n  client_id: %q\n  roles: [%s]\n", s, c.Subject, c.ClientID, strings.Join(c.Roles, ", ")))
	}
	return t
}

// of is the bearer token standing for a generated token id in this run.
func (t *tokens) of(tokenID string) string {
	sum := sha256.Sum256([]byte(t.tenant + "/" + tokenID))
	return "evl_" + hex.EncodeToString(sum[:20])
}

// id is the token id the gateway gives the token of a generated token id.
func (t *tokens) id(tokenID string) string { return mcp.TokenID(mcp.HashToken(t.of(tokenID))) }

func (t *tokens) file() []byte { return []byte(strings.Join(t.entries, "")) }

var errNotDrained = errors.New("the pipeline did not catch up")
