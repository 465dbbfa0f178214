package sigma_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcpwatch/mcpwatch/detectors/sigma"
	"github.com/mcpwatch/mcpwatch/eval"
	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/chtest"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// peerAnswer is what test/peers/sigma_to_sql.py prints.
type peerAnswer struct {
	Missing    string            `json:"missing"`
	PySigma    string            `json:"pysigma"`
	Backend    string            `json:"backend"`
	Validators string            `json:"validators"`
	Chdb       string            `json:"chdb"`
	Events     int               `json:"events"`
	Overrides  map[string]string `json:"overrides"`
	NotRun     map[string]string `json:"validators_not_run"`
	Views      map[string]string `json:"views"` // logsource category → the view over events its rules read
	Rules      []struct {
		File     string   `json:"file"`
		ID       string   `json:"id"`
		Title    string   `json:"title"`
		SQL      string   `json:"sql"`
		Error    string   `json:"error"`
		IDs      []string `json:"ids"`
		RunError string   `json:"run_error"`
		Skip     string   `json:"skip"` // why the rule's SQL is not compared (correlation rules)
	} `json:"rules"`
	Issues []struct {
		File, ID, Validator, Severity, Description string
		Detail                                     map[string]string
	} `json:"issues"`
}

// validatorAllowed are SigmaHQ validator findings that are expected, each with its reason. A key
// is "Validator" (any file) or "Validator file-base-name" (that file only).
var validatorAllowed = map[string]string{
	// The feature corpus exercises exactly what these style checks discourage.
	"WildcardInsteadOfStartswithIssue mcp_call_empty_and_star.yml": "tests a trailing star as written in older rules",
	"WildcardInsteadOfStartswithIssue mcp_call_text_on_number.yml": "tests a wildcard on a number field, which needs the plain form",
	"EscapedWildcardIssue mcp_call_escaped_wildcards.yml":          "tests escaped wildcards",
	"NumberAsStringIssue mcp_call_numeric_equal.yml":               "tests that a number written as text compares as a number",
	"AllOfThemConditionIssue mcp_call_them.yml":                    "tests all of them / 1 of them with an underscore identifier",
}

// peerDifferences are rules where the engine and pySigma's SQL legitimately select different
// events, each with the events and the reason (docs/sigma.md, "Cross-check with pySigma").
// Keyed by rule file base name; engineOnly and peerOnly list event ids.
var peerDifferences = map[string]struct {
	engineOnly, peerOnly []string
	reason               string
}{
	"mcp_call_cidr.yml": {engineOnly: []string{"edge-ip-mapped"}, reason: "the engine unmaps IPv4-mapped IPv6 " +
		"addresses (::ffff:10.9.9.9 is in 10.0.0.0/8, docs/sigma.md); ClickHouse's isIPAddressInRange compares the " +
		"IPv6 form. The Sigma specification says nothing; mcpwatch's choice stands, since a dual-stack listener " +
		"reports IPv4 clients in the mapped form"},
	"mcp_call_cidr_not.yml": {peerOnly: []string{"edge-ip-mapped-192"}, reason: "as mcp_call_cidr.yml, negated: " +
		"::ffff:192.168.7.7 is inside 192.168.0.0/16 for the engine only"},
}

// server1816Differences are rules whose SQL the 18.16 server answers wrongly, with the reason;
// chDB (a current ClickHouse) is the reference for them.
var server1816Differences = map[string]string{
	"mcp_call_regex_flags.yml": "ClickHouse 18.16's match() ignores the inline (?i) flag: match('UNION', '(?i)union') is 0 there, 1 on current servers",
}

// pySigma, the independent Sigma implementation, converts every corpus rule to SQL with its
// ClickHouse backend; the SQL runs over the same events stored through the real sink in the real
// ClickHouse (and, where 18.16 lacks the functions, on chDB over the rows exported from it). Each
// rule must select exactly the events the engine matches. If this fails, the engine and the
// Sigma reference disagree on a modifier, a wildcard, an escape or a condition: a SOC's rule
// would fire differently in mcpwatch than in its SIEM.
func TestPySigmaCrossCheck(t *testing.T) {
	python := peerPython(t)
	files := peerRuleFiles(t)
	rs, errs := sigma.LoadPaths(files...)
	for _, err := range sigma.Errors(errs) {
		t.Errorf("engine refused a corpus rule: %v", err)
	}
	events := peerEvents(t)
	byID := map[string]*event.Event{}
	engine := map[string][]string{} // rule id → event ids
	for i := range events {
		e := &events[i]
		if byID[e.ID] != nil {
			t.Fatalf("duplicate event id %s", e.ID)
		}
		byID[e.ID] = e
		for _, m := range rs.Match(e) {
			engine[m.RuleID] = append(engine[m.RuleID], e.ID)
		}
	}

	db := chtest.New(t)
	topics := event.TopicNames("sigmapeer")
	db.Store(t, topics, chtest.Records(t, topics.Events, events))
	ctx := context.Background()
	native := exportNative(t, db.Name)

	ans := runPeer(t, python, map[string]any{"rules": files, "native": native, "validate": true})
	if len(ans.Views) < 4 {
		t.Fatalf("the peer names %d logsource views, want mcp_call and the three kernel categories", len(ans.Views))
	}
	for cat, sql := range ans.Views {
		if err := db.Admin.Exec(ctx, "CREATE VIEW "+db.Name+"."+cat+" AS "+strings.Replace(sql, "FROM events", "FROM "+db.Name+".events", 1)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("pySigma %s, pysigma-backend-clickhouse %s, validators %s, chDB %s; %d events exported",
		ans.PySigma, ans.Backend, ans.Validators, ans.Chdb, ans.Events)
	if ans.Events != len(events) {
		t.Errorf("chDB loaded %d events, the corpus has %d", ans.Events, len(events))
	}

	conn := db.Open(t, nil)
	var compared, matches, on1816, chdbOnly int
	seen := map[string]bool{}
	for _, r := range ans.Rules {
		base := filepath.Base(r.File)
		if r.Skip != "" && r.Error == "" {
			t.Logf("%s (%s): read and validated by pySigma; not compared: %s", base, r.ID, r.Skip)
			seen[r.ID] = true
			continue
		}
		if r.Error != "" || r.RunError != "" {
			t.Errorf("%s (%s): pySigma could not convert or run it: %s%s\n%s", base, r.ID, r.Error, r.RunError, r.SQL)
			continue
		}
		seen[r.ID] = true
		compared++
		want := slices.Sorted(slices.Values(engine[r.ID]))
		got := slices.Clone(r.IDs)
		if got == nil {
			got = []string{}
		}
		matches += len(want)
		// The same SQL on the real 18.16 server, where it parses: it must agree too.
		if ids, err := queryIDs(ctx, conn, r.SQL); err == nil {
			on1816++
			if _, known := server1816Differences[base]; !known && !slices.Equal(ids, got) {
				t.Errorf("%s: ClickHouse 18.16 selects %v, chDB %v\n%s", base, ids, got, r.SQL)
			}
		} else {
			chdbOnly++
		}
		engineOnly, peerOnly := diff(want, got), diff(got, want)
		if d, ok := peerDifferences[base]; ok {
			if !slices.Equal(engineOnly, d.engineOnly) || !slices.Equal(peerOnly, d.peerOnly) {
				t.Errorf("%s: known difference changed: engine only %v (documented %v), pySigma only %v (documented %v)",
					base, engineOnly, d.engineOnly, peerOnly, d.peerOnly)
			}
			continue
		}
		if len(engineOnly)+len(peerOnly) > 0 {
			t.Errorf("%s %q: engine and pySigma disagree\n  SQL: %s\n%s%s", base, r.Title, r.SQL,
				describe("matched by the engine only", engineOnly, byID), describe("selected by pySigma only", peerOnly, byID))
		}
	}
	for _, r := range rs.Rules() {
		if !seen[r.ID] {
			t.Errorf("rule %s (%s) was not compared", r.ID, r.Title)
		}
	}
	t.Logf("compared %d rules × %d events: %d engine matches; the SQL of %d rules ran on ClickHouse 18.16 too, %d only on chDB",
		compared, len(events), matches, on1816, chdbOnly)
	for name, why := range ans.Overrides {
		t.Logf("backend override %q: %s", name, why)
	}

	for _, is := range ans.Issues {
		base := filepath.Base(is.File)
		if _, ok := validatorAllowed[is.Validator]; ok {
			continue
		}
		if _, ok := validatorAllowed[is.Validator+" "+base]; ok {
			continue
		}
		if is.Validator == "InvalidNamespaceTagIssue" && strings.HasPrefix(is.Detail["tag"], "atlas.") {
			// SigmaHQ's tag namespaces are those of its own repository; mcpwatch's rules also
			// carry MITRE ATLAS tags (attacks on AI systems), which issue 11 asks for. Any other
			// namespace still fails.
			continue
		}
		t.Errorf("%s (%s): validator %s (%s): %s %v", base, is.ID, is.Validator, is.Severity, is.Description, is.Detail)
	}
	for v, why := range ans.NotRun {
		t.Logf("validator %s not run: %s", v, why)
	}
}

// peerPython is the venv scripts/peers.sh installs pySigma into, or $MCPWATCH_SIGMA_PYTHON.
func peerPython(t *testing.T) string {
	t.Helper()
	python := os.Getenv("MCPWATCH_SIGMA_PYTHON")
	if python == "" {
		python = filepath.Join("..", "..", ".local", "sigma-venv", "bin", "python")
	}
	if _, err := os.Stat(python); err != nil {
		testenv.Missing(t, "pySigma", "no Python at "+python+" (run scripts/peers.sh)")
	}
	return python
}

// peerRuleFiles is the corpus: testdata/peer, and the shipped rules/sigma when it exists.
func peerRuleFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{filepath.Join("testdata", "peer"), filepath.Join("..", "..", "rules", "sigma")} {
		for _, pat := range []string{"*.yml", "*.yaml"} {
			m, err := filepath.Glob(filepath.Join(dir, pat))
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, m...)
		}
	}
	if len(files) == 0 {
		t.Fatal("no corpus rules")
	}
	sort.Strings(files)
	return files
}

func runPeer(t *testing.T, python string, req map[string]any) peerAnswer {
	t.Helper()
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, filepath.Join("..", "..", "test", "peers", "sigma_to_sql.py"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ans peerAnswer
	if jerr := json.Unmarshal(out, &ans); jerr != nil {
		t.Fatalf("sigma_to_sql.py: %v: %v\nstderr: %s", err, jerr, stderr.String())
	}
	if ans.Missing != "" {
		testenv.Missing(t, "pySigma", ans.Missing+" (run scripts/peers.sh)")
	}
	if err != nil {
		t.Fatalf("sigma_to_sql.py: %v\n%s", err, stderr.String())
	}
	return ans
}

// exportNative writes the events table as the real server stores it (FORMAT Native over its
// HTTP interface) to a file chDB loads.
func exportNative(t *testing.T, database string) string {
	t.Helper()
	env := testenv.ClickHouse(t)
	addr := os.Getenv("MCPWATCH_CLICKHOUSE_HTTP_ADDR")
	if addr == "" {
		testenv.Missing(t, "ClickHouse HTTP", "MCPWATCH_CLICKHOUSE_HTTP_ADDR is empty")
	}
	q := url.Values{"database": {database}}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/?"+q.Encode(), strings.NewReader("SELECT * FROM events FORMAT Native"))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(env.AdminUser, env.AdminPassword)
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		testenv.Missing(t, "ClickHouse HTTP", err.Error())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("export: %v %s: %s", err, resp.Status, b)
	}
	path := filepath.Join(t.TempDir(), "events.native")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// queryIDs runs a converted rule's SQL on the real server; 18.16 refuses most of it (no ILIKE,
// no isIPAddressInRange, ...), which is why chDB runs it too.
func queryIDs(ctx context.Context, conn driver.Conn, sql string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": 30}))
	rows, err := conn.Query(ctx, "SELECT DISTINCT id FROM ("+sql+") ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func describe(what string, ids []string, byID map[string]*event.Event) string {
	if len(ids) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  %s (%d):\n", what, len(ids))
	for i, id := range ids {
		if i == 10 {
			fmt.Fprintf(&b, "    ... %d more\n", len(ids)-i)
			break
		}
		j, _ := json.Marshal(byID[id])
		fmt.Fprintf(&b, "    %s\n", j)
	}
	return b.String()
}

// peerEvents is the event corpus: a small generated company's MCP traffic as the gateway's
// event builder records it, and hand-made events for the edge of every modifier.
func peerEvents(t *testing.T) []event.Event {
	t.Helper()
	d, err := traffic.Generate(traffic.Config{Seed: 5, Principals: 40, History: 2 * time.Hour, Test: 80 * time.Minute, PerKind: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, pol, err := eval.Company(d)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := eval.NewRawBuilder(pol)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	err = rb.Stream(context.Background(), d.Calls, func(evs []*event.Event) error {
		for _, e := range evs {
			out = append(out, *e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(out, edgeEvents()...)
}
