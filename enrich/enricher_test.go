package enrich

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	catalogV1 = "version: 1\nrules:\n  - id: db\n    tools: [db_query]\n    classes: [finance]\n    sensitivity: 0.5\n"
	catalogV2 = "version: 1\nrules:\n  - id: db\n    tools: [db_query]\n    classes: [pii]\n    sensitivity: 0.9\n"
	dirV1     = "subject,department,peer_group\nalice,finance,fin\n"
	dirV2     = "subject,department,peer_group\nalice,sales,sales-team\n"
)

// writeAtomic replaces path as a careful writer does: a temporary file renamed over it.
func writeAtomic(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func files(t *testing.T) (catalog, directory string) {
	dir := t.TempDir()
	catalog, directory = filepath.Join(dir, "catalog.yaml"), filepath.Join(dir, "directory.csv")
	writeAtomic(t, catalog, catalogV1)
	writeAtomic(t, directory, dirV1)
	return catalog, directory
}

func enriched(en *Enricher) *event.Event {
	e := principalEvent("acme", event.Principal{Subject: "alice"})
	en.Enrich(e)
	return e
}

// A broken file refuses the start with its precise position: a stage must not run on it.
func TestOpenRefusesBrokenFiles(t *testing.T) {
	cat, dir := files(t)
	writeAtomic(t, cat, "version: 1\nrules:\n  - id: a\n    tools: [x]\n    sensitivity: 2\n")
	if _, err := Open(cat, dir); err == nil || !strings.Contains(err.Error(), "catalog.yaml:5: rule \"a\": sensitivity 2") {
		t.Fatalf("error %v", err)
	}
	cat, dir = files(t)
	writeAtomic(t, dir, "subject\nalice\nalice\n")
	if _, err := Open(cat, dir); err == nil || !strings.Contains(err.Error(), "directory.csv:3: principal \"alice\": subject \"alice\" listed twice (first at line 2)") {
		t.Fatalf("error %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.yaml"), ""); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("error %v", err)
	}
	if _, err := Open("", ""); err == nil {
		t.Fatal("opened nothing")
	}
}

// Reload swaps in changed files, keeps the data in force when a file breaks, and reports why.
func TestReload(t *testing.T) {
	cat, dir := files(t)
	var events []ReloadEvent
	en, err := Open(cat, dir, WithReloadHook(func(r ReloadEvent) { events = append(events, r) }))
	if err != nil {
		t.Fatal(err)
	}
	if e := enriched(en); e.Principal.Department != "finance" || e.Normalized.Sensitivity != 0.5 {
		t.Fatalf("initial: %+v %v", e.Principal, e.Normalized)
	}
	if err := en.Reload(); err != nil || len(events) != 0 {
		t.Fatalf("unchanged reload: %v %v", err, events)
	}
	writeAtomic(t, cat, catalogV2)
	writeAtomic(t, dir, dirV2)
	if err := en.Reload(); err != nil {
		t.Fatal(err)
	}
	if e := enriched(en); e.Principal.Department != "sales" || e.Normalized.Sensitivity != 0.9 || e.DataClasses[0] != "pii" {
		t.Fatalf("after reload: %+v %v %v", e.Principal, e.Normalized, e.DataClasses)
	}
	writeAtomic(t, dir, "subject,department\nalice,x\nalice,y\n")
	err = en.Reload()
	if err == nil || !strings.Contains(err.Error(), "directory.csv:3:") {
		t.Fatalf("broken reload: %v", err)
	}
	if e := enriched(en); e.Principal.Department != "sales" {
		t.Fatalf("broken file replaced the directory: %+v", e.Principal)
	}
	last := events[len(events)-1]
	if last.Kind != "directory" || last.Err == nil || last.Entries != 1 {
		t.Fatalf("hook: %+v", last)
	}
}

// Run notices changes by polling, waits for a file to settle, keeps the old data on a broken
// file and reports each broken content once. If it broke, edits to the catalog or directory
// would never take effect, or a half-written file could replace a good one.
func TestRunPolls(t *testing.T) {
	cat, dir := files(t)
	var mu sync.Mutex
	var events []ReloadEvent
	en, err := Open(cat, dir, WithReloadHook(func(r ReloadEvent) { mu.Lock(); events = append(events, r); mu.Unlock() }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- en.Run(ctx, 10*time.Millisecond) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second) // generous: the machine is shared
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	writeAtomic(t, dir, dirV2)
	waitFor("the new directory", func() bool { return enriched(en).Principal.Department == "sales" })

	writeAtomic(t, cat, "version: 1\nrules: [\n")
	waitFor("the broken catalog to be reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) > 0 && events[len(events)-1].Err != nil
	})
	time.Sleep(100 * time.Millisecond) // ten more polls of the same broken content
	mu.Lock()
	failures := 0
	for _, r := range events {
		if r.Err != nil {
			failures++
			if !strings.Contains(r.Err.Error(), "catalog.yaml:2: invalid YAML") {
				t.Errorf("reload error %v", r.Err)
			}
		}
	}
	mu.Unlock()
	if failures != 1 {
		t.Fatalf("broken content reported %d times, want once", failures)
	}
	if e := enriched(en); e.Normalized.Sensitivity != 0.5 {
		t.Fatalf("broken catalog replaced the good one: %v", e.Normalized)
	}
	writeAtomic(t, cat, catalogV2)
	waitFor("the fixed catalog", func() bool { return enriched(en).Normalized.Sensitivity == 0.9 })

	// Same size, mtime set back: only the periodic full read can see it.
	v1 := strings.Replace(catalogV2, "0.9", "0.8", 1)
	fi, err := os.Stat(cat)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, cat, v1)
	if err := os.Chtimes(cat, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	waitFor("a change that kept size and mtime", func() bool { return enriched(en).Normalized.Sensitivity == 0.8 })
}

// Enrich runs concurrently with reloads (run with -race): each event sees one consistent
// version of each file.
func TestConcurrentEnrichAndReload(t *testing.T) {
	cat, dir := files(t)
	en, err := Open(cat, dir)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				e := enriched(en)
				s, d := e.Normalized.Sensitivity, e.Principal.Department
				if (s != 0.5 && s != 0.9) || (d != "finance" && d != "sales") {
					t.Errorf("torn enrichment: %v %q", s, d)
					return
				}
				if (s == 0.5) != (e.DataClasses[0] == "finance") {
					t.Errorf("classes %v with sensitivity %v", e.DataClasses, s)
					return
				}
			}
		})
	}
	for i := range 50 {
		if i%2 == 0 {
			writeAtomic(t, cat, catalogV2)
			writeAtomic(t, dir, dirV2)
		} else {
			writeAtomic(t, cat, catalogV1)
			writeAtomic(t, dir, dirV1)
		}
		if err := en.Reload(); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestNewWithoutFiles(t *testing.T) {
	en := New(mustCatalog(t, "testdata/catalog.yaml"), nil)
	e := toolEvent("acme-data", "db_query")
	e.Principal.Subject = "alice"
	en.Enrich(e)
	if e.Normalized.Sensitivity != 0.7 || e.Attributes[AttrDirectory] != "" || en.Directory() != nil || en.Catalog() == nil {
		t.Fatalf("%+v %v", e.Normalized, e.Attributes)
	}
	if err := en.Reload(); err != nil {
		t.Fatal(err)
	}
}
