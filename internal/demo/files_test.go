package demo

import (
	"bytes"
	"os"
	"testing"

	"github.com/mcpwatch/mcpwatch/enrich"
	"github.com/mcpwatch/mcpwatch/policy"
)

// The demo runs with the enrichment files the docs point at: its embedded copies must be those
// files, and they must load.
func TestDemoEnrichmentFiles(t *testing.T) {
	for _, c := range []struct {
		deployed string
		embedded []byte
	}{{"../../deploy/local/catalog.yaml", Catalog}, {"../../deploy/local/directory.yaml", Directory}} {
		b, err := os.ReadFile(c.deployed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, c.embedded) {
			t.Errorf("the embedded copy of %s differs: copy it over to internal/demo/demo-*.yaml", c.deployed)
		}
	}
	if _, err := enrich.ParseCatalog(Catalog, "demo-catalog.yaml"); err != nil {
		t.Error(err)
	}
	if _, err := enrich.ParseDirectory(Directory, "demo-directory.yaml"); err != nil {
		t.Error(err)
	}
}

// The demo embeds its policy; the copy under deploy/local is the one people read and edit. If
// this failed, the demo would enforce a policy nobody can see.
func TestDemoPolicyInSync(t *testing.T) {
	deployed, err := os.ReadFile("../../deploy/local/demo-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(deployed, Policy) {
		t.Fatal("internal/demo/demo-policy.yaml differs from deploy/local/demo-policy.yaml: copy it over")
	}
	p, err := policy.Load(bytes.NewReader(Policy), "demo-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if w := policy.Check(p); len(w) > 0 {
		t.Fatalf("demo policy lint: %v", w)
	}
}
