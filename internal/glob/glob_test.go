package glob

import (
	"path"
	"strings"
	"testing"
)

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"tool:sales-db/db_query", "tool:sales-db/db_query", true},
		{"tool:sales-db/db_query", "tool:sales-db/db_query2", false},
		{"tool:sales-db/*", "tool:sales-db/db_query", true},
		{"tool:sales-db/*", "tool:sales-db/", true}, // the list catalogue
		{"tool:sales-db/*", "tool:sales-db/a/b", false},
		{"tool:*/send_email", "tool:mail/send_email", true},
		{"tool:*/send_email", "tool:a/b/send_email", false},
		{"tool:*/send_*", "tool:mail/send_sms", true},
		{"tool:**", "tool:a/b/c", true},
		{"resource:s3://finance-data/*", "resource:s3://finance-data/q1.csv", true},
		{"resource:s3://finance-data/*", "resource:s3://finance-data/2024/q1.csv", false},
		{"resource:s3://finance-data/**", "resource:s3://finance-data/2024/q1.csv", true},
		{"resource:s3://finance-data/**", "resource:s3://finance-data", false},
		{"resource:s3://*/public/**", "resource:s3://bucket/public/a/b", true},
		{"resource:s3://*/public/**", "resource:s3://bucket/private/public/a", false},
		{"resource:s3://**/public/*", "resource:s3://bucket/x/public/a", true},
		{"resource:s3://**/public/*", "resource:s3://bucket/x/public/a/b", false},
		{"resource:https://x/?q=*", "resource:https://x/?q=1", true}, // ? is literal
		{"resource:https://x/?q=*", "resource:https://x/aq=1", false},
		{"resource:file:///[ab]", "resource:file:///[ab]", true}, // [ is literal
		{"resource:file:///[ab]", "resource:file:///a", false},
		{`resource:x/\*`, "resource:x/*", true},
		{`resource:x/\*`, "resource:x/a", false},
		{`resource:x/\\`, `resource:x/\`, true},
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
		{"", "", true},
		{"", "a", false},
	}
	for _, tc := range cases {
		g, err := Compile(tc.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		if got := g.Match(tc.s); got != tc.want {
			t.Errorf("%q match %q = %v, want %v (kind %d)", tc.pattern, tc.s, got, tc.want, g.kind)
		}
		if got := refMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("reference: %q match %q = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
	for _, bad := range []string{"a***", `a\`, strings.Repeat("a", maxPatternTokens+1)} {
		if _, err := Compile(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

// The NFA stays linear on inputs that make backtracking matchers exponential.
func TestGlobPathological(t *testing.T) {
	g, err := Compile(strings.Repeat("a*", 30) + "b")
	if err != nil {
		t.Fatal(err)
	}
	if g.Match(strings.Repeat("a", 4000)) {
		t.Fatal("matched")
	}
	g2, _ := Compile(strings.Repeat("**a", 30) + "b")
	if g2.Match(strings.Repeat("a/", 2000)) {
		t.Fatal("matched")
	}
}

// refMatch is a plain definition of the pattern language: memoized recursion over (i, j).
func refMatch(pattern, s string) bool {
	type key struct{ i, j int }
	memo := map[key]bool{}
	var m func(i, j int) bool
	m = func(i, j int) bool {
		k := key{i, j}
		if v, ok := memo[k]; ok {
			return v
		}
		var r bool
		switch {
		case i == len(pattern):
			r = j == len(s)
		case strings.HasPrefix(pattern[i:], "**"):
			r = m(i+2, j) || (j < len(s) && m(i, j+1))
		case pattern[i] == '*':
			r = m(i+1, j) || (j < len(s) && s[j] != '/' && m(i, j+1))
		case pattern[i] == '\\' && i+1 < len(pattern):
			r = j < len(s) && s[j] == pattern[i+1] && m(i+2, j+1)
		default:
			r = j < len(s) && s[j] == pattern[i] && m(i+1, j+1)
		}
		memo[k] = r
		return r
	}
	return m(0, 0)
}

// FuzzMatch checks the compiled matcher against the reference definition and, for patterns in
// the language they share, against path.Match.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"tool:*/send_email", "tool:mail/send_email"}, {"resource:s3://b/**", "resource:s3://b/x/y"},
		{"a*b**c*", "aXb/c/Yc"}, {`x\*y`, "x*y"}, {"**", ""}, {"*/*", "a/"}, {"a*", "a/b"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 64 || len(s) > 256 {
			return
		}
		g, err := Compile(pattern)
		if err != nil {
			if !strings.Contains(pattern, "***") && !strings.HasSuffix(pattern, `\`) {
				t.Fatalf("%q: unexpected error %v", pattern, err)
			}
			return
		}
		got := g.Match(s)
		if want := refMatch(pattern, s); got != want {
			t.Fatalf("%q match %q = %v, reference %v", pattern, s, got, want)
		}
		if !strings.ContainsAny(pattern, `?[\`) && !strings.Contains(pattern, "**") {
			if want, err := path.Match(pattern, s); err == nil && got != want {
				t.Fatalf("%q match %q = %v, path.Match %v", pattern, s, got, want)
			}
		}
	})
}
