package enrich

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// The catalog's patterns mean what the policy's mean (docs/enrichment.md promises
// it): the cases mirror policy/glob_test.go.
func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"s3://finance-data/*", "s3://finance-data/q1.csv", true},
		{"s3://finance-data/*", "s3://finance-data/2024/q1.csv", false},
		{"s3://finance-data/**", "s3://finance-data/2024/q1.csv", true},
		{"s3://finance-data/**", "s3://finance-data", false},
		{"s3://*/public/**", "s3://bucket/public/a/b", true},
		{"s3://*/public/**", "s3://bucket/private/public/a", false},
		{"s3://**/public/*", "s3://bucket/x/public/a", true},
		{"s3://**/public/*", "s3://bucket/x/public/a/b", false},
		{"https://x/?q=*", "https://x/?q=1", true}, // ? is literal
		{"https://x/?q=*", "https://x/aq=1", false},
		{"file:///[ab]", "file:///[ab]", true}, // [ is literal
		{"file:///[ab]", "file:///a", false},
		{"file:///{a,b}", "file:///a", false},
		{`x/\*`, "x/*", true},
		{`x/\*`, "x/a", false},
		{`x/\\`, `x/\`, true},
		{`\é*`, "éa", true},
		{"*", "", true},
		{"*", "a/b", false},
		{"**", "a/b", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXb/c", false},
		{"a**b*c", "aX/bYc", true},
		{"a**b*c", "aX/b/Yc", false},
		{"a**b*c", "aXb/Y/c", false},
		{"*a", "a", true},
		{"*a", "ba", true},
		{"*a", "b/a", false},
		{"**a", "b/a", true},
		{"a.b", "aXb", false}, // regular-expression metacharacters are literal
		{"a+*", "a+b", true},
		{"a+*", "aab", false},
		{"x*\n", "xy\n", true},
		{"x**", "x\ny", true},
	}
	for _, tc := range cases {
		g, err := compileGlob(tc.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		if got := g.Match(tc.s); got != tc.want {
			t.Errorf("%q match %q = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
		if got := refMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("reference: %q match %q = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
	for _, bad := range []string{"", "a***", `a\`, strings.Repeat("*a", 1025), "\xff*"} {
		if _, err := compileGlob(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

// Random patterns and strings over a small alphabet agree with a plain recursive matcher, so
// the fast paths and the NFA cannot drift from the documented meaning.
func TestGlobAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(alpha string, n int) string {
		var b strings.Builder
		for range n {
			b.WriteByte(alpha[r.IntN(len(alpha))])
		}
		return b.String()
	}
	for range 20000 {
		p := pick("ab/*.", 1+r.IntN(7))
		if strings.Contains(p, "***") {
			continue
		}
		s := pick("ab/.", r.IntN(8))
		g, err := compileGlob(p)
		if err != nil {
			t.Fatalf("%q: %v", p, err)
		}
		if got, want := g.Match(s), refMatch(p, s); got != want {
			t.Fatalf("%q match %q = %v, reference %v", p, s, got, want)
		}
	}
}

// refMatch is the specification as a backtracking matcher (exponential, fine for tests).
func refMatch(p, s string) bool {
	if p == "" {
		return s == ""
	}
	switch {
	case strings.HasPrefix(p, "**"):
		for i := 0; i <= len(s); i++ {
			if refMatch(p[2:], s[i:]) {
				return true
			}
		}
		return false
	case p[0] == '*':
		for i := 0; i <= len(s); i++ {
			if refMatch(p[1:], s[i:]) {
				return true
			}
			if i < len(s) && s[i] == '/' {
				break
			}
		}
		return false
	case p[0] == '\\' && len(p) > 1:
		p = p[1:]
	}
	return s != "" && s[0] == p[0] && refMatch(p[1:], s[1:])
}
