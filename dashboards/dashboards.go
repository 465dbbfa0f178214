// Package dashboards is mcpwatch's Grafana SOC dashboards as code. Each board is built with the
// Grafana Foundation SDK (Boards); `go generate ./dashboards` writes them as JSON into
// provisioning/dashboards, where Grafana's file provisioning (provisioning/dashboards/mcpwatch.yaml)
// loads them. SQL panels query Grafana's official ClickHouse datasource as the read-only user;
// the pipeline-health board queries Prometheus; typed investigations use mcpwatch's own
// backend plugin (dashboards/plugin). Tests run every SQL panel's query, expanded the way the
// ClickHouse datasource expands it (Expand), against the real ClickHouse.
package dashboards

//lint:file-ignore SA1019 the v1 dashboard schema is what Grafana 10 and 11 provision from files; dashboardv2 needs Grafana 12

//go:generate go run ./gen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// ProvisionedDir is where the generated JSON lives, relative to this package.
const ProvisionedDir = "provisioning/dashboards"

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// Render builds b and returns its JSON as committed: indented, with a final newline.
func Render(b Board) ([]byte, error) {
	d, err := b.Builder.Build()
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", b.File, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("encode %s: %w", b.File, err)
	}
	return buf.Bytes(), nil
}

// Write renders every board into dir.
func Write(dir string) error {
	for _, b := range Boards() {
		out, err := Render(b)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, b.File), out, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", b.File, err)
		}
	}
	return nil
}
