package privacy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// ErrInvalidQuery marks a request the engine refuses before touching data: an unknown column, a
// filter outside the grammar, bad bounds or ε. The message says what to change.
var ErrInvalidQuery = errors.New("invalid differential-privacy query")

// colType is what a filter may do with a column.
type colType int

const (
	colString colType = iota + 1 // =, !=, IN, LIKE against string literals
	colNumber                    // =, !=, <, <=, >, >=, IN against numbers
	colArray                     // has(column, 'value') only
)

// filterColumns are the columns of the events table a --dp filter may name. Identifiers, free
// text and raw records (id, session_id, request_id, trace_id, token_id, arguments_masked, reason,
// cef, raw) are left out: a filter that pins a single session or request has no business in an
// aggregate, and the pool floor is the only thing standing between it and a single record.
var filterColumns = map[string]colType{
	"tenant": colString, "principal": colString, "source": colString, "observer": colString,
	"subject": colString, "client_id": colString, "issuer": colString, "direction": colString,
	"method": colString, "tool": colString, "resource_uri": colString, "prompt": colString,
	"protocol_version": colString, "transport": colString, "client_name": colString,
	"client_version": colString, "server": colString, "route": colString, "sandbox": colString,
	"src_ip": colString, "dst_ip": colString, "result": colString, "policy_rule": colString,
	"signature": colString, "name": colString, "proc_comm": colString, "proc_syscall": colString,
	"span_name": colString, "span_service": colString,

	"severity": colNumber, "sensitivity": colNumber, "request_bytes": colNumber,
	"response_bytes": colNumber, "latency_ms": colNumber, "http_status": colNumber,
	"error_code": colNumber, "src_port": colNumber, "dst_port": colNumber,
	"span_duration_ms": colNumber, "proc_uid": colNumber,

	"roles": colArray, "auth_methods": colArray, "data_classes": colArray, "pii_kinds": colArray,
}

// Limits that keep a filter small enough to read in the ledger and cheap to evaluate.
const (
	maxFilterLen   = 2000
	maxFilterDepth = 16
	maxFilterTerms = 64
)

// Filter is a parsed --dp filter: a boolean expression over allow-listed event columns,
// comparisons with literals, IN lists, LIKE, has() on array columns, AND, OR, NOT and
// parentheses. Nothing else parses: no functions, subqueries, second statements, FORMAT or
// SETTINGS clauses, so a filter cannot read a row or run other SQL. Literals never reach the SQL
// text; [Filter.SQL] returns them as arguments for the driver to bind.
type Filter struct {
	root node
	text string // canonical form, for the ledger
}

// ParseFilter parses a filter expression. The empty string is the filter that matches every
// record (of the tenant and time window the request gives).
func ParseFilter(s string) (*Filter, error) {
	if len(s) > maxFilterLen {
		return nil, fmt.Errorf("%w: filter is %d bytes, at most %d", ErrInvalidQuery, len(s), maxFilterLen)
	}
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return &Filter{}, nil
	}
	p := &parser{toks: toks}
	n, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errAt(t, "unexpected %s after a complete expression (a filter is one expression; join conditions with AND or OR)", t)
	}
	f := &Filter{root: n}
	var b strings.Builder
	n.text(&b)
	f.text = b.String()
	return f, nil
}

// SQL returns the filter as a SQL boolean expression with a ? for every literal, and the
// literals in order. The empty filter is "1".
func (f *Filter) SQL() (string, []any) {
	if f == nil || f.root == nil {
		return "1", nil
	}
	var b strings.Builder
	var args []any
	f.root.sql(&b, &args)
	return b.String(), args
}

// String is the canonical text of the filter, literals included, as the ledger records it.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	return f.text
}

// ---- lexer

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tOp // = != <> < <= > >=
	tLParen
	tRParen
	tComma
)

type token struct {
	kind tokKind
	s    string // identifier (lower-cased), operator, or the literal's value
	num  float64
	pos  int // byte offset, for errors
}

func (t token) String() string {
	switch t.kind {
	case tEOF:
		return "end of filter"
	case tString:
		return strconv.Quote(t.s)
	case tNumber:
		return "number " + t.s
	}
	return "'" + t.s + "'"
}

func lex(s string) ([]token, error) {
	var out []token
	bad := func(i int, format string, args ...any) error {
		return fmt.Errorf("%w: filter at offset %d: %s", ErrInvalidQuery, i, fmt.Sprintf(format, args...))
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			out = append(out, token{kind: tLParen, s: "(", pos: i})
			i++
		case c == ')':
			out = append(out, token{kind: tRParen, s: ")", pos: i})
			i++
		case c == ',':
			out = append(out, token{kind: tComma, s: ",", pos: i})
			i++
		case c == '=':
			out = append(out, token{kind: tOp, s: "=", pos: i})
			i++
		case c == '!' || c == '<' || c == '>':
			op := string(c)
			if i+1 < len(s) && (s[i+1] == '=' || c == '<' && s[i+1] == '>') {
				op += string(s[i+1])
			}
			if op == "!" {
				return nil, bad(i, "'!' must be followed by '='")
			}
			start := i
			i += len(op)
			if op == "<>" {
				op = "!="
			}
			out = append(out, token{kind: tOp, s: op, pos: start})
		case c == '\'':
			v, n, err := lexString(s[i:])
			if err != nil {
				return nil, bad(i, "%v", err)
			}
			out = append(out, token{kind: tString, s: v, pos: i})
			i += n
		case c == '-' || c == '.' || c >= '0' && c <= '9':
			if c == '-' && i+1 < len(s) && s[i+1] == '-' {
				return nil, bad(i, "comments are not allowed")
			}
			j := i + 1
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
				(s[j] == '-' || s[j] == '+') && (s[j-1] == 'e' || s[j-1] == 'E')) {
				j++
			}
			v, err := strconv.ParseFloat(s[i:j], 64)
			if err != nil || v != v || v > 1e300 || v < -1e300 {
				return nil, bad(i, "%q is not a number", s[i:j])
			}
			out = append(out, token{kind: tNumber, s: s[i:j], num: v, pos: i})
			i = j
		case c == '_' || c < 0x80 && unicode.IsLetter(rune(c)):
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] < 0x80 && (unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j])))) {
				j++
			}
			out = append(out, token{kind: tIdent, s: strings.ToLower(s[i:j]), pos: i})
			i = j
		case c == ';':
			return nil, bad(i, "';' is not allowed: a filter is a single expression, not statements")
		case c == '"' || c == '`':
			return nil, bad(i, "quoted identifiers are not allowed; name columns plainly (tool, result, ...)")
		case c == '/' && i+1 < len(s) && s[i+1] == '*', c == '#':
			return nil, bad(i, "comments are not allowed")
		default:
			return nil, bad(i, "unexpected character %q", rune(c))
		}
		if len(out) > 4*maxFilterTerms {
			return nil, bad(i, "filter too long: at most %d conditions", maxFilterTerms)
		}
	}
	return out, nil
}

// lexString reads a single-quoted literal (a doubled quote or \' for a quote, \\ for a backslash) and returns
// its value and length in bytes. Other backslash escapes are refused rather than guessed.
func lexString(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' && i+1 < len(s) && s[i+1] == '\'':
			b.WriteByte('\'')
			i++
		case c == '\'':
			return b.String(), i + 1, nil
		case c == '\\':
			if i+1 >= len(s) || s[i+1] != '\'' && s[i+1] != '\\' {
				return "", 0, errors.New(`only \' and \\ escapes are allowed in strings`)
			}
			b.WriteByte(s[i+1])
			i++
		case c < 0x20:
			return "", 0, errors.New("control character in string")
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errors.New("unterminated string")
}

// ---- parser

type parser struct {
	toks  []token
	i     int
	terms int
}

func (p *parser) peek() token {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	end := 0
	if len(p.toks) > 0 {
		end = p.toks[len(p.toks)-1].pos + 1
	}
	return token{kind: tEOF, pos: end}
}

func (p *parser) next() token { t := p.peek(); p.i++; return t }

func (p *parser) keyword(k string) bool {
	if t := p.peek(); t.kind == tIdent && t.s == k {
		p.i++
		return true
	}
	return false
}

func (p *parser) errAt(t token, format string, args ...any) error {
	return fmt.Errorf("%w: filter at offset %d: %s", ErrInvalidQuery, t.pos, fmt.Sprintf(format, args...))
}

func (p *parser) or(depth int) (node, error) {
	if depth > maxFilterDepth {
		return nil, p.errAt(p.peek(), "nested deeper than %d levels", maxFilterDepth)
	}
	left, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("or") {
		right, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		left = &boolOp{op: "OR", l: left, r: right}
	}
	return left, nil
}

func (p *parser) and(depth int) (node, error) {
	left, err := p.not(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("and") {
		right, err := p.not(depth)
		if err != nil {
			return nil, err
		}
		left = &boolOp{op: "AND", l: left, r: right}
	}
	return left, nil
}

func (p *parser) not(depth int) (node, error) {
	if p.keyword("not") {
		if depth > maxFilterDepth {
			return nil, p.errAt(p.peek(), "nested deeper than %d levels", maxFilterDepth)
		}
		n, err := p.not(depth + 1)
		if err != nil {
			return nil, err
		}
		return &not{n}, nil
	}
	return p.primary(depth)
}

func (p *parser) primary(depth int) (node, error) {
	t := p.next()
	switch t.kind {
	case tLParen:
		n, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, p.errAt(c, "expected ')', found %s", c)
		}
		return n, nil
	case tIdent:
	default:
		return nil, p.errAt(t, "expected a column name or '(', found %s", t)
	}
	if p.terms++; p.terms > maxFilterTerms {
		return nil, p.errAt(t, "at most %d conditions", maxFilterTerms)
	}
	if t.s == "has" {
		return p.has(t)
	}
	typ, ok := filterColumns[t.s]
	if !ok {
		if p.peek().kind == tLParen {
			return nil, p.errAt(t, "function %s() is not allowed: only has(array_column, 'value') is", t.s)
		}
		switch t.s {
		case "select", "from", "union", "format", "settings", "with", "into", "limit", "where":
			return nil, p.errAt(t, "%s is not allowed: a filter is a condition on event columns, not SQL", strings.ToUpper(t.s))
		}
		return nil, p.errAt(t, "unknown column %q (allowed: %s)", t.s, allowedColumns())
	}
	if typ == colArray {
		return nil, p.errAt(t, "%s is an array column: use has(%s, 'value')", t.s, t.s)
	}
	col := t.s
	negate := p.keyword("not")
	switch {
	case p.keyword("in"):
		return p.in(col, typ, negate)
	case p.keyword("like"):
		if typ != colString {
			return nil, p.errAt(t, "LIKE needs a string column; %s is numeric", col)
		}
		lit := p.next()
		if lit.kind != tString {
			return nil, p.errAt(lit, "LIKE needs a string literal, found %s", lit)
		}
		return &like{col: col, pattern: lit.s, negate: negate}, nil
	case negate:
		return nil, p.errAt(p.peek(), "expected IN or LIKE after NOT")
	}
	op := p.next()
	if op.kind != tOp {
		return nil, p.errAt(op, "expected a comparison (=, !=, <, <=, >, >=, IN, LIKE) after %s, found %s", col, op)
	}
	if typ == colString && op.s != "=" && op.s != "!=" {
		return nil, p.errAt(op, "%s is a string column: compare it with =, !=, IN or LIKE", col)
	}
	lit, err := p.literal(typ, col)
	if err != nil {
		return nil, err
	}
	return &cmp{col: col, op: op.s, val: lit}, nil
}

func (p *parser) literal(typ colType, col string) (any, error) {
	t := p.next()
	switch {
	case typ == colString && t.kind == tString:
		return t.s, nil
	case typ == colNumber && t.kind == tNumber:
		return t.num, nil
	case typ == colString:
		return nil, p.errAt(t, "%s is a string column: compare it with a 'quoted' string, found %s", col, t)
	}
	return nil, p.errAt(t, "%s is a numeric column: compare it with a number, found %s", col, t)
}

func (p *parser) in(col string, typ colType, negate bool) (node, error) {
	if t := p.next(); t.kind != tLParen {
		return nil, p.errAt(t, "expected '(' after IN, found %s", t)
	}
	n := &in{col: col, negate: negate}
	for {
		v, err := p.literal(typ, col)
		if err != nil {
			return nil, err
		}
		if n.vals = append(n.vals, v); len(n.vals) > maxFilterTerms {
			return nil, p.errAt(p.peek(), "IN list longer than %d", maxFilterTerms)
		}
		t := p.next()
		if t.kind == tRParen {
			return n, nil
		}
		if t.kind != tComma {
			return nil, p.errAt(t, "expected ',' or ')' in IN list, found %s", t)
		}
	}
}

func (p *parser) has(fn token) (node, error) {
	if t := p.next(); t.kind != tLParen {
		return nil, p.errAt(t, "expected '(' after has")
	}
	c := p.next()
	if c.kind != tIdent || filterColumns[c.s] != colArray {
		return nil, p.errAt(c, "has() takes an array column (roles, auth_methods, data_classes, pii_kinds), found %s", c)
	}
	if t := p.next(); t.kind != tComma {
		return nil, p.errAt(t, "expected ',' in has(%s, 'value')", c.s)
	}
	v := p.next()
	if v.kind != tString {
		return nil, p.errAt(v, "has(%s, ...) needs a 'quoted' string, found %s", c.s, v)
	}
	if t := p.next(); t.kind != tRParen {
		return nil, p.errAt(t, "expected ')' to close has(")
	}
	_ = fn
	return &hasNode{col: c.s, val: v.s}, nil
}

func allowedColumns() string {
	var s, n []string
	for c, t := range filterColumns {
		switch t {
		case colString:
			s = append(s, c)
		case colNumber:
			n = append(n, c)
		}
	}
	slices.Sort(s)
	slices.Sort(n)
	return strings.Join(s, ", ") + "; numeric: " + strings.Join(n, ", ") + "; arrays via has(): roles, auth_methods, data_classes, pii_kinds"
}

// ---- AST

type node interface {
	sql(b *strings.Builder, args *[]any)
	text(b *strings.Builder)
}

type boolOp struct {
	op   string
	l, r node
}

func (n *boolOp) sql(b *strings.Builder, args *[]any) {
	b.WriteByte('(')
	n.l.sql(b, args)
	b.WriteString(" " + n.op + " ")
	n.r.sql(b, args)
	b.WriteByte(')')
}

func (n *boolOp) text(b *strings.Builder) {
	b.WriteByte('(')
	n.l.text(b)
	b.WriteString(" " + n.op + " ")
	n.r.text(b)
	b.WriteByte(')')
}

type not struct{ n node }

func (n *not) sql(b *strings.Builder, args *[]any) {
	b.WriteString("NOT (")
	n.n.sql(b, args)
	b.WriteByte(')')
}

func (n *not) text(b *strings.Builder) {
	b.WriteString("NOT (")
	n.n.text(b)
	b.WriteByte(')')
}

type cmp struct {
	col, op string
	val     any
}

func (n *cmp) sql(b *strings.Builder, args *[]any) {
	b.WriteString(n.col + " " + n.op + " ?")
	*args = append(*args, n.val)
}

func (n *cmp) text(b *strings.Builder) { b.WriteString(n.col + " " + n.op + " " + quote(n.val)) }

type in struct {
	col    string
	vals   []any
	negate bool
}

func (n *in) sql(b *strings.Builder, args *[]any) {
	b.WriteString(n.col)
	if n.negate {
		b.WriteString(" NOT")
	}
	b.WriteString(" IN (")
	for i, v := range n.vals {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('?')
		*args = append(*args, v)
	}
	b.WriteByte(')')
}

func (n *in) text(b *strings.Builder) {
	b.WriteString(n.col)
	if n.negate {
		b.WriteString(" NOT")
	}
	b.WriteString(" IN (")
	for i, v := range n.vals {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(v))
	}
	b.WriteByte(')')
}

type like struct {
	col, pattern string
	negate       bool
}

func (n *like) sql(b *strings.Builder, args *[]any) {
	b.WriteString(n.col)
	if n.negate {
		b.WriteString(" NOT")
	}
	b.WriteString(" LIKE ?")
	*args = append(*args, n.pattern)
}

func (n *like) text(b *strings.Builder) {
	b.WriteString(n.col)
	if n.negate {
		b.WriteString(" NOT")
	}
	b.WriteString(" LIKE " + quote(n.pattern))
}

type hasNode struct{ col, val string }

func (n *hasNode) sql(b *strings.Builder, args *[]any) {
	b.WriteString("has(" + n.col + ", ?)")
	*args = append(*args, n.val)
}

func (n *hasNode) text(b *strings.Builder) { b.WriteString("has(" + n.col + ", " + quote(n.val) + ")") }

func quote(v any) string {
	switch v := v.(type) {
	case string:
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}
