package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/forensics"
	"github.com/mcpwatch/mcpwatch/internal/chtest"
)

// runSigma runs the CLI and returns standard output and standard error apart.
func runSigma(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append(args, "--metrics-addr", ""))
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// `sigma check` is how a SOC vets rules before the detect stage loads them: the shipped set must
// pass clean, a refused rule must fail the command with its position and reason, and lint
// warnings must fail it only under --strict.
func TestSigmaCheck(t *testing.T) {
	out, _, err := runSigma(t, "sigma", "check")
	if err != nil || !strings.Contains(out, "0 errors, 0 warnings") || !strings.Contains(out, "shipped rules") {
		t.Fatalf("shipped rules: %v\n%s", err, out)
	}
	dir := t.TempDir()
	good := "title: Payment tool by an intern\nid: 0b6c5a4e-8f3d-4e2a-9c71-5d2f3b1a6e90\nlogsource:\n  category: mcp_call\n" +
		"detection:\n  sel:\n    mcp.tool|startswith: pay_\n  condition: sel\n"
	bad := "title: Broken\nid: 1c6c5a4e-8f3d-4e2a-9c71-5d2f3b1a6e91\nlogsource:\n  category: mcp_call\n" +
		"detection:\n  sel:\n    mcp.tool|nope: x\n  condition: sel\n"
	if err := os.WriteFile(filepath.Join(dir, "good.yml"), []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = runSigma(t, "sigma", "check", dir)
	if err != nil || !strings.Contains(out, "good.yml:1:1: warning: no level") || !strings.Contains(out, "1 rules and 0 correlation rules loaded from 1 files, 0 errors") {
		t.Fatalf("a loadable rule without metadata: %v\n%s", err, out)
	}
	if _, _, err = runSigma(t, "sigma", "check", "--strict", dir); err == nil || !strings.Contains(err.Error(), "--strict") {
		t.Fatalf("--strict passed warnings: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.yml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = runSigma(t, "sigma", "check", dir)
	if err == nil || !strings.Contains(out, filepath.Join(dir, "bad.yml")+":7:5: unknown modifier") || !strings.Contains(out, "1 rules and 0 correlation rules loaded from 2 files, 1 errors") {
		t.Fatalf("a refused rule must fail with file:line:column: %v\n%s", err, out)
	}
}

func writeEvents(t *testing.T, evs ...event.Event) string {
	t.Helper()
	var b bytes.Buffer
	for i := range evs {
		raw, err := event.Encode(&evs[i])
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
		b.WriteByte('\n')
	}
	p := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var sigmaT0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// sigmaEvents: an engineer moving money (the shipped payment rule fires), finance doing it (it
// does not), and a kernel event (no MCP rule applies).
func sigmaEvents() []event.Event {
	call := func(sub, role, tool string, at time.Duration) event.Event {
		return event.Event{ID: event.NewID(), Time: sigmaT0.Add(at), Source: event.SourceMCP, Tenant: "acme",
			Principal: event.Principal{Subject: sub, Roles: []string{role}}, Target: event.Target{Server: "payments"},
			MCP:     &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: tool, ProtocolVersion: "2025-06-18"},
			Outcome: event.Outcome{Result: event.ResultAllowed}}
	}
	return []event.Event{
		call("eng.012", "engineer", "transfer_funds", 0),
		call("fin.002", "finance-ops", "transfer_funds", time.Second),
		{ID: event.NewID(), Time: sigmaT0.Add(2 * time.Second), Source: event.SourceKernel, Tenant: "acme",
			Process: &event.Process{PID: 7, Comm: "sh", Syscall: "execve"}},
	}
}

// `sigma test --events` shows each match with the event's time, principal, method and tool, the
// rule and the values that matched; if this failed, an analyst testing a rule over exported
// events would not see why it fired, or would see it fire on events it must leave alone.
func TestSigmaTestOverEventsFile(t *testing.T) {
	p := writeEvents(t, sigmaEvents()...)
	out, errOut, err := runSigma(t, "sigma", "test", "--events", p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"2026-12-01T10:00:00Z", "eng.012", "tools/call", "transfer_funds", "e313330c-9496-4e27-96e7-24c45981f175",
		"Payment Tool Called by a Role Outside Finance", "high", "mcp.tool|contains=transfer_funds"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "fin.002") {
		t.Errorf("finance matched:\n%s", out)
	}
	if !strings.Contains(errOut, "3 events, 2 MCP events, 1 matched; 1 matches of 1 of 26 rules") {
		t.Errorf("summary: %q", errOut)
	}

	out, _, err = runSigma(t, "sigma", "test", "--events", p, "--format", "json")
	var row map[string]any // one JSON object a line
	if err != nil || strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &row) != nil || row["principal"] != "eng.012" {
		t.Fatalf("json: %v\n%s", err, out)
	}

	rule := filepath.Join(t.TempDir(), "intern.yml")
	_ = os.WriteFile(rule, []byte("title: Finance moves money\nid: 2d6c5a4e-8f3d-4e2a-9c71-5d2f3b1a6e92\nlevel: low\nlogsource:\n  product: mcpwatch\n  category: mcp_call\n"+
		"detection:\n  sel:\n    principal.roles: finance-ops\n    mcp.tool: transfer_funds\n  condition: sel\n"), 0o600)
	out, _, err = runSigma(t, "sigma", "test", "--rules", rule, "--events", p)
	if err != nil || !strings.Contains(out, "fin.002") || strings.Contains(out, "eng.012") || !strings.Contains(out, "principal.roles=finance-ops") {
		t.Fatalf("--rules: %v\n%s", err, out)
	}
}

// Bad input is refused with an actionable message before anything is read or any connection
// is made (the ClickHouse address is unreachable on purpose).
func TestSigmaTestRefusesBadInput(t *testing.T) {
	events := writeEvents(t, sigmaEvents()...)
	broken := filepath.Join(t.TempDir(), "events.jsonl")
	_ = os.WriteFile(broken, []byte("{\"schema\":1,\"id\":\"a\",\"time\":\"2026-12-01T10:00:00Z\",\"source\":\"mcp\",\"tenant\":\"t\"}\n{not json\n"), 0o600)
	badRule := filepath.Join(t.TempDir(), "bad.yml")
	_ = os.WriteFile(badRule, []byte("title: x\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sigma", "test"}, "needs one source"},
		{[]string{"sigma", "test", "--events", events, "--from-clickhouse"}, "needs one source"},
		{[]string{"sigma", "test", "--events", events, "--principal", "x"}, "select events in ClickHouse"},
		{[]string{"sigma", "test", "--events", broken}, "events.jsonl:2:"},
		{[]string{"sigma", "test", "--events", events, "--format", "xml"}, "unknown format"},
		{[]string{"sigma", "test", "--events", events, "--rules", badRule}, "refused"},
		{[]string{"sigma", "test", "--from-clickhouse", "--since", "1h", "--last", "2h"}, "give one"},
		{[]string{"sigma", "test", "--from-clickhouse", "--since", "yesterday"}, "--since"},
		{[]string{"sigma", "test", "--from-clickhouse", "--limit", "0"}, "--limit"},
	} {
		_, _, err := runSigma(t, append(c.args, "--clickhouse", "127.0.0.1:1")...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.args, err, c.want)
		}
	}
}

// Like TestCommandsShowOnlyTheirFlags: the sigma commands show their own flags and no stage's.
func TestSigmaCommandsShowOnlyTheirFlags(t *testing.T) {
	root, _ := newCLI()
	own := map[string][]string{
		"check": {"strict"},
		"test":  {"rules", "events", "from-clickhouse", "last", "since", "until", "tenant", "principal", "limit", "format", "allow-refused"},
	}
	stageFlags := []string{"catalog-file", "sink-batch-rows", "rate-window", "finding-threshold", "webhook-url", "upstream", "policy-file", "syslog-address"}
	for name, flags := range own {
		cmd, _, err := root.Find([]string{"sigma", name})
		if err != nil || cmd.Name() != name {
			t.Fatalf("sigma %s: %v", name, err)
		}
		for _, f := range flags {
			if cmd.LocalFlags().Lookup(f) == nil {
				t.Errorf("sigma %s lacks --%s", name, f)
			}
		}
		for other, oflags := range own {
			for _, f := range oflags {
				if other != name && cmd.LocalFlags().Lookup(f) != nil && !slices.Contains(flags, f) {
					t.Errorf("sigma %s shows sigma %s's flag --%s", name, other, f)
				}
			}
		}
		for _, f := range stageFlags {
			if cmd.Flags().Lookup(f) != nil {
				t.Errorf("sigma %s shows the stage flag --%s", name, f)
			}
		}
	}
}

// The ClickHouse source reads back exactly the stored MCP events of the window, principal and
// tenant asked for, each once although the sink stored a replay, and decodes them whole: if
// this failed, `sigma test --from-clickhouse` would run rules over the wrong events or over
// events missing fields the rules read.
func TestSigmaReadsStoredEvents(t *testing.T) {
	db := chtest.New(t)
	topics := event.TopicNames("sigma")
	evs := sigmaEvents()
	other := evs[0]
	other.ID, other.Tenant = event.NewID(), "globex"
	late := evs[0]
	late.ID, late.Time = event.NewID(), sigmaT0.Add(2*time.Hour)
	evs = append(evs, other, late)
	recs := chtest.Records(t, topics.Events, evs)
	db.Store(t, topics, recs, recs[:1])

	read := func(w forensics.Window, tenant, principal string, limit int) []*event.Event {
		var out []*event.Event
		if err := forensics.StoredEvents(context.Background(), db.Reader, db.Name, w, tenant, principal, limit, func(e *event.Event) error {
			out = append(out, e)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	hour := forensics.Window{Since: sigmaT0, Until: sigmaT0.Add(time.Hour)}
	got := read(hour, "acme", "", 100)
	if len(got) != 2 || got[0].ID != evs[0].ID || got[1].ID != evs[1].ID {
		t.Fatalf("acme's MCP events of the hour: got %d %v", len(got), got)
	}
	if got[0].MCP == nil || got[0].MCP.Tool != "transfer_funds" || !slices.Equal(got[0].Principal.Roles, []string{"engineer"}) {
		t.Errorf("stored event not decoded whole: %+v", got[0])
	}
	if got := read(hour, "", "eng.012", 100); len(got) != 2 { // acme's and globex's
		t.Errorf("eng.012 in every tenant: got %d", len(got))
	}
	if got := read(hour, "", "", 1); len(got) != 1 {
		t.Errorf("limit 1: got %d", len(got))
	}
}
