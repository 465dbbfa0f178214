package main

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/internal/pipeline"
	"github.com/mcpwatch/mcpwatch/policy"
)

// The gateway is zero trust from the command line: no policy file, no gateway, unless --no-policy
// says so explicitly (and then it warns). If this failed, a forgotten flag would run a gateway
// that lets every authenticated principal call every tool.
func TestGatewayRequiresPolicy(t *testing.T) {
	var logs bytes.Buffer
	g := &globals{log: slog.New(slog.NewTextHandler(&logs, nil))}
	var cfg pipeline.Config
	if err := (&stageFlags{}).applyPolicy(g, &cfg); err == nil || !strings.Contains(err.Error(), "--policy-file is required") {
		t.Fatalf("no policy: %v", err)
	}
	if err := (&stageFlags{policyFile: "p.yaml", noPolicy: true}).applyPolicy(g, &cfg); err == nil {
		t.Fatal("--policy-file with --no-policy accepted")
	}
	if err := (&stageFlags{noPolicy: true}).applyPolicy(g, &cfg); err != nil || cfg.PolicyFile != "" ||
		!strings.Contains(logs.String(), "WITHOUT AN ACCESS POLICY") {
		t.Fatalf("--no-policy: %v, %q, logs %q", err, cfg.PolicyFile, logs.String())
	}
	if err := (&stageFlags{policyFile: "p.yaml"}).applyPolicy(g, &cfg); err != nil || cfg.PolicyFile != "p.yaml" {
		t.Fatalf("--policy-file: %v %q", err, cfg.PolicyFile)
	}
}

// The demo embeds its policy; the copy under deploy/local is the one people read and edit. If
// this failed, the demo would enforce a policy nobody can see.
func TestDemoPolicyInSync(t *testing.T) {
	deployed, err := os.ReadFile("../../deploy/local/demo-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(deployed, demoPolicy) {
		t.Fatal("cmd/mcpwatch/demo-policy.yaml differs from deploy/local/demo-policy.yaml: copy it over")
	}
	p, err := policy.Load(bytes.NewReader(demoPolicy), "demo-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if w := policy.Check(p); len(w) > 0 {
		t.Fatalf("demo policy lint: %v", w)
	}
}
