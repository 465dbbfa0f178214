package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/mcpwatch/mcpwatch/enrich"
)

// The demo runs with the enrichment files the docs point at: its embedded copies must be those
// files, and they must load.
func TestDemoEnrichmentFiles(t *testing.T) {
	for _, c := range []struct {
		deployed string
		embedded []byte
	}{{"../../deploy/local/catalog.yaml", demoCatalog}, {"../../deploy/local/directory.yaml", demoDirectory}} {
		b, err := os.ReadFile(c.deployed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, c.embedded) {
			t.Errorf("the embedded copy of %s differs: copy it over to cmd/mcpwatch/demo-*.yaml", c.deployed)
		}
	}
	if _, err := enrich.ParseCatalog(demoCatalog, "demo-catalog.yaml"); err != nil {
		t.Error(err)
	}
	if _, err := enrich.ParseDirectory(demoDirectory, "demo-directory.yaml"); err != nil {
		t.Error(err)
	}
}
