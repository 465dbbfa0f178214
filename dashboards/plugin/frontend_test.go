package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// pluginJSONRules restates the constraints of Grafana's plugin.json schema (draft-07,
// docs/sources/developers/plugins/plugin.schema.json in the Grafana repository; no package registry
// ships it) that a datasource plugin's file touches.
var pluginJSONRules = struct {
	topLevel, info, deps []string // allowed keys
	required, infoReq    []string
	id, version, updated *regexp.Regexp
	grafanaDependency    *regexp.Regexp
	types, categories    []string
}{
	topLevel: []string{"$schema", "alerting", "annotations", "autoEnabled", "backend", "builtIn", "category",
		"dependencies", "enterpriseFeatures", "executable", "hideFromList", "id", "includes", "info", "logs",
		"metrics", "name", "pascalName", "preload", "queryOptions", "routes", "skipDataQuery", "state",
		"streaming", "tracing", "type"},
	info:              []string{"author", "build", "description", "keywords", "links", "logos", "screenshots", "updated", "version"},
	deps:              []string{"grafanaVersion", "grafanaDependency", "plugins"},
	required:          []string{"type", "name", "id", "info", "dependencies"},
	infoReq:           []string{"logos", "version", "updated", "keywords"},
	id:                regexp.MustCompile(`^[0-9a-z]+\-([0-9a-z]+\-)?(app|panel|datasource|secretsmanager|transformer)$`),
	version:           regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)`),
	updated:           regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`),
	grafanaDependency: regexp.MustCompile(`^(<=|>=|<|>|=|~|\^)?([0-9]+)(\.[0-9x\*]+)(\.[0-9x\*]+)?(\s(<=|>=|<|=>)?([0-9]+)(\.[0-9x]+)(\.[0-9x]+))?$`),
	types:             []string{"app", "datasource", "panel", "renderer", "secretsmanager", "transformer"},
	categories:        []string{"tsdb", "logging", "cloud", "tracing", "profiling", "sql", "enterprise", "iot", "other"},
}

// TestPluginJSON checks src/plugin.json against Grafana's schema rules and that dist/ carries the
// same file and its logo. If it failed, Grafana would refuse to load the plugin or show it without
// metadata, or the committed dist/ would be stale.
func TestPluginJSON(t *testing.T) {
	raw, err := os.ReadFile("src/plugin.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("plugin.json: %v", err)
	}
	r := pluginJSONRules
	keysIn := func(where string, obj map[string]json.RawMessage, allowed, required []string) {
		for k := range obj {
			if !slices.Contains(allowed, k) {
				t.Errorf("%s: property %q not allowed by the schema", where, k)
			}
		}
		for _, k := range required {
			if _, ok := obj[k]; !ok {
				t.Errorf("%s: %q is required", where, k)
			}
		}
	}
	keysIn("plugin.json", m, r.topLevel, r.required)
	var p struct {
		ID, Type, Name, Category, Executable string
		Backend                              bool
		Info                                 map[string]json.RawMessage
		Dependencies                         map[string]json.RawMessage
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	keysIn("info", p.Info, r.info, r.infoReq)
	keysIn("dependencies", p.Dependencies, r.deps, []string{"grafanaDependency"})
	var info struct {
		Version, Updated string
		Keywords         []string
		Logos            struct{ Small, Large string }
	}
	if err := json.Unmarshal(mustRaw(t, m["info"]), &info); err != nil {
		t.Fatal(err)
	}
	var dep struct{ GrafanaDependency string }
	if err := json.Unmarshal(mustRaw(t, m["dependencies"]), &dep); err != nil {
		t.Fatal(err)
	}
	switch {
	case !r.id.MatchString(p.ID):
		t.Errorf("id %q does not match %s", p.ID, r.id)
	case !slices.Contains(r.types, p.Type) || p.Type != "datasource":
		t.Errorf("type %q: want datasource", p.Type)
	case p.Category != "" && !slices.Contains(r.categories, p.Category):
		t.Errorf("category %q not in %v", p.Category, r.categories)
	case !r.version.MatchString(info.Version) || !r.updated.MatchString(info.Updated):
		t.Errorf("info.version %q / info.updated %q malformed", info.Version, info.Updated)
	case len(info.Keywords) == 0:
		t.Error("info.keywords: at least one")
	case !r.grafanaDependency.MatchString(dep.GrafanaDependency):
		t.Errorf("grafanaDependency %q malformed", dep.GrafanaDependency)
	case !p.Backend || p.Executable != "gpx_mcpwatch":
		t.Errorf("backend %v executable %q: want the backend gpx_mcpwatch (scripts/up.sh builds dist/gpx_mcpwatch_linux_amd64)", p.Backend, p.Executable)
	}
	for _, logo := range []string{info.Logos.Small, info.Logos.Large} {
		if _, err := os.Stat(filepath.Join("dist", logo)); err != nil {
			t.Errorf("logo: %v", err)
		}
	}
	if dist, err := os.ReadFile("dist/plugin.json"); err != nil || !bytes.Equal(dist, raw) {
		t.Errorf("dist/plugin.json differs from src/plugin.json (%v): run `npm run build` in dashboards/plugin", err)
	}
}

func mustRaw(t *testing.T, r json.RawMessage) json.RawMessage {
	t.Helper()
	if len(r) == 0 {
		t.Fatal("missing object")
	}
	return r
}

// node returns the node binary, with the frontend's pinned toolchain installed in node_modules
// (scripts/peers.sh), or fails under CI / skips otherwise.
func node(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		testenv.Missing(t, "node", "Node.js 20+ is needed to build and load the plugin frontend")
	}
	if _, err := os.Stat("node_modules/esbuild/package.json"); err != nil {
		testenv.Missing(t, "the plugin frontend's npm packages", "run scripts/peers.sh (npm ci in dashboards/plugin)")
	}
	return bin
}

// TestFrontendUpToDate rebuilds the frontend with the pinned esbuild and compares it with the
// committed dist/. If it failed, the module.js Grafana loads would not be the one src/ describes.
func TestFrontendUpToDate(t *testing.T) {
	bin := node(t)
	out := t.TempDir()
	if b, err := exec.Command(bin, "build.mjs", out).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	for _, f := range []string{"module.js", "plugin.json", "img/logo.svg"} {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join("dist", f)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("dist/%s is stale (%v): run `npm run build` in dashboards/plugin and commit dist/", f, err)
		}
	}
}

// TestFrontendLoads loads the committed dist/module.js as Grafana's loader does (an AMD module
// given react and Grafana's packages) and renders its editors with real React (test/load.mjs). If
// it failed, Grafana could not load the plugin, or its editors would write settings or queries the
// backend does not read.
func TestFrontendLoads(t *testing.T) {
	bin := node(t)
	b, err := exec.Command(bin, "test/load.mjs", "dist/module.js").CombinedOutput()
	if err != nil {
		t.Fatalf("load module.js: %v\n%s", err, b)
	}
	t.Logf("%s", b)
}
