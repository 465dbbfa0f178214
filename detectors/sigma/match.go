package sigma

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// matchKind is how a compiled value is compared with a field's value.
type matchKind uint8

const (
	mEqual    matchKind = iota // whole value equals s
	mPrefix                    // starts with s
	mSuffix                    // ends with s
	mContains                  // contains s
	mGlob                      // Sigma wildcards: "*" any run, "?" one character
	mRegex                     // RE2 regular expression
	mCIDR                      // an IP inside prefix
	mNumber                    // numeric comparison op num
	mExists                    // the field is present (or absent, when !exists)
	mNull                      // the field is absent (Sigma null)
)

type numOp uint8

const (
	numEq numOp = iota
	numLT
	numLTE
	numGT
	numGTE
)

// valueMatcher is one compiled value of a detection item.
type valueMatcher struct {
	kind   matchKind
	cased  bool   // compare case-sensitively; otherwise s and glob are lower-case
	s      string // mEqual..mContains: the literal
	glob   glob
	re     *regexp.Regexp
	prefix netip.Prefix
	op     numOp
	num    float64
	exists bool
}

// globPart is a literal run of a wildcard pattern followed by what comes after it.
type globPart struct {
	lit  string
	star bool // a "*" follows lit
	one  bool // a "?" follows lit
}

// sigmaString is a Sigma string value with its wildcards resolved: lit is the literal text, and
// wild marks which runes of the original were unescaped wildcards, encoded as parts.
type sigmaString struct {
	parts   []globPart
	literal string // the text with escapes resolved, valid when !hasWild
	hasWild bool
}

// parseSigmaString resolves Sigma's escaping: "*" and "?" are wildcards, "\*", "\?" and "\\"
// escape them and the backslash; a backslash before any other character is a literal backslash.
func parseSigmaString(v string) sigmaString {
	var out sigmaString
	var lit strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && i+1 < len(v) && (v[i+1] == '*' || v[i+1] == '?' || v[i+1] == '\\'):
			lit.WriteByte(v[i+1])
			i++
		case c == '*':
			out.parts = append(out.parts, globPart{lit: lit.String(), star: true})
			lit.Reset()
			out.hasWild = true
		case c == '?':
			out.parts = append(out.parts, globPart{lit: lit.String(), one: true})
			lit.Reset()
			out.hasWild = true
		default:
			lit.WriteByte(c)
		}
	}
	out.parts = append(out.parts, globPart{lit: lit.String()})
	if !out.hasWild {
		out.literal = out.parts[0].lit
	}
	return out
}

// escapeSigma makes a literal safe to use as a Sigma string (used for base64 and windash output).
func escapeSigma(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`)
	return r.Replace(v)
}

// compileString builds the matcher for a Sigma string with a position: "" for the whole value,
// or contains/startswith/endswith, which add a "*" at either end.
func compileString(v sigmaString, position string, cased bool) valueMatcher {
	parts := append([]globPart(nil), v.parts...)
	switch position {
	case "contains":
		parts = append([]globPart{{star: true}}, parts...)
		parts[len(parts)-1].star = true
	case "startswith":
		parts[len(parts)-1].star = true
	case "endswith":
		parts = append([]globPart{{star: true}}, parts...)
	}
	// Fold "x*" "" and similar: merge empty literals between stars.
	parts = simplifyGlob(parts)
	low := func(s string) string {
		if cased {
			return s
		}
		return strings.ToLower(s)
	}
	for i := range parts {
		parts[i].lit = low(parts[i].lit)
	}
	m := valueMatcher{cased: cased}
	// Fast paths for the common shapes.
	switch {
	case len(parts) == 1 && !parts[0].star && !parts[0].one:
		m.kind, m.s = mEqual, parts[0].lit
		return m
	case len(parts) == 1 && parts[0].star:
		m.kind, m.s = mPrefix, parts[0].lit
		return m
	case len(parts) == 2 && parts[0].lit == "" && parts[0].star && !parts[1].star && !parts[1].one:
		m.kind, m.s = mSuffix, parts[1].lit
		return m
	case len(parts) == 2 && parts[0].lit == "" && parts[0].star && parts[1].star:
		m.kind, m.s = mContains, parts[1].lit
		return m
	}
	m.kind, m.glob = mGlob, newGlob(parts)
	return m
}

// simplifyGlob drops empty literals that only separate stars ("**" is "*").
func simplifyGlob(parts []globPart) []globPart {
	out := parts[:0]
	for _, p := range parts {
		if n := len(out); n > 0 && out[n-1].star && p.lit == "" && p.star {
			continue
		}
		out = append(out, p)
	}
	return out
}

// matchString compares a field's value (already lower-case unless m.cased) with m.
func (m *valueMatcher) matchString(v string) bool {
	switch m.kind {
	case mEqual:
		return v == m.s
	case mPrefix:
		return strings.HasPrefix(v, m.s)
	case mSuffix:
		return strings.HasSuffix(v, m.s)
	case mContains:
		return strings.Contains(v, m.s)
	case mGlob:
		return m.glob.match(v)
	case mRegex:
		return m.re.MatchString(v)
	case mCIDR:
		a, err := netip.ParseAddr(v)
		return err == nil && m.prefix.Contains(a.Unmap())
	case mNumber:
		f, err := strconv.ParseFloat(v, 64)
		return err == nil && m.compare(f)
	}
	return false
}

func (m *valueMatcher) compare(f float64) bool {
	switch m.op {
	case numLT:
		return f < m.num
	case numLTE:
		return f <= m.num
	case numGT:
		return f > m.num
	case numGTE:
		return f >= m.num
	}
	return f == m.num
}

// glob is a compiled wildcard pattern: pat holds the bytes, ops says which are wildcards.
type glob struct {
	pat string
	ops []uint8 // opLit, opOne or opStar, one per byte of pat
}

const (
	opLit uint8 = iota
	opOne
	opStar
)

func newGlob(parts []globPart) glob {
	var b strings.Builder
	var ops []uint8
	for _, p := range parts {
		b.WriteString(p.lit)
		for range len(p.lit) {
			ops = append(ops, opLit)
		}
		switch {
		case p.star:
			b.WriteByte('*')
			ops = append(ops, opStar)
		case p.one:
			b.WriteByte('?')
			ops = append(ops, opOne)
		}
	}
	return glob{pat: b.String(), ops: ops}
}

// match is the classic wildcard match that backtracks only to the latest "*": O(len(pat)·len(v))
// at worst, without allocating. "?" consumes one UTF-8 character.
func (g *glob) match(v string) bool {
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(v) {
		if p < len(g.pat) {
			switch g.ops[p] {
			case opLit:
				if g.pat[p] == v[i] {
					p, i = p+1, i+1
					continue
				}
			case opOne:
				_, size := utf8.DecodeRuneInString(v[i:])
				p, i = p+1, i+size
				continue
			case opStar:
				starP, starI = p, i
				p++
				continue
			}
		}
		if starP < 0 {
			return false
		}
		_, size := utf8.DecodeRuneInString(v[starI:])
		starI += size
		p, i = starP+1, starI
	}
	for p < len(g.pat) && g.ops[p] == opStar {
		p++
	}
	return p == len(g.pat)
}
