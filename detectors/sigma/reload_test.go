package sigma

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
)

func writeRules(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A broken edit keeps the rule set in force, with the error at its file:line:column and a
// failed reload counted; the fixed edit swaps the new set in, and correlation groups of an
// unchanged correlation survive the swap. If this fails, a typo in one rule file silently
// disables every Sigma rule, or a reload restarts every window.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.yml")
	spree := corrDoc(idA, "  type: event_count\n  rules: [denied]\n  group-by: [principal.id]\n  timespan: 1m\n  condition: {gte: 3}\n")
	writeRules(t, base, baseRules+spree)
	d, err := New(Config{Rules: []string{dir}, ReloadEvery: time.Second, MaxGroups: 100, MaxValues: 100})
	if err != nil {
		t.Fatal(err)
	}
	var out detect.Output
	observe := func(sub, tool string, at time.Duration, denied bool) []string {
		out.Reset()
		d.Observe(call(sub, tool, at, denied), &out)
		var ids []string
		for _, f := range out.Findings {
			ids = append(ids, strings.TrimPrefix(f.Summary, sub+": "))
		}
		return ids
	}
	observe("alice", "x", 0, true)
	observe("alice", "x", time.Second, true)

	// A broken edit: the old set stays.
	extra := filepath.Join(dir, "extra.yaml")
	writeRules(t, extra, "title: Broken\nid: 55555555-5555-4555-8555-555555555555\nlogsource: {category: mcp_call}\ndetection:\n  sel: {mcp.tool|nope: x}\n  condition: sel\n")
	err = d.Reload()
	if err == nil || err.Error() != extra+`:5:9: unknown modifier "nope" in "mcp.tool|nope"` {
		t.Fatalf("reload error %v", err)
	}
	if ok, failed := d.Reloads(); ok != 0 || failed != 1 || d.RuleSet().Len() != 4 || d.LastError() == nil {
		t.Fatalf("after a broken edit: reloads %d/%d, %d rules", ok, failed, d.RuleSet().Len())
	}
	// The fixed edit swaps the new set in; the spree being counted survives.
	writeRules(t, extra, "title: Extra\nid: 55555555-5555-4555-8555-555555555555\nlogsource: {category: mcp_call}\ndetection:\n  sel: {mcp.tool|contains: secret}\n  condition: sel\n")
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if ok, failed := d.Reloads(); ok != 1 || failed != 1 || d.RuleSet().Len() != 5 || d.LastError() != nil {
		t.Fatalf("after the fix: reloads %d/%d, %d rules", ok, failed, d.RuleSet().Len())
	}
	got := observe("alice", "get_secret", 2*time.Second, true)
	if len(got) != 3 || !strings.Contains(got[1], `"Extra"`) || !strings.Contains(got[2], "Sigma correlation") {
		t.Fatalf("findings after the reload %q: want the call rule, the new rule and the completed spree", got)
	}
	// Unchanged content is no reload at all.
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := d.Reloads(); ok != 1 {
		t.Fatalf("unchanged files reloaded (%d)", ok)
	}
}

// Run loads a change only once two polls saw the same content (a file caught mid-write is not
// loaded), and reports a failing content once.
func TestRunPolls(t *testing.T) {
	dir := t.TempDir()
	writeRules(t, filepath.Join(dir, "base.yml"), baseRules)
	d, err := New(Config{Rules: []string{dir}, ReloadEvery: 100 * time.Millisecond, MaxGroups: 10, MaxValues: 10})
	if err != nil {
		t.Fatal(err)
	}
	writeRules(t, filepath.Join(dir, "bad.yml"), "title: [")
	d.poll()
	if _, failed := d.Reloads(); failed != 0 {
		t.Fatal("a change was loaded on the first poll that saw it")
	}
	d.poll()
	d.poll()
	if _, failed := d.Reloads(); failed != 1 {
		t.Fatalf("failed reloads %d, want the broken content reported once", failed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	if err := os.Remove(filepath.Join(dir, "bad.yml")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for d.LastError() != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil || d.LastError() != nil {
		t.Fatalf("Run: %v, last error %v", err, d.LastError())
	}
}
