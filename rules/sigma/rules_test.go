package sigmarules_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	mcp "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.yaml.in/yaml/v3"

	"github.com/mcpwatch/mcpwatch/detectors/sigma"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	sigmarules "github.com/mcpwatch/mcpwatch/rules/sigma"
)

// testFile is tests/<stem>.yaml: the events rule file <stem>.yml must and must not match.
type testFile struct {
	// Base is merged under every case's event (maps merge key by key, anything else is
	// replaced), so a case states only what makes it different.
	Base         map[string]any `yaml:"base"`
	MustMatch    []testCase     `yaml:"must_match"`
	MustNotMatch []testCase     `yaml:"must_not_match"`
}

// testCase is one event. With Request, the event is what the gateway records for that JSON-RPC
// request from the client (the real event builder and masker: arguments masked, PII counted,
// data classes added), and Base and Event are merged over it.
type testCase struct {
	Name    string         `yaml:"name"`
	Request map[string]any `yaml:"request"`
	Event   map[string]any `yaml:"event"`
	// Sequence makes the case a run of events for a correlation rule: Count copies of the
	// case's event, Every apart, each principal of Principals in turn when set.
	Sequence *sequence `yaml:"sequence"`
}

type sequence struct {
	Count      int      `yaml:"count"`
	Every      string   `yaml:"every"`
	Principals []string `yaml:"principals"`
}

// loadShipped loads the shipped rules from the embedded set, as the detect stage and the CLI do.
func loadShipped(t *testing.T) *sigma.RuleSet {
	t.Helper()
	rs, errs := sigma.Load(sigmarules.FS, ".")
	for _, err := range sigma.Errors(errs) {
		t.Errorf("shipped rule refused: %v", err)
	}
	if rs.Len() == 0 {
		t.Fatal("no shipped rule loaded")
	}
	return rs
}

func stem(file string) string { return strings.TrimSuffix(path.Base(file), path.Ext(file)) }

// filePrefix is the file name prefix of shipped rules by logsource category: mcp_ for MCP
// messages, SigmaHQ's prefixes for the kernel categories.
var filePrefix = map[string]string{
	"mcp_call": "mcp_", "process_creation": "proc_creation_", "file_access": "file_access_", "network_connection": "net_connection_",
}

// Every shipped rule loads with the real engine and carries what a SOC needs to read, file and
// share it. If this failed, the detect stage would start without the rule (the engine refuses
// it) or analysts would get a match with no level, tags or false-positive notes to triage by.
func TestShippedRulesLoadAndAreComplete(t *testing.T) {
	rs := loadShipped(t)
	files := map[string]int{}
	for _, r := range rs.Rules() {
		files[r.File]++
		where := fmt.Sprintf("%s:%d (%s)", r.File, r.Line, r.Title)
		if r.Author != "mcpwatch" {
			t.Errorf("%s: author %q, want mcpwatch", where, r.Author)
		}
		if r.Status == "" || r.Description == "" || r.Date == "" || r.Level == "" || len(r.FalsePositives) == 0 || len(r.References) == 0 {
			t.Errorf("%s: status, description, date, level, falsepositives and references are all required", where)
		}
		prefix, ok := filePrefix[r.Logsource.Category]
		if r.Logsource.Product != "mcpwatch" || !ok {
			t.Errorf("%s: logsource %+v, want product mcpwatch and a mapped category", where, r.Logsource)
		}
		if !slices.ContainsFunc(r.Tags, func(s string) bool { return strings.HasPrefix(s, "attack.") }) {
			t.Errorf("%s: no MITRE ATT&CK tag (attack.*) in %v", where, r.Tags)
		}
		for _, tag := range r.Tags {
			ns, _, ok := strings.Cut(tag, ".")
			if !ok || (ns != "attack" && ns != "atlas") || tag != strings.ToLower(tag) {
				t.Errorf("%s: tag %q: want lower-case attack.* or atlas.*", where, tag)
			}
		}
		if !strings.HasPrefix(path.Base(r.File), prefix) || path.Ext(r.File) != ".yml" {
			t.Errorf("%s: shipped rule files of category %s are named %s<what>.yml", where, r.Logsource.Category, prefix)
		}
	}
	for _, c := range rs.Correlations() {
		files[c.File]++
		where := fmt.Sprintf("%s:%d (%s)", c.File, c.Line, c.Title)
		if c.Author != "mcpwatch" || c.Status == "" || c.Description == "" || c.Date == "" || c.Level == "" ||
			len(c.FalsePositives) == 0 || len(c.References) == 0 {
			t.Errorf("%s: author mcpwatch, status, description, date, level, falsepositives and references are all required", where)
		}
		if !slices.ContainsFunc(c.Tags, func(s string) bool { return strings.HasPrefix(s, "attack.") }) {
			t.Errorf("%s: no MITRE ATT&CK tag (attack.*) in %v", where, c.Tags)
		}
		if !strings.HasPrefix(path.Base(c.File), "mcp_") || path.Ext(c.File) != ".yml" {
			t.Errorf("%s: shipped rule files are named mcp_<what>.yml", where)
		}
	}
	for f, n := range files {
		if n != 1 {
			t.Errorf("%s holds %d rules; ship one rule per file so each has its own test file", f, n)
		}
	}
}

// Every rule has a test file, every test file a rule, and each rule matches every must_match
// event and none of its must_not_match events. If this failed, a rule no longer fires on the
// attack it was written for, or fires on the look-alike it was written to leave alone.
func TestShippedRulesMatchTheirEvents(t *testing.T) {
	rs := loadShipped(t)
	byStem := map[string]*sigma.Rule{}
	for _, r := range rs.Rules() {
		byStem[stem(r.File)] = r
	}
	corrByStem := map[string]*sigma.Correlation{}
	for _, c := range rs.Correlations() {
		corrByStem[stem(c.File)] = c
	}
	tests, err := fs.Glob(os.DirFS("tests"), "*")
	if err != nil {
		t.Fatal(err)
	}
	haveTest := map[string]bool{}
	for _, name := range tests {
		if path.Ext(name) != ".yaml" {
			t.Errorf("tests/%s: test files are tests/<rule file stem>.yaml", name)
			continue
		}
		haveTest[stem(name)] = true
		if byStem[stem(name)] == nil && corrByStem[stem(name)] == nil {
			t.Errorf("tests/%s: no shipped rule %s.yml", name, stem(name))
		}
	}
	for st, c := range corrByStem {
		if !haveTest[st] {
			t.Errorf("%s (%s) has no test file tests/%s.yaml", c.File, c.Title, st)
			continue
		}
		t.Run(st, func(t *testing.T) {
			tf := readTestFile(t, "tests/"+st+".yaml")
			if len(tf.MustMatch) == 0 || len(tf.MustNotMatch) == 0 {
				t.Fatalf("tests/%s.yaml: want at least one must_match and one must_not_match sequence", st)
			}
			for i, tc := range tf.MustMatch {
				if cm := runSequence(t, rs, tf.Base, tc, c.ID); cm == nil {
					t.Errorf("must_match[%d] %q: %s did not fire", i, tc.Name, c.Title)
				} else if len(cm.GroupBy) == 0 || cm.Count == 0 {
					t.Errorf("must_match[%d] %q: a match without its group or count: %+v", i, tc.Name, cm)
				}
			}
			for i, tc := range tf.MustNotMatch {
				if cm := runSequence(t, rs, tf.Base, tc, c.ID); cm != nil {
					t.Errorf("must_not_match[%d] %q: %s fired (%d in the window, group %v)", i, tc.Name, c.Title, cm.Count, cm.GroupBy)
				}
			}
		})
	}
	for st, r := range byStem {
		if !haveTest[st] {
			t.Errorf("%s (%s) has no test file tests/%s.yaml", r.File, r.Title, st)
			continue
		}
		t.Run(st, func(t *testing.T) {
			tf := readTestFile(t, "tests/"+st+".yaml")
			if len(tf.MustMatch) == 0 || len(tf.MustNotMatch) == 0 {
				t.Fatalf("tests/%s.yaml: want at least one must_match and one must_not_match event", st)
			}
			for i, c := range tf.MustMatch {
				e := buildEvent(t, tf.Base, c)
				if m := find(rs.Match(e), r.ID); m == nil {
					t.Errorf("must_match[%d] %q: %s did not match\nevent: %s", i, c.Name, r.Title, encode(t, e))
				} else if len(m.Fields) == 0 {
					t.Errorf("must_match[%d] %q: a match without the fields that matched", i, c.Name)
				}
			}
			for i, c := range tf.MustNotMatch {
				e := buildEvent(t, tf.Base, c)
				if m := find(rs.Match(e), r.ID); m != nil {
					t.Errorf("must_not_match[%d] %q: %s matched on %v\nevent: %s", i, c.Name, r.Title, m.Fields, encode(t, e))
				}
			}
		})
	}
}

// runSequence feeds a case's sequence of events through the rules and a fresh correlator and
// returns correlation id's first match, nil when it did not fire.
func runSequence(t *testing.T, rs *sigma.RuleSet, base map[string]any, tc testCase, id string) *sigma.CorrelationMatch {
	t.Helper()
	sq := tc.Sequence
	if sq == nil || sq.Count < 1 {
		t.Fatalf("%q: a correlation rule's case needs a sequence with a count", tc.Name)
	}
	every, err := time.ParseDuration(sq.Every)
	if err != nil {
		t.Fatalf("%q: every: %v", tc.Name, err)
	}
	corr, err := rs.NewCorrelator(sigma.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := range sq.Count {
		one := tc
		one.Event = merge(merge(nil, tc.Event), map[string]any{
			"id": fmt.Sprintf("0193a1b2-0000-7000-8000-%012d", i+1), "time": t0.Add(time.Duration(i) * every).Format(time.RFC3339Nano)})
		if len(sq.Principals) > 0 {
			one.Event = merge(one.Event, map[string]any{"principal": map[string]any{"sub": sq.Principals[i%len(sq.Principals)]}})
		}
		e := buildEvent(t, base, one)
		for _, cm := range corr.Observe(e, rs.Match(e), nil) {
			if cm.Correlation.ID == id {
				return &cm
			}
		}
	}
	return nil
}

func find(ms []sigma.Match, id string) *sigma.Match {
	for i := range ms {
		if ms[i].RuleID == id {
			return &ms[i]
		}
	}
	return nil
}

func readTestFile(t *testing.T, name string) testFile {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var tf testFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&tf); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return tf
}

// defaults are what every test event has unless it says otherwise.
var defaults = map[string]any{
	"schema": event.SchemaVersion, "id": "0193a1b2-0000-7000-8000-000000000001", "time": "2026-12-01T10:00:00Z",
	"source": "mcp", "tenant": "acme", "outcome": map[string]any{"result": "allowed"},
}

// buildEvent makes the event of a test case: defaults, then the event the gateway's builder
// makes of the case's request (if any), then the file's base, then the case's event; decoded
// strictly, so a misspelt field fails the test instead of being left out.
func buildEvent(t *testing.T, base map[string]any, c testCase) *event.Event {
	t.Helper()
	doc := merge(nil, defaults)
	if c.Request != nil {
		doc = merge(doc, fromRequest(t, c.Request))
	}
	doc = merge(merge(doc, base), c.Event)
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("%q: %v", c.Name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var e event.Event
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("%q: not an mcpwatch event: %v\n%s", c.Name, err, raw)
	}
	if err := event.Decode(raw, &e); err != nil {
		t.Fatalf("%q: %v", c.Name, err)
	}
	return &e
}

// fromRequest is the event the gateway records for a JSON-RPC request from the client, as a JSON
// document: built by [mcpwire.Builder.FromClient] with the gateway's default masker.
func fromRequest(t *testing.T, req map[string]any) map[string]any {
	t.Helper()
	if _, ok := req["jsonrpc"]; !ok {
		req = merge(map[string]any{"jsonrpc": "2.0", "id": 1}, req)
	}
	raw, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	m, perr := mcpwire.ParseMessage(raw)
	if perr != nil {
		t.Fatalf("request %s: %v", raw, perr)
	}
	masker, err := mcpwire.NewMasker(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &mcpwire.Builder{Tenant: "acme", Observer: "test-gateway", Transport: "streamable-http", Masker: masker}
	e := b.FromClient(&mcpwire.Context{}, &m)
	doc := map[string]any{}
	out, err := json.Marshal(e)
	if err == nil {
		err = json.Unmarshal(out, &doc)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "id", "time", "principal", "correlation", "target", "network", "outcome", "size", "attributes"} {
		delete(doc, k) // the case and base say these; the builder's are placeholders
	}
	return doc
}

// merge returns a copy of dst with src merged over it: maps key by key, anything else replaced.
func merge(dst, src map[string]any) map[string]any {
	out := make(map[string]any, len(dst)+len(src))
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := out[k].(map[string]any); ok {
				out[k] = merge(dm, sm)
				continue
			}
			out[k] = merge(nil, sm)
			continue
		}
		out[k] = v
	}
	return out
}

func encode(t *testing.T, e *event.Event) string {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The unknown-protocol-version rule knows the revision the official Go SDK negotiates today
// (learnt from a real handshake, not written down): if this failed, every client on the newest
// SDK would be a medium finding, as a live run once showed before the 2026-07-28 revision was
// added.
func TestProtocolVersionRuleKnowsTheSDK(t *testing.T) {
	ctx := context.Background()
	ct, st := mcp.NewInMemoryTransports()
	srv := mcp.NewServer(&mcp.Implementation{Name: "server", Version: "1.0.0"}, nil)
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "client", Version: "1.0.0"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	v := cs.InitializeResult().ProtocolVersion
	if v == "" {
		t.Fatal("no protocol version negotiated")
	}
	rs := loadShipped(t)
	e := buildEvent(t, nil, testCase{Name: "sdk", Event: map[string]any{
		"mcp": map[string]any{"direction": "request", "method": "tools/call", "tool": "db_query", "protocol_version": v}}})
	for _, m := range rs.Match(e) {
		if strings.Contains(m.Title, "Protocol Version") || strings.Contains(m.Title, "Protocol Revision") {
			t.Errorf("the official Go SDK's protocol version %q matched %q", v, m.Title)
		}
	}
}
