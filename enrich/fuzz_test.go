package enrich

import (
	"math"
	"os"
	"testing"

	"github.com/mcpwatch/mcpwatch/event"
)

// fuzzEvents are applied with every catalog and directory the fuzzers manage to load.
func fuzzEvents() []*event.Event {
	k := &event.Event{Tenant: "acme", Process: &event.Process{Path: "/etc/shadow"}}
	return []*event.Event{
		toolEvent("acme-data", "db_query"), resourceEvent("s3://finance-data/a/b"), k,
		principalEvent("acme", event.Principal{Subject: "alice", ClientID: "c"}),
		principalEvent("", event.Principal{ClientID: "nightly-etl"}),
	}
}

func seed(f *testing.F, paths ...string) {
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// Any input either loads or fails with an error; what loads enriches without panicking and
// keeps sensitivity within 0–1.
func FuzzParseCatalog(f *testing.F) {
	seed(f, "testdata/catalog.yaml", "../deploy/local/catalog.yaml")
	f.Add([]byte("version: 1\nrules:\n  - id: a\n    tools: ['*/x**y*z']\n    sensitivity: 1\n"))
	f.Add([]byte("version: 1\nclass_sensitivity: {pii: .nan}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := ParseCatalog(src, "c.yaml")
		if err != nil {
			return
		}
		for _, e := range fuzzEvents() {
			c.Apply(e)
			if s := e.Normalized.Sensitivity; !(s >= 0 && s <= 1) || math.IsNaN(s) {
				t.Fatalf("sensitivity %v", s)
			}
		}
	})
}

func FuzzParseDirectoryYAML(f *testing.F) {
	seed(f, "testdata/directory.yaml", "../deploy/local/directory.yaml")
	f.Add([]byte("version: 1\nprincipals:\n  - {subject: a, attributes: {x: \"\"}}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		fuzzDirectory(t, src, "d.yaml")
	})
}

func FuzzParseDirectoryCSV(f *testing.F) {
	seed(f, "testdata/directory.csv", "testdata/directory-bom.csv")
	f.Add([]byte("subject,\"a\"\"b\"\nx,\"y\nz\"\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		fuzzDirectory(t, src, "d.csv")
	})
}

func fuzzDirectory(t *testing.T, src []byte, name string) {
	d, err := ParseDirectory(src, name)
	if err != nil {
		return
	}
	for _, e := range fuzzEvents() {
		d.Apply(e)
		if st := e.Attributes[AttrDirectory]; (e.Principal.Subject != "" || e.Principal.ClientID != "") && st != "known" && st != "unknown" {
			t.Fatalf("status %q", st)
		}
	}
}
