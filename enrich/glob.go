package enrich

import (
	"errors"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Patterns use the glob language of the access policy (package policy), so one pattern means
// the same thing in both files:
//
//	*    any run of bytes, possibly empty, that contains no '/'
//	**   any run of bytes, possibly empty, including '/'
//	\c   the character c literally (\* is a literal star, \\ a backslash)
//
// Everything else is literal, including '?', '[' and '{' (they occur in URIs). "***" and a
// trailing backslash are errors. "s3://bucket/**" matches every object under bucket/ but not
// "s3://bucket" itself.
//
// The policy package keeps its matcher unexported, so this is a second, independent
// implementation of the same language: literal, prefix and "anything" patterns take fast paths,
// everything else runs on Go's regexp (RE2: linear time, no backtracking).

const maxPatternLen = 1024

type globKind uint8

const (
	globExact   globKind = iota // no wildcard: s == lit
	globPrefix2                 // lit + "**"
	globPrefix1                 // lit + "*"
	globAny                     // "**"
	globRE                      // anything else: lit is the literal prefix, re the whole pattern
)

// glob is a compiled pattern.
type glob struct {
	src  string
	kind globKind
	lit  string
	re   *regexp.Regexp
}

var (
	errTripleStar    = errors.New("three or more consecutive '*' (use * or **)")
	errTrailingSlash = errors.New("trailing '\\' escapes nothing")
	errPatternLong   = errors.New("pattern longer than 1024 bytes")
	errPatternEmpty  = errors.New("empty pattern")
	errPatternUTF8   = errors.New("pattern is not valid UTF-8")
)

func compileGlob(p string) (*glob, error) {
	switch {
	case p == "":
		return nil, errPatternEmpty
	case len(p) > maxPatternLen:
		return nil, errPatternLong
	case !utf8.ValidString(p):
		return nil, errPatternUTF8
	}
	var (
		lit    strings.Builder // literal text before the first wildcard
		re     strings.Builder
		stars  int
		last   int // 1 or 2: the kind of the last token when it is a wildcard; 0 for a literal
		inLit  = true
		litRun strings.Builder // pending literal text for re
	)
	flush := func() {
		re.WriteString(regexp.QuoteMeta(litRun.String()))
		litRun.Reset()
	}
	re.WriteString(`^(?s:`)
	for i := 0; i < len(p); {
		switch c := p[i]; c {
		case '*':
			n := 1
			for i+n < len(p) && p[i+n] == '*' {
				n++
			}
			if n > 2 {
				return nil, errTripleStar
			}
			flush()
			if n == 1 {
				re.WriteString(`[^/]*`)
			} else {
				re.WriteString(`.*`)
			}
			stars++
			last, inLit = n, false
			i += n
		default:
			if c == '\\' {
				if i+1 == len(p) {
					return nil, errTrailingSlash
				}
				i++
			}
			_, size := utf8.DecodeRuneInString(p[i:])
			litRun.WriteString(p[i : i+size])
			if inLit {
				lit.WriteString(p[i : i+size])
			}
			last = 0
			i += size
		}
	}
	flush()
	re.WriteString(`)$`)
	g := &glob{src: p, lit: lit.String()}
	switch {
	case stars == 0:
		g.kind = globExact
	case stars == 1 && last == 2 && g.lit == "":
		g.kind = globAny
	case stars == 1 && last == 2:
		g.kind = globPrefix2
	case stars == 1 && last == 1:
		g.kind = globPrefix1
	default:
		g.kind = globRE
		g.re = regexp.MustCompile(re.String()) // built from quoted literals and two fixed classes
	}
	return g, nil
}

// literal reports whether the pattern has no wildcard (lit is then the whole of it).
func (g *glob) literal() bool { return g.kind == globExact }

func (g *glob) String() string { return g.src }

// match reports whether the whole of s matches.
func (g *glob) match(s string) bool {
	switch g.kind {
	case globExact:
		return s == g.lit
	case globAny:
		return true
	case globPrefix2:
		return strings.HasPrefix(s, g.lit)
	case globPrefix1:
		return strings.HasPrefix(s, g.lit) && strings.IndexByte(s[len(g.lit):], '/') < 0
	}
	return strings.HasPrefix(s, g.lit) && g.re.MatchString(s)
}
