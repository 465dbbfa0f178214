package sigma

import (
	"fmt"
	"strconv"
	"strings"
)

// A condition compiles to a tree of cond nodes over the rule's search identifiers (selections),
// evaluated per event without allocating.
type cond struct {
	op   condOp
	kids []*cond
	sel  int // opSel: the selection's index
	n    int // opOf: how many of kids must match
}

type condOp uint8

const (
	opSel condOp = iota
	opAnd
	opOr
	opNot
	opOf // at least n of kids
)

// condError is a condition problem at a byte offset of the condition text.
type condError struct {
	off         int
	msg         string
	unsupported bool
}

func (e *condError) Error() string { return fmt.Sprintf("condition column %d: %s", e.off+1, e.msg) }

// maxCondDepth bounds nesting in a condition (parentheses and not), so a hostile condition cannot
// exhaust the stack.
const maxCondDepth = 50

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tNumber
	tAnd
	tOr
	tNot
	tOf
	tAll
	tThem
	tLParen
	tRParen
	tPipe
)

type tok struct {
	kind tokKind
	text string
	off  int
}

func lexCondition(src string) ([]tok, error) {
	var toks []tok
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			toks = append(toks, tok{tLParen, "(", i})
			i++
		case c == ')':
			toks = append(toks, tok{tRParen, ")", i})
			i++
		case c == '|':
			// An aggregation follows; the parser refuses it, whatever its syntax.
			toks = append(toks, tok{tPipe, "|", i})
			return append(toks, tok{tEOF, "", len(src)}), nil
		case isIdentByte(c):
			j := i
			for j < len(src) && isIdentByte(src[j]) {
				j++
			}
			w := src[i:j]
			k := tIdent
			switch strings.ToLower(w) {
			case "and":
				k = tAnd
			case "or":
				k = tOr
			case "not":
				k = tNot
			case "of":
				k = tOf
			case "all":
				k = tAll
			case "them":
				k = tThem
			default:
				if _, err := strconv.Atoi(w); err == nil {
					k = tNumber
				}
			}
			toks = append(toks, tok{k, w, i})
			i = j
		default:
			return nil, &condError{off: i, msg: fmt.Sprintf("unexpected character %q", c)}
		}
	}
	return append(toks, tok{tEOF, "", len(src)}), nil
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '*' || c == '-' || c == '.'
}

// condParser is a recursive-descent parser with Sigma's precedence: not binds tighter than and,
// and tighter than or; "N of" / "all of" apply to one pattern.
type condParser struct {
	toks  []tok
	pos   int
	names []string // search identifiers, in definition order
	depth int
}

// parseCondition compiles src against the rule's search identifiers.
func parseCondition(src string, names []string) (*cond, error) {
	toks, err := lexCondition(src)
	if err != nil {
		return nil, err
	}
	p := &condParser{toks: toks, names: names}
	c, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		if t.kind == tPipe {
			return nil, &condError{off: t.off, unsupported: true,
				msg: "aggregation expressions (\"| count() ...\") are not supported (they are deprecated in Sigma); write a correlation rule instead"}
		}
		return nil, &condError{off: t.off, msg: fmt.Sprintf("unexpected %q; expected and, or or the end", t.text)}
	}
	return c, nil
}

func (p *condParser) peek() tok { return p.toks[p.pos] }
func (p *condParser) next() tok { t := p.toks[p.pos]; p.pos++; return t }

func (p *condParser) or() (*cond, error) {
	left, err := p.and()
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tOr {
		return left, nil
	}
	out := &cond{op: opOr, kids: []*cond{left}}
	for p.peek().kind == tOr {
		p.next()
		right, err := p.and()
		if err != nil {
			return nil, err
		}
		out.kids = append(out.kids, right)
	}
	return out, nil
}

func (p *condParser) and() (*cond, error) {
	left, err := p.not()
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tAnd {
		return left, nil
	}
	out := &cond{op: opAnd, kids: []*cond{left}}
	for p.peek().kind == tAnd {
		p.next()
		right, err := p.not()
		if err != nil {
			return nil, err
		}
		out.kids = append(out.kids, right)
	}
	return out, nil
}

func (p *condParser) not() (*cond, error) {
	if p.peek().kind != tNot {
		return p.primary()
	}
	t := p.next()
	if p.depth++; p.depth > maxCondDepth {
		return nil, &condError{off: t.off, msg: fmt.Sprintf("condition nested deeper than %d levels", maxCondDepth)}
	}
	defer func() { p.depth-- }()
	inner, err := p.not()
	if err != nil {
		return nil, err
	}
	return &cond{op: opNot, kids: []*cond{inner}}, nil
}

func (p *condParser) primary() (*cond, error) {
	t := p.next()
	switch t.kind {
	case tLParen:
		if p.depth++; p.depth > maxCondDepth {
			return nil, &condError{off: t.off, msg: fmt.Sprintf("condition nested deeper than %d levels", maxCondDepth)}
		}
		inner, err := p.or()
		p.depth--
		if err != nil {
			return nil, err
		}
		if r := p.next(); r.kind != tRParen {
			return nil, &condError{off: r.off, msg: fmt.Sprintf("expected ) to close the ( at column %d", t.off+1)}
		}
		return inner, nil
	case tNumber, tAll:
		return p.quantified(t)
	case tIdent:
		if strings.Contains(t.text, "*") {
			return nil, &condError{off: t.off, msg: fmt.Sprintf("wildcard %q is only allowed after \"1 of\" or \"all of\"", t.text)}
		}
		for i, name := range p.names {
			if name == t.text {
				return &cond{op: opSel, sel: i}, nil
			}
		}
		return nil, &condError{off: t.off, msg: fmt.Sprintf("%q is not a search identifier of this rule's detection", t.text)}
	case tEOF:
		return nil, &condError{off: t.off, msg: "condition ends where a search identifier, not or ( was expected"}
	case tPipe:
		return nil, &condError{off: t.off, unsupported: true,
			msg: "aggregation expressions (\"| count() ...\") are not supported (they are deprecated in Sigma); write a correlation rule instead"}
	}
	return nil, &condError{off: t.off, msg: fmt.Sprintf("unexpected %q; expected a search identifier, not, ( or \"1 of\"/\"all of\"", t.text)}
}

// quantified parses "N of pattern", "all of pattern", with pattern "them" or an identifier with
// "*" wildcards.
func (p *condParser) quantified(q tok) (*cond, error) {
	n := 0
	if q.kind == tNumber {
		v, _ := strconv.Atoi(q.text)
		if v < 1 {
			return nil, &condError{off: q.off, msg: fmt.Sprintf("\"%s of\" can never be satisfied; use 1 or more", q.text)}
		}
		n = v
	}
	if t := p.next(); t.kind != tOf {
		return nil, &condError{off: t.off, msg: fmt.Sprintf("expected \"of\" after %q", q.text)}
	}
	pat := p.next()
	var kids []*cond
	switch pat.kind {
	case tThem:
		for i, name := range p.names {
			// Sigma: "them" leaves out identifiers that begin with an underscore.
			if !strings.HasPrefix(name, "_") {
				kids = append(kids, &cond{op: opSel, sel: i})
			}
		}
	case tIdent:
		for i, name := range p.names {
			if starMatch(pat.text, name) {
				kids = append(kids, &cond{op: opSel, sel: i})
			}
		}
	default:
		return nil, &condError{off: pat.off, msg: fmt.Sprintf("expected \"them\" or an identifier pattern after \"of\", got %q", pat.text)}
	}
	if len(kids) == 0 {
		return nil, &condError{off: pat.off, msg: fmt.Sprintf("%q matches no search identifier of this rule's detection", pat.text)}
	}
	if q.kind == tAll {
		n = len(kids)
	}
	if n > len(kids) {
		return nil, &condError{off: q.off, msg: fmt.Sprintf("\"%d of %s\" can never be satisfied: only %d identifiers match", n, pat.text, len(kids))}
	}
	return &cond{op: opOf, kids: kids, n: n}, nil
}

// starMatch matches name against pattern where only "*" is special.
func starMatch(pattern, name string) bool {
	var parts []globPart
	for i, lit := range strings.Split(pattern, "*") {
		if i > 0 {
			parts[len(parts)-1].star = true
		}
		parts = append(parts, globPart{lit: lit})
	}
	g := newGlob(parts)
	return g.match(name)
}

// String renders the tree with explicit parentheses; tests use it to check precedence.
func (c *cond) string(names []string) string {
	switch c.op {
	case opSel:
		return names[c.sel]
	case opNot:
		return "not " + c.kids[0].string(names)
	case opAnd, opOr:
		sep := " and "
		if c.op == opOr {
			sep = " or "
		}
		parts := make([]string, len(c.kids))
		for i, k := range c.kids {
			parts[i] = k.string(names)
		}
		return "(" + strings.Join(parts, sep) + ")"
	}
	parts := make([]string, len(c.kids))
	for i, k := range c.kids {
		parts[i] = k.string(names)
	}
	return fmt.Sprintf("%d of (%s)", c.n, strings.Join(parts, ", "))
}
