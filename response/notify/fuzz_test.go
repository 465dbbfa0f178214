package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mcpwatch/mcpwatch/event"
)

// FuzzPayloads builds every vendor's payload from finding text an attacker may control. It never
// panics, always yields valid JSON within each vendor's limits that the local receivers accept,
// and never lets a Slack mention or a markdown link through. If it fails, a crafted tool name can
// crash the notifier or get a notification refused or weaponised.
func FuzzPayloads(f *testing.F) {
	f.Add("alice called tools 20x", "calls_per_min 240 vs 12", "alice", "calls_per_min", "payments/transfer", "acme", 92.0, 9)
	f.Add("<!channel> <https://evil|x> [a](b) {{DATE(x)}}", "\u202Ejs.exe\xff\x00", "<@U1>", "&lt;", "```", "a&b", 100.0, 10)
	f.Add(strings.Repeat("데", 5000), strings.Repeat("<", 4000), strings.Repeat("&", 3000), "\n\n", "\t", "", -1.0, -3)
	f.Fuzz(func(t *testing.T, summary, explanation, subject, feature, observed, tenant string, score float64, sev int) {
		fd := sampleFinding("f-fuzz")
		fd.Summary, fd.Explanation, fd.Principal.Subject, fd.Tenant = summary, explanation, subject, tenant
		fd.Score, fd.Severity = score, sev
		fd.Check = observed
		fd.Evidence = append([]event.Evidence{{Feature: feature, ObservedText: observed, Detail: explanation,
			WindowStart: time.Unix(0, 0), WindowEnd: time.Unix(1, 0)}}, fd.Evidence...)
		fd.Tags = []string{summary, observed}
		m := Message{Finding: fd, Playbook: subject, Actions: []Decided{{Kind: "revoke", Target: subject, Detail: summary}}}
		v := newView(&m, "https://console.example/f/{id}")

		sl, err := marshal(slackPayload(&v))
		if err != nil || !json.Valid(sl) || !utf8.Valid(sl) {
			t.Fatalf("slack: %v", err)
		}
		if p := checkSlack(sl); len(p) > 0 {
			t.Fatalf("slack: %v", p)
		}
		tm, err := marshal(teamsPayload(&v, sev))
		if err != nil || !json.Valid(tm) {
			t.Fatalf("teams: %v", err)
		}
		if p := checkTeams(tm); len(p) > 0 {
			t.Fatalf("teams: %v", p)
		}
		pd, err := marshal(pdPayloadOf(&m, &v, routingKey, DedupPrincipal))
		if err != nil || !json.Valid(pd) {
			t.Fatalf("pagerduty: %v", err)
		}
		if p := checkPagerDuty(pd); len(p) > 0 {
			t.Fatalf("pagerduty: %v", p)
		}
		wh, err := marshal(webhookPayloadOf(&m, time.Now()))
		if err != nil || !json.Valid(wh) {
			t.Fatalf("webhook: %v", err)
		}
	})
}
