package demo

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/app"
	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/detectors"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/gateway"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/internal/table"
	"github.com/mcpwatch/mcpwatch/processors"
	"github.com/mcpwatch/mcpwatch/response"
	"github.com/mcpwatch/mcpwatch/response/notify"
	"github.com/mcpwatch/mcpwatch/storage"
	"github.com/mcpwatch/mcpwatch/storage/sink"
)

// Tenant is the demo's tenant.
const Tenant = "acme"

// Policy is deploy/local/demo-policy.yaml (a test keeps the copies identical): analysts may
// query and list acme-data, and e-mail only what carries no personal data.
//
//go:embed demo-policy.yaml
var Policy []byte

// Playbooks are the demo's response playbooks.
//
//go:embed demo-playbooks.yaml
var Playbooks []byte

// Catalog and Directory are deploy/local/catalog.yaml and directory.yaml (a test keeps the copies
// identical): the data classes and sensitivity of acme-data's tools, and the directory entries of
// the well-behaved principals (the scraper is not listed).
var (
	//go:embed demo-catalog.yaml
	Catalog []byte
	//go:embed demo-directory.yaml
	Directory []byte
)

// Options configure [Run].
type Options struct {
	// Config holds the shared settings (Kafka, ClickHouse) and the components' sections; Run
	// sets the demo's own gateway, enrichment and webhook in it.
	Config      *app.Config
	Out         io.Writer
	Log         *slog.Logger
	Registry    *prometheus.Registry
	Health      *obs.Health
	MetricsAddr string // "" serves no metrics
	// Migrate creates the ClickHouse schema (as the administrator), printing what it did.
	Migrate func(ctx context.Context, out io.Writer) error
	// ReadOnly is the account the forensic SQL runs as.
	ReadOnly storage.Options
	Users    []string // well-behaved principals
	Scraper  string   // the misbehaving one
	// DocsUser calls acme-docs in the third act; DocsServer is the command line that serves
	// acme-docs on stdio ([ServeDocsStdio]), launched by the gateway in a sandbox. Empty: no act 3.
	DocsUser   string
	DocsServer []string
	Calls      int           // tool calls per well-behaved principal
	Gap        time.Duration // pause between their calls
	Timeout    time.Duration // give up after this long
}

// Run is `mcpwatch demo`: it migrates ClickHouse, starts every component in one process — the
// gateway in front of a demo MCP server (official Go SDK), and a webhook receiver — drives
// traffic through the gateway (principals working normally and one that starts scraping), waits
// until mcpwatch has detected the scraper, sent a signed webhook, revoked it and refused its next
// call, and prints the forensic SQL it runs as the read-only user with the results. As root with
// cgroup v2 and eBPF it then runs a third act ([kernelAct]): a compromised sandboxed server seen
// in the kernel and quarantined; without them it prints "act 3 skipped: <reason>". It returns an
// error if any of that did not happen.
func Run(ctx context.Context, o Options) error {
	out := o.Out
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	began := time.Now().UTC().Truncate(time.Second)
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	say("== 1. ClickHouse schema")
	if err := o.Migrate(ctx, out); err != nil {
		return err
	}

	say("\n== 2. Demo MCP server, webhook receiver, pipeline and gateway")
	upstream, err := Serve(ctx, Handler())
	if err != nil {
		return err
	}
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte(RandomHex(16)))
	webhooks := make(chan response.Delivery, 64)
	rc, err := response.NewReceiver(secret, func(_ context.Context, d response.Delivery) error {
		select {
		case webhooks <- d:
		default:
		}
		return nil
	}, o.Log)
	if err != nil {
		return err
	}
	hookURL, err := Serve(ctx, rc)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "mcpwatch-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Act 3 needs root, cgroup v2 and eBPF; without them the demo says why and skips it.
	act3 := kernelActReady(o.DocsServer, o.Log)
	if o.DocsUser == "" {
		act3 = errors.New("no --docs-user")
	}
	principals := append(append([]string{}, o.Users...), o.Scraper)
	if act3 == nil {
		principals = append(principals, o.DocsUser)
	}
	// The gateway's principals: static bearer tokens from a tokens file, as in development.
	users := map[string]User{}
	var tokens strings.Builder
	for _, name := range principals {
		u := User{Name: name, Token: "demo_" + RandomHex(20)}
		users[name] = u
		fmt.Fprintf(&tokens, "- token: %s\n  sub: %s\n  client_id: demo-agent\n  roles: [analyst]\n", u.Token, name)
	}
	files := map[string][]byte{"tokens.yaml": []byte(tokens.String()), "demo-policy.yaml": Policy,
		"catalog.yaml": Catalog, "directory.yaml": Directory, "playbooks.yaml": Playbooks}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	if err := liftRevocations(ctx, o.Config, principals); err != nil {
		return err
	}

	// Every component in one process, configured as `mcpwatch run --config` would be; the demo's
	// audit spool lives beside its policy: durable delivery as in production.
	cfg := o.Config
	proc := cfg.Section(string(processors.Type)).(*processors.Config)
	proc.CatalogFile, proc.DirectoryFile = filepath.Join(dir, "catalog.yaml"), filepath.Join(dir, "directory.yaml")
	// The response decides under playbooks; their notifications go to the demo's webhook receiver.
	rsp := cfg.Section(string(response.TypeRespond)).(*response.Config)
	rsp.WebhookURL, rsp.Playbooks = "", filepath.Join(dir, "playbooks.yaml")
	rsp.Channels = []notify.Channel{{Name: "soc", Type: notify.TypeWebhook, URL: hookURL + "/webhook", Secret: component.SecretValue(secret)}}
	gwc := cfg.Section(string(gateway.Type)).(*gateway.Config)
	gwc.Listen, gwc.Upstream, gwc.ServerName, gwc.Tenant = "127.0.0.1:0", upstream+"/mcp", "acme-data", Tenant
	if act3 == nil {
		if err := docsUpstreams(gwc, upstream+"/mcp", o.DocsServer, filepath.Join(dir, "home")); err != nil {
			return err
		}
	}
	gwc.Auth.TokensFile = filepath.Join(dir, "tokens.yaml")
	gwc.Policy.File = filepath.Join(dir, "demo-policy.yaml")
	gwc.Spool.Dir = filepath.Join(dir, "spool")
	// The demo's clients reach the gateway over loopback and say where they are with
	// X-Forwarded-For, as clients behind the company's proxy would.
	gwc.TrustedProxies = []string{"127.0.0.1/32"}
	// A short demo cannot wait an hour for a baseline: each principal's history earns the
	// confidence its own baseline needs in 20 s and 8 calls here (production: 1 h and 50).
	det := cfg.Section(string(detectors.Type)).(*detectors.Config)
	det.UEBA.FullConfidenceSpan, det.UEBA.FullConfidenceCalls = 20*time.Second, 8
	types := []component.Type{processors.Type, sink.Type, detectors.Type, response.TypeRespond, response.TypeNotify, gateway.Type}
	p, err := app.Build(ctx, cfg, types, app.Host{Logger: o.Log, Registerer: o.Registry, Health: o.Health})
	if err != nil {
		return err
	}
	gatewayURL := p.Component(gateway.Type).(*gateway.Gateway).URL()
	pctx, stopPipeline := context.WithCancel(context.WithoutCancel(ctx))
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(pctx) }()
	defer func() { stopPipeline(); <-pdone }()
	metricsAddr, err := obs.Serve(ctx, o.MetricsAddr, o.Registry, o.Health, o.Log)
	if err != nil {
		return err
	}
	for o.Health.Ready() != nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("pipeline not ready: %w", o.Health.Ready())
		case err := <-pdone:
			pdone <- err
			return fmt.Errorf("pipeline stopped: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	say("upstream MCP server  %s/mcp (official Go SDK)", upstream)
	if act3 == nil {
		say("sandboxed MCP server %s at %s: stdio, cgroup v2 sandbox per session, eBPF probes, egress allow-list empty", DocsServerName, docsRoute)
	}
	say("mcpwatch gateway     %s  (tenant %s, %d principals, policy deploy/local/demo-policy.yaml, masking on, audit spool)", gatewayURL, Tenant, len(users))
	say("enrichment           catalog deploy/local/catalog.yaml, directory deploy/local/directory.yaml")
	say("webhook receiver     %s/webhook (verifies Standard Webhooks signatures)", hookURL)
	say("kafka                %s  topics %s.*", strings.Join(cfg.Kafka.Brokers, ","), cfg.Kafka.TopicPrefix)
	say("clickhouse           %s  database %s", cfg.ClickHouse.Addr, cfg.ClickHouse.Database)
	if metricsAddr != "" {
		say("metrics              http://%s/metrics  (while the demo runs)", metricsAddr)
	}

	victim := o.Users[len(o.Users)/2]
	thief := Machine{Client: "mcp-python-client", Version: "1.9.0", UserAgent: "python-httpx/0.27.2", Addr: "203.0.113.50"}
	say("\n== 3. Traffic: %v work normally from the office network; %s starts scraping;", o.Users, o.Scraper)
	say("     later %s's token is used from another machine (%s %s, %s, %s) at %s's own pace",
		victim, thief.Client, thief.Version, thief.UserAgent, thief.Addr, victim)
	rep := &Report{Calls: map[string]int{}, Refused: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(users)+1)
	for i, name := range o.Users {
		wg.Go(func() {
			if err := Normal(ctx, gatewayURL, users[name], Workstation(users[name], fmt.Sprintf("10.20.0.%d", 11+i)), o.Calls, o.Gap, rep, &mu); err != nil {
				errs <- err
			}
		})
	}
	wg.Go(func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * o.Gap):
		}
		if err := Scraper(ctx, gatewayURL, users[o.Scraper], Workstation(users[o.Scraper], "10.20.0.99"), 5000, rep, &mu); err != nil {
			errs <- err
		}
	})
	wg.Go(func() {
		// Once the victim has a baseline (see FullConfidenceSpan above), while it still works.
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(o.Calls) * o.Gap * 4 / 5):
		}
		if err := Thief(ctx, gatewayURL, users[victim], thief, 10, o.Gap*2, rep, &mu); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	for _, name := range append(append([]string{}, o.Users...), o.Scraper) {
		say("%-8s %4d calls answered, %d refused", name, rep.Calls[name], rep.Refused[name])
	}
	say("%s's client was told: %s", o.Scraper, rep.RefusalError)
	if rep.PolicyDenied > 0 {
		say("%s's %d attempts to e-mail data out were denied by policy: %s", o.Scraper, rep.PolicyDenied, rep.PolicyError)
	}
	say("the stolen token: %d calls answered, %d refused; its client was told: %s", rep.ThiefCalls, rep.ThiefRefused, rep.ThiefError)

	say("\n== 4. Alert webhooks (one line each: what, and why)")
	first := map[string]response.Delivery{}
	for len(first) < 2 {
		select {
		case hook := <-webhooks:
			sub := hook.Payload.Data.Finding.Principal.Subject
			if _, seen := first[sub]; seen || (sub != o.Scraper && sub != victim) {
				continue
			}
			first[sub] = hook
			f := hook.Payload.Data.Finding
			say("webhook %s (signature verified) about %s: score %.0f/100, %s/%s", hook.ID, sub, f.Score, f.Detector, f.Check)
			say("  why: %s", f.Explanation)
			for _, a := range hook.Payload.Data.Actions {
				say("  action: %s %s %s", a.Kind, a.Status, a.Target)
			}
		case <-ctx.Done():
			return fmt.Errorf("webhooks about %s and %s did not both arrive (got %d)", o.Scraper, victim, len(first))
		}
	}
	say("%s: finding → first refused call: %s (measured at the client)", o.Scraper,
		rep.FirstRefusal.Sub(first[o.Scraper].Payload.Data.Finding.Time).Round(time.Millisecond))
	if rep.ThiefRefused == 0 {
		return fmt.Errorf("the stolen token of %s was never refused", victim)
	}

	say("\n== 5. Forensic SQL (as the read-only user %s; paste into `bin/mcpwatch query`)", o.ReadOnly.User)
	since := began.Format("2006-01-02 15:04:05")
	if err := waitForRows(ctx, o.ReadOnly, fmt.Sprintf(
		"SELECT count() FROM %s.actions FINAL WHERE tenant = '%s' AND time >= toDateTime('%s', 'UTC') AND kind = 'revoke'",
		cfg.ClickHouse.Database, Tenant, since)); err != nil {
		return err
	}
	if err := waitForRows(ctx, o.ReadOnly, fmt.Sprintf(
		"SELECT count() FROM %s.events FINAL WHERE tenant = '%s' AND subject = '%s' AND result = 'denied' AND time >= toDateTime('%s', 'UTC')",
		cfg.ClickHouse.Database, Tenant, o.Scraper, since)); err != nil {
		return err
	}
	db := cfg.ClickHouse.Database
	queries := []string{
		fmt.Sprintf(`SELECT subject, countIf(direction = 'request') AS requests, countIf(result = 'denied') AS denied,
       countIf(result = 'error') AS errors, groupUniqArrayIf(tool, tool != '') AS tools, min(time) AS first_seen, max(time) AS last_seen
FROM %s.events FINAL
WHERE tenant = '%s' AND time >= toDateTime('%s', 'UTC')
GROUP BY subject ORDER BY requests DESC`, db, Tenant, since),
		fmt.Sprintf(`SELECT subject, department, peer_group,
       attr_values[indexOf(attr_keys, 'directory.status')] AS directory, groupUniqArrayArray(data_classes) AS classes,
       round(max(sensitivity), 2) AS max_sensitivity, count() AS events
FROM %s.events FINAL
WHERE tenant = '%s' AND method = 'tools/call' AND time >= toDateTime('%s', 'UTC')
GROUP BY subject, department, peer_group, directory ORDER BY subject`, db, Tenant, since),
		fmt.Sprintf(`SELECT time, subject, detector, check, round(score) AS score, explanation
FROM %s.findings FINAL
WHERE tenant = '%s' AND time >= toDateTime('%s', 'UTC') AND subject IN ('%s', '%s')
ORDER BY time_ms LIMIT 1 BY subject, detector, check`, db, Tenant, since, o.Scraper, victim),
		fmt.Sprintf(`-- why is %s at its score? (the cookbook's why-this-score)
SELECT toString(time) AS scored_at, score, e.detector, e.check, e.feature, e.observed, e.baseline, e.baseline_source,
       e.contribution, e.detail
FROM (SELECT * FROM %s.scores FINAL WHERE tenant = '%s' AND subject = '%s' AND time >= toDateTime('%s', 'UTC')
      ORDER BY score DESC, time_ms DESC LIMIT 1)
ARRAY JOIN evidence AS e`, victim, db, Tenant, victim, since),
		fmt.Sprintf(`-- what the response did, who decided it and why (playbook decisions, notifications)
SELECT time, kind, status, target, actor, reason, attempts, round(latency_ms) AS latency_ms
FROM %s.actions FINAL
WHERE tenant = '%s' AND time >= toDateTime('%s', 'UTC')
ORDER BY time_ms LIMIT 6`, db, Tenant, since),
		fmt.Sprintf(`SELECT time, direction, method, tool, result, policy_rule, error_code, arguments_masked
FROM %s.events FINAL
WHERE tenant = '%s' AND subject = '%s' AND time >= toDateTime('%s', 'UTC')
ORDER BY time_ms DESC LIMIT 6`, db, Tenant, o.Scraper, since),
		fmt.Sprintf(`SELECT cef
FROM %s.events FINAL
WHERE tenant = '%s' AND subject = '%s' AND result = 'denied' AND time >= toDateTime('%s', 'UTC')
ORDER BY time_ms LIMIT 1`, db, Tenant, o.Scraper, since),
	}
	for _, q := range queries {
		say("\n%s;", q)
		if err := query(ctx, o.ReadOnly, out, q); err != nil {
			return err
		}
	}
	section := 6
	if act3 == nil {
		if err := kernelAct(ctx, out, gatewayURL, users[o.DocsUser], o.ReadOnly, db, time.Now().UTC().Truncate(time.Second).Format("2006-01-02 15:04:05")); err != nil {
			return fmt.Errorf("act 3: %w", err)
		}
		section++
	} else {
		say("\nact 3 skipped: %v", act3)
	}
	say("\n== %d. Pipeline metrics (from /metrics)", section)
	if err := printStageMetrics(out, o.Registry); err != nil {
		return err
	}

	say("\n== Done. The data stays in ClickHouse; explore it with:")
	say(`  bin/mcpwatch query "SELECT signature, count() FROM %s.events GROUP BY signature"`, db)
	say("  deploy/local/stack.sh clickhouse ro        # interactive client as the read-only user")
	say("  deploy/local/stack.sh stop                 # when finished")
	return nil
}

// RandomHex returns n random bytes in hex: unguessable tokens and ids for one run.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Serve runs h on a fresh loopback port until ctx ends and returns its base URL.
func Serve(ctx context.Context, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	return "http://" + ln.Addr().String(), nil
}

// liftRevocations publishes tombstones for the demo principals' revocations, behaviour profiles
// and their peer groups' profiles from an earlier demo run, so every run shows learning,
// detection and enforcement from the start (an earlier run's stolen-token traffic would
// otherwise be part of the victim's history).
func liftRevocations(ctx context.Context, cfg *app.Config, subjects []string) error {
	cl, err := kafkaio.NewClient(cfg.KafkaConfig("mcpwatch-demo"))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := app.Bootstrap(ctx, cfg); err != nil {
		return err
	}
	var recs []*kgo.Record
	for _, sub := range subjects {
		key := event.Control{Kind: event.ControlRevoke, Scope: event.ScopeSubject, Tenant: Tenant, Value: sub}.Key()
		recs = append(recs, &kgo.Record{Topic: cfg.Topics().Control, Key: []byte(key)},
			&kgo.Record{Topic: cfg.Topics().Profiles, Key: []byte(event.ScoreKey(Tenant, sub))})
	}
	for _, group := range []string{"finance-analysts", "sales-analysts", "analyst"} { // see demo-directory.yaml
		recs = append(recs, &kgo.Record{Topic: cfg.Topics().Profiles, Key: []byte(event.ScoreKey(Tenant, "peer:"+group))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("lift earlier demo revocations: %w", err)
	}
	return nil
}

// waitForRows polls a count() query as the read-only user until it is positive.
func waitForRows(ctx context.Context, ro storage.Options, sql string) error {
	conn, err := storage.Open(ctx, ro)
	if err != nil {
		return err
	}
	defer conn.Close()
	for {
		_, rows, err := storage.QueryTable(ctx, conn, sql)
		if err == nil && len(rows) == 1 {
			if n, _ := strconv.Atoi(rows[0][0]); n > 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q: %w (last error: %v)", sql, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// printStageMetrics prints each stage's record counters and the gateway's audit counters.
func printStageMetrics(out io.Writer, reg prometheus.Gatherer) error {
	mfs, err := reg.Gather()
	if err != nil {
		return err
	}
	type row struct{ in, out, dead float64 }
	stages := map[string]*row{}
	get := func(stage string) *row {
		if stages[stage] == nil {
			stages[stage] = &row{}
		}
		return stages[stage]
	}
	var produced, failed float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			stage := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" {
					stage = l.GetValue()
				}
			}
			v := m.GetCounter().GetValue()
			switch mf.GetName() {
			case "mcpwatch_stage_records_in_total":
				get(stage).in += v
			case "mcpwatch_stage_records_out_total":
				get(stage).out += v
			case "mcpwatch_stage_dead_letters_total":
				get(stage).dead += v
			case "mcpwatch_gateway_audit_produced_total", "mcpwatch_gateway_audit_replayed_total":
				produced += v
			case "mcpwatch_gateway_audit_failed_total", "mcpwatch_gateway_audit_dropped_total":
				failed += v
			}
		}
	}
	rows := [][]string{{"gateway", "-", fmt.Sprint(produced), "-", fmt.Sprint(failed)}}
	for _, typ := range []component.Type{processors.Type, sink.Type, detectors.Type, response.TypeRespond, response.TypeNotify} {
		if name := string(typ); stages[name] != nil {
			r := stages[name]
			rows = append(rows, []string{name, fmt.Sprint(r.in), fmt.Sprint(r.out), fmt.Sprint(r.dead), "0"})
		}
	}
	return table.WriteText(out, []string{"stage", "records_in", "records_out", "dead_lettered", "audit_lost"}, rows)
}

// query runs sql as ro and prints the result as a table.
func query(ctx context.Context, ro storage.Options, out io.Writer, sql string) error {
	conn, err := storage.Open(ctx, ro)
	if err != nil {
		return err
	}
	defer conn.Close()
	cols, rows, err := storage.QueryTable(ctx, conn, sql)
	if err != nil {
		return err
	}
	return table.WriteText(out, cols, rows)
}
