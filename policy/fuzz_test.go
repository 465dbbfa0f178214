package policy

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// FuzzLoad: any input either fails to load or yields a policy whose Evaluate, Explain and Check
// never panic, and whose Explain agrees with Evaluate.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	files = append(files, "testdata/example.yaml")
	for _, name := range files {
		b, err := readFileErr(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("version: 1\nrules:\n  - {id: a, resource: \"**\", actions: [\"*\"], conditions: {time: \"23:00-01:00\", days: sat-mon, timezone: Europe/London, step_up_risk: 1}}\n"))
	reqs := fuzzRequests()
	// Evaluate through the index must agree with trying every rule.
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := Load(bytes.NewReader(src), "fuzz.yaml")
		if err != nil {
			if p != nil {
				t.Fatal("policy and error")
			}
			return
		}
		for _, r := range reqs {
			d := p.Evaluate(r)
			switch d.Effect {
			case Allow, Deny, StepUp:
			default:
				t.Fatalf("effect %q", d.Effect)
			}
			if d.Rule == "" || d.Reason == "" {
				t.Fatalf("decision without rule or reason: %+v", d)
			}
			if u := unindexed(p).Evaluate(r); u.Rule != d.Rule || u.Effect != d.Effect {
				t.Fatalf("indexed %+v, full scan %+v", d, u)
			}
			if e := p.Explain(r); e.Decision.Rule != d.Rule || e.Decision.Effect != d.Effect {
				t.Fatalf("Explain %+v, Evaluate %+v", e.Decision, d)
			}
		}
		_ = Check(p)
	})
}

func fuzzRequests() []Request {
	base := Request{Tenant: "acme", Principal: event.Principal{Subject: "alice", Roles: []string{"analyst"}, AuthMethods: []string{"mfa"}},
		DeviceHealth: "compliant", SourceIP: netip.MustParseAddr("192.168.1.20"), Time: time.Date(2025, 1, 22, 0, 36, 0, 0, time.UTC),
		Method: "tools/call", Server: "sales-db", Tool: "db_query", Risk: 55, RiskKnown: true, DataClasses: []string{"pii"}}
	rs := []Request{base, {}}
	r := base
	r.Method, r.ResourceURI = "resources/read", "s3://finance-data/q1.csv"
	rs = append(rs, r)
	r = base
	r.Method, r.Prompt, r.Principal, r.SourceIP, r.Time, r.RiskKnown = "prompts/get", "x", event.Principal{}, netip.Addr{}, time.Time{}, false
	rs = append(rs, r)
	r = base
	r.Method, r.SourceIP = "tools/list", netip.MustParseAddr("2001:db8:1::1")
	return append(rs, r)
}
