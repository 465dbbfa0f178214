package enrich

import (
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/event"
)

func mustCatalog(t testing.TB, path string) *Catalog {
	t.Helper()
	c, err := LoadCatalog(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func toolEvent(server, tool string) *event.Event {
	return &event.Event{Tenant: "acme", Target: event.Target{Server: server},
		MCP: &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: tool}}
}

func resourceEvent(uri string) *event.Event {
	return &event.Event{Tenant: "acme", Target: event.Target{Server: "files"},
		MCP: &event.MCP{Direction: event.DirRequest, Method: "resources/read", ResourceURI: uri}}
}

// What each kind of pattern matches, and how several matching rules merge: if this breaks,
// events get the wrong data classes or sensitivity, and detectors weigh them wrongly.
func TestCatalogApply(t *testing.T) {
	c := mustCatalog(t, "testdata/catalog.yaml")
	kernel := &event.Event{Tenant: "acme", Source: event.SourceKernel, Process: &event.Process{Path: "/etc/shadow"}}
	prompt := &event.Event{Tenant: "acme", Target: event.Target{Server: "hr-bot"}, MCP: &event.MCP{Prompt: "review"}}
	srcClasses := toolEvent("mail", "send_email")
	srcClasses.DataClasses = []string{"pii"} // set by the gateway's masking
	keepsHigher := resourceEvent("s3://finance-data/q1.csv")
	keepsHigher.Normalized = &event.Normalized{Sensitivity: 0.95}
	broken := toolEvent("x", "y")
	broken.Normalized = &event.Normalized{Sensitivity: math.NaN()}

	cases := []struct {
		name    string
		e       *event.Event
		classes []string
		sens    float64
		rules   string
	}{
		{"resource under a ** prefix", resourceEvent("s3://finance-data/2024/q1.csv"), []string{"finance"}, 0.8, "finance-bucket"},
		{"** does not match the bucket itself", resourceEvent("s3://finance-data"), nil, 0.1, ""},
		{"qualified tool on its server", toolEvent("acme-data", "db_query"), []string{"finance", "pii"}, 0.7, "customer-db"},
		{"qualified tool on another server", toolEvent("other", "db_query"), nil, 0.1, ""},
		{"bare tool pattern on any server", toolEvent("anything", "export_csv"), []string{"bulk"}, 0.1, "any-export"},
		{"class-only rule takes its class weight", kernel, []string{"secret"}, 0.9, "etc"},
		{"prompt", prompt, []string{"pii"}, 0.6, "hr-prompts"},
		{"server rule and tool rule merge: union of classes, max sensitivity",
			toolEvent("payroll", "export_all"), []string{"bulk", "finance", "pii"}, 0.9, "any-export,payroll-server"},
		{"explicit zero is not the default", resourceEvent("https://docs.example.com/a"), nil, 0, "public"},
		{"source classes are kept and weighed", srcClasses, []string{"pii"}, 0.6, ""},
		{"a higher sensitivity already set is kept", keepsHigher, []string{"finance"}, 0.95, "finance-bucket"},
		{"a NaN from a source is replaced", broken, nil, 0.1, ""},
		{"no MCP part", &event.Event{Tenant: "acme"}, nil, 0.1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.Apply(tc.e)
			if !slices.Equal(tc.e.DataClasses, tc.classes) {
				t.Errorf("classes %v, want %v", tc.e.DataClasses, tc.classes)
			}
			if tc.e.Normalized == nil || tc.e.Normalized.Sensitivity != tc.sens {
				t.Errorf("sensitivity %+v, want %v", tc.e.Normalized, tc.sens)
			}
			if got := tc.e.Attributes[AttrCatalogRules]; got != tc.rules {
				t.Errorf("%s = %q, want %q", AttrCatalogRules, got, tc.rules)
			}
		})
	}
}

// Classes the source set must survive, in their spelling, and the source's slice must not be
// written through (the gateway may share it).
func TestCatalogKeepsSourceClasses(t *testing.T) {
	c := mustCatalog(t, "testdata/catalog.yaml")
	shared := make([]string, 1, 8)
	shared[0] = "PII"
	e := toolEvent("acme-data", "db_query")
	e.DataClasses = shared
	c.Apply(e)
	if !slices.Equal(e.DataClasses, []string{"PII", "finance"}) {
		t.Fatalf("classes %v", e.DataClasses)
	}
	if shared[:2][1] != "" {
		t.Fatal("the source's backing array was written")
	}
}

// A source must not be able to forge which rules matched.
func TestCatalogScrubsForgedAttributes(t *testing.T) {
	c := mustCatalog(t, "testdata/catalog.yaml")
	e := toolEvent("x", "y")
	e.Attributes = map[string]string{AttrCatalogRules: "trusted-rule", "mcp.sender": "client"}
	c.Apply(e)
	if _, ok := e.Attributes[AttrCatalogRules]; ok || e.Attributes["mcp.sender"] != "client" {
		t.Fatalf("attributes %v", e.Attributes)
	}
}

func TestNilCatalogAndDirectory(t *testing.T) {
	e := toolEvent("x", "y")
	(*Catalog)(nil).Apply(e)
	(*Directory)(nil).Apply(e)
	if e.Normalized != nil || e.Attributes != nil {
		t.Fatalf("nil data changed the event: %+v", e)
	}
}

// Each broken catalog is refused with its file, line and a message that says what to fix.
func TestCatalogErrors(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"empty", "", "c.yaml: empty file"},
		{"no version", "rules: []\n", "c.yaml:1: version 0: want `version: 1`"},
		{"syntax", "version: 1\nrules: [\n", "c.yaml:2: invalid YAML"},
		{"unknown field", "version: 1\nrules:\n  - id: a\n    tool: [x]\n    classes: [pii]\n", `c.yaml:4: unknown field "tool"`},
		{"sensitivity above 1", "version: 1\nrules:\n  - id: a\n    tools: [x]\n    sensitivity: 1.5\n",
			`c.yaml:5: rule "a": sensitivity 1.5: want a number from 0 to 1`},
		{"negative sensitivity", "version: 1\nrules:\n  - id: a\n    tools: [x]\n    sensitivity: -0.1\n", "c.yaml:5: rule \"a\": sensitivity -0.1"},
		{"NaN sensitivity", "version: 1\nrules:\n  - id: a\n    tools: [x]\n    sensitivity: .nan\n", "c.yaml:5: rule \"a\": sensitivity NaN"},
		{"bad default", "version: 1\ndefault_sensitivity: 2\n", "c.yaml:2: default_sensitivity 2"},
		{"bad class weight", "version: 1\nclass_sensitivity:\n  pii: 7\n", "c.yaml:3: class_sensitivity pii: 7"},
		{"class weight twice", "version: 1\nclass_sensitivity:\n  pii: 0.1\n  PII: 0.2\n", "given twice"},
		{"triple star", "version: 1\nrules:\n  - id: a\n    resources: [\"s3://x/***\"]\n    classes: [pii]\n",
			`c.yaml:4: rule "a": resources "s3://x/***": three or more consecutive '*'`},
		{"trailing backslash", "version: 1\nrules:\n  - id: a\n    tools:\n      - ok\n      - 'x\\'\n    classes: [pii]\n",
			`c.yaml:6: rule "a": tools "x\\": trailing '\'`},
		{"empty server", "version: 1\nrules:\n  - id: a\n    tools: [/x]\n    classes: [pii]\n", "want <server>/<name>"},
		{"duplicate id", "version: 1\nrules:\n  - id: a\n    tools: [x]\n    classes: [pii]\n  - id: a\n    tools: [y]\n    classes: [pii]\n",
			`c.yaml:6: rule "a": id given twice (first at line 3)`},
		{"no id", "version: 1\nrules:\n  - tools: [x]\n    classes: [pii]\n", "c.yaml:3: rule #1: no id"},
		{"matches nothing", "version: 1\nrules:\n  - id: a\n    classes: [pii]\n", `rule "a": matches nothing`},
		{"says nothing", "version: 1\nrules:\n  - id: a\n    tools: [x]\n", `rule "a": gives neither classes nor a sensitivity`},
		{"bad class", "version: 1\nrules:\n  - id: a\n    tools: [x]\n    classes: [ok, \"p i i\"]\n", `c.yaml:5: rule "a": class "p i i"`},
		{"two documents", "version: 1\n---\nversion: 1\n", "c.yaml:2: more than one YAML document"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCatalog([]byte(tc.src), "c.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// All problems are reported at once, so one edit-and-check round fixes a file.
func TestCatalogReportsEveryProblem(t *testing.T) {
	src := "version: 1\nrules:\n  - id: a\n    tools: [x]\n    sensitivity: 3\n  - id: b\n    resources: [\"***\"]\n    classes: [pii]\n"
	_, err := ParseCatalog([]byte(src), "c.yaml")
	if err == nil || !strings.Contains(err.Error(), "c.yaml:5:") || !strings.Contains(err.Error(), "c.yaml:7:") {
		t.Fatalf("want both problems, got %v", err)
	}
}

func TestCatalogExampleLoads(t *testing.T) {
	for _, p := range []string{"testdata/catalog.yaml", "../deploy/local/catalog.yaml"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		mustCatalog(t, p)
	}
}
