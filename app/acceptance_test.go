package app_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/app"
	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/gateway"
	"github.com/mcpwatch/mcpwatch/internal/demo"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	"github.com/mcpwatch/mcpwatch/response"
	"github.com/mcpwatch/mcpwatch/storage"
)

// TestAcceptance is the foundation's end-to-end proof on real Kafka, real ClickHouse and the
// official Go MCP SDK on both sides of the gateway: every call lands in ClickHouse with its
// principal, method, tool, outcome and a parseable CEF line; a burst from one principal yields a
// finding, a webhook whose signature verifies, a control record, and the gateway's refusal of
// that principal's next call.
func TestAcceptance(t *testing.T) {
	brokers := testenv.Kafka(t)
	che := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	db := "mcpwatch_test_" + testenv.Unique(t)
	admin, err := storage.Open(ctx, storage.Options{Addr: che.Addr, User: che.AdminUser, Password: che.AdminPassword})
	if err != nil {
		testenv.Missing(t, "ClickHouse", err.Error())
	}
	t.Cleanup(func() { _ = admin.Close() }) // after the drop below: cleanups run last first
	if err := storage.CreateDatabase(ctx, admin, db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := storage.DropDatabase(context.Background(), admin, db); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if _, err := storage.Migrate(ctx, admin, db); err != nil {
		t.Fatal(err)
	}

	upstream := httptest.NewServer(demo.Handler())
	defer upstream.Close()
	secret := "whsec_" + base64.StdEncoding.EncodeToString(randomBytes(32))
	hooks := make(chan response.Delivery, 16)
	rc, err := response.NewReceiver(secret, func(_ context.Context, d response.Delivery) error {
		hooks <- d
		return nil
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	hookSrv := httptest.NewServer(rc)
	defer hookSrv.Close()

	// The gateway's static tokens, from a tokens file as a deployment gives them.
	users := map[string]demo.User{}
	var tokens strings.Builder
	for _, name := range []string{"alice", "bob", "mallory"} {
		users[name] = demo.User{Name: name, Token: "tok_" + base64.RawURLEncoding.EncodeToString(randomBytes(24))}
		fmt.Fprintf(&tokens, "- token: %s\n  sub: %s\n  client_id: acceptance\n  roles: [analyst]\n", users[name].Token, name)
	}
	dir := t.TempDir()
	tokensFile := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokensFile, []byte(tokens.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ACCEPTANCE_WEBHOOK_SECRET", secret)
	t.Setenv("ACCEPTANCE_CH_PASSWORD", che.AdminPassword)
	names := testenv.Topics(t)
	// The whole pipeline from one config file, as `mcpwatch run --config` reads it.
	cfg := app.NewConfig(app.Components())
	src := fmt.Sprintf(`kafka:
  brokers: [%s]
  topic_prefix: %s
  group_prefix: test-%s
  retention_hours: 24
clickhouse:
  addr: %s
  database: %s
  user: %s
  password: {env: ACCEPTANCE_CH_PASSWORD}
process:
  # The demo's enrichment files: mallory is not in the directory.
  catalog_file: ../deploy/local/catalog.yaml
  directory_file: ../deploy/local/directory.yaml
respond:
  webhook_url: %s/hook
  webhook_secret: {env: ACCEPTANCE_WEBHOOK_SECRET}
gateway:
  listen: 127.0.0.1:0
  upstream: %s
  server_name: acme-data
  tenant: acme
  auth: {tokens_file: %s}
  policy: {none: true}
  spool: {dir: %s}
`, strings.Join(brokers, ", "), strings.TrimSuffix(names.Raw, ".raw.v1"), testenv.Unique(t), che.Addr, db, che.AdminUser,
		hookSrv.URL, upstream.URL, tokensFile, filepath.Join(dir, "spool"))
	if err := cfg.Load("acceptance.yaml", []byte(src)); err != nil {
		t.Fatal(err)
	}
	if cfg.Topics() != names {
		t.Fatalf("topics %+v, want %+v", cfg.Topics(), names)
	}
	types := app.RunTypes(cfg)
	if want := []component.Type{"process", "sink", "detect", "respond", "notify", "gateway"}; !slices.Equal(types, want) {
		t.Fatalf("run would start %v, want %v", types, want)
	}
	p, err := app.Build(ctx, cfg, types, app.Host{Logger: log, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	gw := p.Component(gateway.Type).(*gateway.Gateway)
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("pipeline shutdown: %v", err)
		}
	}()

	// Normal traffic first: a few spaced calls each.
	rep := &demo.Report{Calls: map[string]int{}, Refused: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range []string{"alice", "bob"} {
		wg.Go(func() {
			if err := demo.Normal(ctx, gw.URL(), users[name], demo.Workstation(users[name], ""), 4, 200*time.Millisecond, rep, &mu); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if rep.Calls["alice"] != 4 || rep.Calls["bob"] != 4 || rep.Refused["alice"]+rep.Refused["bob"] != 0 {
		t.Fatalf("normal traffic through the gateway failed: %+v", rep)
	}

	// Every normal call is in ClickHouse: request and response, with principal, method, tool,
	// outcome and CEF.
	for _, name := range []string{"alice", "bob"} {
		q := fmt.Sprintf(`SELECT count() FROM %s.events FINAL WHERE subject = '%s' AND method = 'tools/call'`, db, name)
		waitCount(ctx, t, admin, q, 8) // 4 requests + 4 responses
		_, rows, err := storage.QueryTable(ctx, admin, fmt.Sprintf(`SELECT direction, tool, result, client_id, cef
			FROM %s.events FINAL WHERE subject = '%s' AND method = 'tools/call' ORDER BY time_ms`, db, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			dir, tool, result, client, cef := r[0], r[1], r[2], r[3], r[4]
			if tool != "db_query" && tool != "file_read" || result != "allowed" || client != "acceptance" {
				t.Errorf("%s: stored event lost its meaning: %v", name, r[:4])
			}
			h, ext, err := parseCEF(cef)
			if err != nil {
				t.Fatalf("CEF does not parse: %v\n%s", err, cef)
			}
			if h[1] != "mcpwatch" || ext["suser"] != name || ext["act"] != "tools/call" || ext["cs1"] != tool {
				t.Errorf("CEF disagrees with the event (%s %s): header=%v ext=%v", dir, tool, h, ext)
			}
		}
	}

	// Every stored call is enriched: the catalog's classes and sensitivity, the directory's
	// department and status. If this fails, detectors and dashboards lose the data weights.
	_, rows, err := storage.QueryTable(ctx, admin, fmt.Sprintf(`SELECT tool, arrayStringConcat(data_classes, ','),
		toString(sensitivity), attr_values[indexOf(attr_keys, 'directory.status')], department
		FROM %s.events FINAL WHERE subject = 'alice' AND method = 'tools/call'`, db))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{"db_query": {"finance,pii", "0.7"}, "file_read": {"finance", "0.6"}}
	for _, r := range rows {
		w := want[r[0]]
		if r[1] != w[0] || r[2] != w[1] || r[3] != "known" || r[4] != "finance" {
			t.Errorf("stored event not enriched: got %v, want classes %s sensitivity %s, known, finance", r, w[0], w[1])
		}
	}

	// The burst.
	if err := demo.Scraper(ctx, gw.URL(), users["mallory"], demo.Workstation(users["mallory"], ""), 5000, rep, &mu); err != nil {
		t.Fatal(err)
	}
	refused := rep.FirstRefusal
	if !strings.Contains(rep.RefusalError, "revoked") {
		t.Fatalf("mallory's refusal does not say why: %q", rep.RefusalError)
	}

	var hook response.Delivery
	select {
	case hook = <-hooks:
	case <-ctx.Done():
		t.Fatal("no verified webhook arrived")
	}
	f := hook.Payload.Data.Finding
	if f.Principal.Subject != "mallory" || f.Score < cfg.Section("respond").(*response.Config).Threshold {
		t.Fatalf("webhook finding is not about the burst: %+v", f)
	}
	latency := refused.Sub(f.Time)
	t.Logf("finding → refusal of the next call: %v (mallory made %d calls before)", latency, rep.Calls["mallory"])
	if latency > 5*time.Second {
		t.Errorf("revocation took %v to take effect, want well under 5s (target 1s)", latency)
	}

	// The control record is on the compacted topic under its key.
	ctl := readControl(ctx, t, brokers, names.Control, "revoke/subject/acme/mallory")
	if ctl.FindingID != f.ID || ctl.Reason == "" {
		t.Fatalf("control record does not tie to the finding: %+v", ctl)
	}

	// The refusal is audited as denied, and alice is still served.
	waitCount(ctx, t, admin, fmt.Sprintf(`SELECT count() FROM %s.events FINAL WHERE subject = 'mallory'
		AND result = 'denied' AND policy_rule LIKE 'control:%%'`, db), 1)
	waitCount(ctx, t, admin, fmt.Sprintf(`SELECT count() FROM %s.findings FINAL WHERE subject = 'mallory'`, db), 1)
	waitCount(ctx, t, admin, fmt.Sprintf(`SELECT count() FROM %s.events FINAL WHERE subject = 'mallory'
		AND attr_values[indexOf(attr_keys, 'directory.status')] = 'unknown'`, db), 1)
	waitCount(ctx, t, admin, fmt.Sprintf(`SELECT count() FROM %s.actions FINAL WHERE subject = 'mallory' AND kind = 'revoke' AND status = 'succeeded'`, db), 1)
	waitCount(ctx, t, admin, fmt.Sprintf(`SELECT count() FROM %s.actions FINAL WHERE subject = 'mallory' AND kind = 'webhook' AND status = 'succeeded'`, db), 1)
	if err := demo.Normal(ctx, gw.URL(), users["alice"], demo.Workstation(users["alice"], ""), 1, 0, rep, &mu); err != nil || rep.Calls["alice"] != 5 {
		t.Fatalf("alice was caught by mallory's revocation: %v %+v", err, rep)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// waitCount polls a count() query until it reaches want.
func waitCount(ctx context.Context, t *testing.T, conn driver.Conn, q string, want int) {
	t.Helper()
	var got int
	for {
		_, rows, err := storage.QueryTable(ctx, conn, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		got, _ = strconv.Atoi(rows[0][0])
		if got >= want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: got %d rows, want %d", q, got, want)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readControl(ctx context.Context, t *testing.T, brokers []string, topic, key string) event.Control {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("no control record under %s", key)
		}
		for _, r := range fs.Records() {
			if string(r.Key) != key || len(r.Value) == 0 {
				continue
			}
			var c event.Control
			if err := event.Decode(r.Value, &c); err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
}

// parseCEF splits a CEF line into its seven header fields and its extension map, honouring the
// escapes of the ArcSight spec. It is deliberately separate from the formatter it checks.
func parseCEF(line string) ([]string, map[string]string, error) {
	if !strings.HasPrefix(line, "CEF:") {
		return nil, nil, fmt.Errorf("no CEF: prefix")
	}
	var header []string
	var cur strings.Builder
	i := 0
	for ; i < len(line) && len(header) < 7; i++ {
		switch c := line[i]; {
		case c == '\\' && i+1 < len(line) && (line[i+1] == '|' || line[i+1] == '\\'):
			cur.WriteByte(line[i+1])
			i++
		case c == '|':
			header = append(header, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if len(header) != 7 {
		return nil, nil, fmt.Errorf("%d header fields, want 7", len(header))
	}
	header[0] = strings.TrimPrefix(header[0], "CEF:")
	ext := map[string]string{}
	rest := line[i:]
	// Keys are [A-Za-z0-9_.]+ followed by an unescaped '='; a value runs to the next key.
	var key string
	cur.Reset()
	flush := func() {
		if key != "" {
			ext[key] = strings.TrimRight(cur.String(), " ")
		}
		cur.Reset()
	}
	for j := 0; j < len(rest); j++ {
		c := rest[j]
		if c == '\\' && j+1 < len(rest) {
			switch rest[j+1] {
			case '=', '\\':
				cur.WriteByte(rest[j+1])
			case 'n':
				cur.WriteByte('\n')
			case 'r':
				cur.WriteByte('\r')
			default:
				return nil, nil, fmt.Errorf("bad escape \\%c", rest[j+1])
			}
			j++
			continue
		}
		if c == '=' {
			// The key is the last word before '='.
			s := cur.String()
			k := s[strings.LastIndexByte(s, ' ')+1:]
			if k == "" {
				return nil, nil, fmt.Errorf("unescaped '=' without a key at %d", j)
			}
			val := strings.TrimSuffix(s[:len(s)-len(k)], " ")
			cur.Reset()
			cur.WriteString(val)
			flush()
			key = k
			continue
		}
		cur.WriteByte(c)
	}
	flush()
	return header, ext, nil
}
