// Package glob is the pattern language of mcpwatch's access policy and data catalog, so that one
// pattern means the same in both files.
package glob

import (
	"errors"
	"math/bits"
	"strings"
)

// Patterns over target strings such as "tool:sales-db/db_query" or
// "resource:s3://finance-data/q1.csv":
//
//	*    any run of bytes, possibly empty, that contains no '/'
//	**   any run of bytes, possibly empty, including '/'
//	\c   the byte c literally (\* is a literal star, \\ a backslash)
//
// Everything else is literal, including '?', '[' and '{' (they occur in URIs). Three or more stars
// in a row are an error, as is a trailing backslash. Unlike doublestar libraries, "a/**/b" does not
// match "a/b": "**" is simply "anything", so "s3://bucket/**" matches every object under bucket/
// but not "s3://bucket" itself.
//
// Matching never backtracks: a pattern compiles to a fast path (equality, prefix) where it can and
// otherwise runs as a bit-parallel NFA, O(len(target) × len(pattern)/64) in the worst case.

// maxPatternTokens bounds the NFA so its state sets fit in fixed-size arrays (no allocation).
const maxPatternTokens = 1024

const nfaWords = (maxPatternTokens + 1 + 63) / 64

type tokOp uint8

const (
	opLit   tokOp = iota // one literal byte
	opStar               // *  : bytes other than '/'
	opStar2              // ** : any bytes
)

type token struct {
	op tokOp
	c  byte
}

type matchKind uint8

const (
	matchExact    matchKind = iota // no wildcard: s == lit
	matchPrefix2                   // lit + "**": HasPrefix
	matchPrefix1                   // lit + "*": HasPrefix and no '/' after it
	matchAnything                  // "**"
	matchInfix1                    // lit + "*" + suffix: the middle has no '/'
	matchInfix2                    // lit + "**" + suffix
	matchNFA
)

// Pattern is a compiled pattern. The zero value matches only the empty string.
type Pattern struct {
	src    string
	kind   matchKind
	lit    string // exact text, or the literal prefix for the prefix kinds and the NFA pre-check
	suffix string // literal suffix after the last star (NFA pre-check)
	toks   []token
	stars  [nfaWords]uint64 // bit i set when toks[i] is a star (for the epsilon closure)
}

var (
	errTripleStar    = errors.New("three or more consecutive '*' (use * or **)")
	errTrailingSlash = errors.New("trailing '\\' escapes nothing")
	errTooLong       = errors.New("pattern too long")
)

// Compile parses a pattern. It fails on "***", a trailing backslash, or more than
// maxPatternTokens tokens.
func Compile(p string) (*Pattern, error) {
	g := &Pattern{src: p}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch c {
		case '\\':
			if i+1 == len(p) {
				return nil, errTrailingSlash
			}
			i++
			g.toks = append(g.toks, token{op: opLit, c: p[i]})
		case '*':
			n := 1
			for i+1 < len(p) && p[i+1] == '*' {
				n++
				i++
			}
			switch n {
			case 1:
				g.toks = append(g.toks, token{op: opStar})
			case 2:
				g.toks = append(g.toks, token{op: opStar2})
			default:
				return nil, errTripleStar
			}
		default:
			g.toks = append(g.toks, token{op: opLit, c: c})
		}
		if len(g.toks) > maxPatternTokens {
			return nil, errTooLong
		}
	}
	// Literal prefix and suffix, the wildcard count and the last wildcard's kind decide the fast path.
	first, last, nstars := -1, -1, 0
	for i, t := range g.toks {
		if t.op != opLit {
			if first < 0 {
				first = i
			}
			last = i
			nstars++
			g.stars[i/64] |= 1 << (i % 64)
		}
	}
	lits := func(ts []token) string {
		var b strings.Builder
		for _, t := range ts {
			b.WriteByte(t.c)
		}
		return b.String()
	}
	switch {
	case nstars == 0:
		g.kind, g.lit = matchExact, lits(g.toks)
	case nstars == 1 && last == len(g.toks)-1 && first == 0 && g.toks[last].op == opStar2:
		g.kind = matchAnything
	case nstars == 1 && last == len(g.toks)-1:
		g.lit = lits(g.toks[:last])
		if g.toks[last].op == opStar2 {
			g.kind = matchPrefix2
		} else {
			g.kind = matchPrefix1
		}
	default:
		g.kind = matchNFA
		g.lit = lits(g.toks[:first])
		g.suffix = lits(g.toks[last+1:])
		if nstars == 1 {
			g.kind = map[tokOp]matchKind{opStar: matchInfix1, opStar2: matchInfix2}[g.toks[first].op]
		}
	}
	return g, nil
}

// String returns the pattern as written.
func (g *Pattern) String() string { return g.src }

// Literal reports whether the pattern has no wildcard: it matches [Pattern.Prefix] alone.
func (g *Pattern) Literal() bool { return g.kind == matchExact }

// Prefix is the literal text before the first wildcard (all of it for a literal pattern): every
// string the pattern matches starts with it, which lets callers index patterns by prefix.
func (g *Pattern) Prefix() string {
	if g.kind == matchAnything {
		return ""
	}
	return g.lit
}

// All reports whether the pattern is "**": it matches everything.
func (g *Pattern) All() bool { return g.kind == matchAnything }

// Subtree reports whether the pattern is a literal prefix followed by "**": it matches everything
// that starts with [Pattern.Prefix].
func (g *Pattern) Subtree() bool { return g.kind == matchPrefix2 }

// Match reports whether the whole of s matches the pattern.
func (g *Pattern) Match(s string) bool {
	switch g.kind {
	case matchExact:
		return s == g.lit
	case matchAnything:
		return true
	case matchPrefix2:
		return strings.HasPrefix(s, g.lit)
	case matchPrefix1:
		return strings.HasPrefix(s, g.lit) && strings.IndexByte(s[len(g.lit):], '/') < 0
	}
	if len(s) < len(g.lit)+len(g.suffix) || !strings.HasPrefix(s, g.lit) || !strings.HasSuffix(s, g.suffix) {
		return false
	}
	switch g.kind {
	case matchInfix1:
		return strings.IndexByte(s[len(g.lit):len(s)-len(g.suffix)], '/') < 0
	case matchInfix2:
		return true
	}
	return g.nfa(s)
}

// nfa runs the Thompson-style simulation: state i means "toks[:i] matched so far"; a star state
// may stay on a byte (opStar only on bytes other than '/') or be skipped without consuming one.
func (g *Pattern) nfa(s string) bool {
	n := len(g.toks)
	words := n/64 + 1
	var bufA, bufB [nfaWords]uint64
	cur, next := bufA[:words], bufB[:words]
	cur[0] = 1
	g.closure(cur)
	for i := 0; i < len(s); i++ {
		c := s[i]
		clear(next)
		for w, word := range cur {
			for b := word; b != 0; b &= b - 1 {
				st := w*64 + bits.TrailingZeros64(b)
				if st == n {
					continue // accepting state consumes nothing
				}
				switch t := g.toks[st]; t.op {
				case opLit:
					if t.c == c {
						next[(st+1)/64] |= 1 << ((st + 1) % 64)
					}
				case opStar:
					if c != '/' {
						next[w] |= 1 << (st % 64)
					}
				case opStar2:
					next[w] |= 1 << (st % 64)
				}
			}
		}
		g.closure(next)
		alive := uint64(0)
		for _, x := range next {
			alive |= x
		}
		if alive == 0 {
			return false
		}
		cur, next = next, cur
	}
	return cur[n/64]&(1<<(n%64)) != 0
}

// closure adds state i+1 for every live star state i (a star may match nothing). Stars are never
// adjacent ("***" is rejected and "**" is one token), so one shift reaches the fixed point.
func (g *Pattern) closure(set []uint64) {
	var carry uint64
	for w := range set {
		x := set[w] & g.stars[w]
		set[w] |= x<<1 | carry
		carry = x >> 63
	}
}
