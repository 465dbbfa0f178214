package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// benchPolicy has 200 rules in the shapes of real policies: 40 deny rules first in evaluation
// (by principal, data class, network), then 160 allow rules over 40 servers with roles, CIDRs,
// time windows in two zones, amr and risk tiers. The allowed request matches the last allow
// rule, so every rule is looked at.
func benchPolicy(b *testing.B) *Policy {
	var s strings.Builder
	s.WriteString("version: 1\nrules:\n")
	for i := range 40 {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&s, "  - {id: deny-%d, effect: deny, resource: \"tool:*/send_email\", actions: [call], conditions: {data_class: [pii-%d]}}\n", i, i)
		case 1:
			fmt.Fprintf(&s, "  - {id: deny-%d, effect: deny, resource: \"**\", actions: [\"*\"], principals: [sub:banned-%d, client:bot-%d]}\n", i, i, i)
		default:
			fmt.Fprintf(&s, "  - {id: deny-%d, effect: deny, resource: \"resource:s3://secret-%d/**\", actions: [read], conditions: {ip_range: [\"172.16.%d.0/24\", \"fd00:%x::/32\"]}}\n", i, i, i, i)
		}
	}
	for i := range 160 {
		srv := fmt.Sprintf("srv-%d", i%40)
		fmt.Fprintf(&s, `  - id: allow-%d
    resources: ["tool:%s/tool_%d*", "tool:%s/query_%d"]
    actions: [call, list]
    principals: [role:team-%d, group:g-%d]
    conditions:
      - ip_range: ["10.%d.0.0/16", "192.168.1.0/24", "2001:db8:%x::/48"]
      - time: "08:00-20:00"
        timezone: %s
        days: [mon-fri]
      - device_health: compliant
      - auth_methods: [mfa, hwk]
      - step_up_risk: 50
      - max_risk: 80
`, i, srv, i, srv, i, i%20, i, i, i, []string{"Asia/Seoul", "America/New_York"}[i%2])
	}
	p, err := Load(strings.NewReader(s.String()), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if p.Len() != 200 {
		b.Fatalf("%d rules", p.Len())
	}
	return p
}

func benchRequest() Request {
	r := analyst()
	r.Principal.Roles = []string{"team-19"}
	r.Server, r.Tool = "srv-39", "query_159"
	r.SourceIP = netip.MustParseAddr("10.159.3.4")
	return r
}

func BenchmarkEvaluate(b *testing.B) {
	p := benchPolicy(b)
	for _, bc := range []struct {
		name string
		req  func() Request
		rule string
	}{
		{"allow-last-rule", benchRequest, "allow-159"},
		{"default-deny", func() Request { r := benchRequest(); r.Tool = "nope"; return r }, DefaultDenyRule},
		{"deny-near-miss", func() Request { r := benchRequest(); r.SourceIP = netip.MustParseAddr("11.0.0.1"); return r }, DefaultDenyRule},
		{"denied-by-rule", func() Request {
			r := benchRequest()
			r.Server, r.Tool = "mail", "send_email"
			r.DataClasses = []string{"PII-39"}
			return r
		}, "deny-39"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := bc.req()
			if d := p.Evaluate(req); d.Rule != bc.rule {
				b.Fatalf("decision %+v, want rule %s", d, bc.rule)
			}
			b.ReportAllocs()
			for b.Loop() {
				p.Evaluate(req)
			}
		})
	}
}

func BenchmarkEvaluateParallel(b *testing.B) {
	p := benchPolicy(b)
	req := benchRequest()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Evaluate(req)
		}
	})
}

func BenchmarkLoad(b *testing.B) {
	src := mustRead(b, "testdata/example.yaml")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(strings.NewReader(src), "example.yaml"); err != nil {
			b.Fatal(err)
		}
	}
}

func mustRead(b *testing.B, path string) string {
	s, err := readFileErr(path)
	if err != nil {
		b.Fatal(err)
	}
	return string(s)
}
