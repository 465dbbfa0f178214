package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// TestDemo runs `mcpwatch demo` — the README's main job — against the real Kafka and ClickHouse
// and checks that it tells the story it promises: detection, a verified webhook, enforcement and
// forensic SQL with results, with no audit event lost on the way.
func TestDemo(t *testing.T) {
	testenv.Kafka(t)
	testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"demo", "--topic-prefix", testenv.TopicPrefix(t), "--metrics-addr", "127.0.0.1:0",
		"--log-level", "error"})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"signature verified",
		"action: revoke issued revoke/subject/acme/mallory",
		"action: revoke issued revoke/subject/acme/bob",
		"access revoked by mcpwatch",
		"about bob: score",
		"-- why is bob at its score?",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if !regexp.MustCompile(`alice\s+finance\s+finance-analysts\s+known\s+\["finance","pii"\]\s+0\.7`).MatchString(s) ||
		!regexp.MustCompile(`mallory\s+unknown`).MatchString(s) {
		t.Error("events were not enriched from deploy/local/catalog.yaml and directory.yaml")
	}
	if !regexp.MustCompile(`alice\s+12 calls answered, 0 refused`).MatchString(s) {
		t.Error("alice was not served normally")
	}
	// The subtler attacker: bob's token from another machine at bob's pace, refused once caught,
	// and every webhook says why in one line.
	// Caught on a tools/call, the client reads the refusal's reason; caught on the session's
	// first request, the SDK reports the notification that followed it as Forbidden.
	if !regexp.MustCompile(`the stolen token: \d+ calls answered, [1-9]\d* refused; its client was told: .*(access revoked by mcpwatch: bob|Forbidden)`).MatchString(s) {
		t.Error("the stolen token was not caught and refused")
	}
	// Each line ends with the evidence: "detector/check value (feature observed vs baseline ...)".
	if n := len(regexp.MustCompile(`(?m)^  why: .+ — \S+ [\d.]+ \(\S+ \S+ vs \S+`).FindAllString(s, -1)); n != 2 {
		t.Errorf("%d webhooks explained with their evidence, want 2", n)
	}
	if !strings.Contains(s, "about bob: score") || !regexp.MustCompile(`about bob: score \d+/100, ueba/(concurrent|new_value)`).MatchString(s) {
		t.Error("bob's webhook is not the UEBA's stolen-token finding")
	}
	if m := regexp.MustCompile(`finding → first refused call: (\S+)`).FindStringSubmatch(s); m == nil {
		t.Error("demo did not report the time from finding to refusal")
	} else if d, err := time.ParseDuration(m[1]); err != nil || d > 5*time.Second {
		t.Errorf("finding → refusal %s", m[1])
	}
	if n := len(regexp.MustCompile(`\(\d+ rows\)`).FindAllString(s, -1)); n != 8 {
		t.Errorf("demo printed %d tables, want 7 query results and the metrics", n)
	}
	if regexp.MustCompile(`\(0 rows\)`).MatchString(s) {
		t.Error("a forensic query came back empty")
	}
	if !regexp.MustCompile(`gateway\s+-\s+[1-9]\d*\s+-\s+0\b`).MatchString(s) {
		t.Error("gateway metrics missing or audit events lost")
	}
	if t.Failed() {
		t.Log(s)
	}
}
