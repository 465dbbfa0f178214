// Package archtest holds the tests that keep mcpwatch's shape (docs/architecture.md): data flows
// one way through stages that share only the event model and Kafka, and cmd/ is wiring.
package archtest

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/mcpwatch/mcpwatch"

// stages are the packages that each build one kind of component (they call component.NewFactory)
// — with their subpackages. A stage may import the event model, the component package, the Kafka
// layer and libraries, never another stage: stages talk through topics.
var stages = []string{
	"processors",     // process
	"storage/sink",   // sink
	"detectors",      // detect
	"response",       // respond, notify
	"forward",        // forward
	"ingest/gateway", // gateway
}

// hosts may import stages: they build components from the registry.
var hosts = []string{"app", "cmd/mcpwatch", "internal/bench", "internal/demo",
	"eval/live",                    // `mcpwatch eval --live` runs the real pipeline and gateway on loopback, as the demo does
	"dashboards/plugin/mcpwatchds", // the Grafana plugin lifts controls with response/ops, as `mcpwatch response lift` does
}

type pkg struct {
	dir     string // relative to the module root, "/"-separated
	imports []string
	files   []string
}

func root(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

// packages lists every package of the module with its non-test imports.
func packages(t *testing.T) []pkg {
	t.Helper()
	r := root(t)
	var out []pkg
	err := filepath.WalkDir(r, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != r && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || name == "bin") {
			return filepath.SkipDir
		}
		bp, err := build.Default.ImportDir(path, 0)
		if err != nil {
			return nil // no Go files here
		}
		rel, _ := filepath.Rel(r, path)
		out = append(out, pkg{dir: filepath.ToSlash(rel), imports: bp.Imports, files: bp.GoFiles})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// within reports whether dir is p or below it.
func within(dir, p string) bool { return dir == p || strings.HasPrefix(dir, p+"/") }

func stageOf(dir string) string {
	for _, s := range stages {
		if within(dir, s) {
			return s
		}
	}
	return ""
}

// No stage imports another stage, and only hosts import stages. If this fails, a stage has
// grown a dependency on another one's internals: move what they share into a library package
// (as normalize was split from the process stage) or let them talk through a topic.
func TestStagesImportNoStage(t *testing.T) {
	for _, p := range packages(t) {
		own := stageOf(p.dir)
		for _, imp := range p.imports {
			rel, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			target := stageOf(rel)
			if target == "" || target == own || slices.Contains(hosts, p.dir) {
				continue
			}
			if own != "" {
				t.Errorf("stage %s (%s) imports stage %s (%s)", own, p.dir, target, rel)
			} else {
				t.Errorf("%s imports stage %s (%s): only %v build stages", p.dir, target, rel, hosts)
			}
		}
	}
}

// Every package that defines a component factory is listed as a stage above, so that a new
// stage is held to the rule from its first commit.
func TestEveryFactoryIsAStage(t *testing.T) {
	r := root(t)
	for _, p := range packages(t) {
		if p.dir == "component" || slices.Contains(hosts, p.dir) {
			continue
		}
		for _, f := range p.files {
			b, err := os.ReadFile(filepath.Join(r, p.dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "component.NewFactory(") && stageOf(p.dir) == "" {
				t.Errorf("%s/%s makes a component factory but %s is not in the stage list (internal/archtest)", p.dir, f, p.dir)
			}
		}
	}
}

// The event model is the contract everyone imports; it imports nothing of mcpwatch's, so that
// outside implementers can take it alone.
func TestEventModelStandsAlone(t *testing.T) {
	for _, p := range packages(t) {
		if p.dir != "event" {
			continue
		}
		for _, imp := range p.imports {
			if strings.HasPrefix(imp, module+"/") {
				t.Errorf("event imports %s", imp)
			}
		}
	}
}

// cmd/mcpwatch is wiring: flags, config, calls into packages. It talks to no service and parses
// no format itself, and none of its functions grows into an algorithm. If this fails, move the
// logic into the package it belongs to (and test it there).
func TestCmdIsWiring(t *testing.T) {
	forbidden := []string{
		"github.com/twmb/franz-go", "github.com/ClickHouse/", "go.yaml.in/yaml", "github.com/goccy/go-yaml",
		"encoding/json", "net/http", "database/sql", "github.com/modelcontextprotocol/go-sdk",
	}
	for _, p := range packages(t) {
		if p.dir != "cmd/mcpwatch" {
			continue
		}
		for _, imp := range p.imports {
			for _, f := range forbidden {
				if strings.HasPrefix(imp, f) {
					t.Errorf("cmd/mcpwatch imports %s: talking to services and parsing formats belong in packages", imp)
				}
			}
		}
		const maxLines = 60
		fset := token.NewFileSet()
		for _, f := range p.files {
			file, err := parser.ParseFile(fset, filepath.Join(root(t), p.dir, f), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range file.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok || fn.Body == nil {
					continue
				}
				// Flag registration is long and flat: a command constructor or a flag set.
				if strings.HasSuffix(fn.Name.Name, "Cmd") || strings.HasSuffix(fn.Name.Name, "Flags") {
					continue
				}
				lines := fset.Position(fn.Body.End()).Line - fset.Position(fn.Body.Pos()).Line
				if lines > maxLines {
					t.Errorf("cmd/mcpwatch/%s: %s is %d lines: logic belongs in a package, not the command", f, fn.Name.Name, lines)
				}
			}
		}
	}
}
