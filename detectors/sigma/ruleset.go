package sigma

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/mcpwatch/mcpwatch/event"
)

// RuleSet is a set of compiled rules. It is safe for concurrent use: matching keeps its scratch
// state in a pool.
type RuleSet struct {
	rules []*Rule
	corrs []*Correlation // in evaluation order: each after those it refers to
	index map[string]int // rule id → index in rules
	reg   *registry
	pre   *prefilter // nil when no rule can be skipped
	pool  sync.Pool
	// scanAll evaluates every rule for every event, as before the prefilter (tests and
	// benchmarks compare the two).
	scanAll bool
}

// Match is one rule that matched an event, with the evidence.
type Match struct {
	RuleID string
	Title  string
	Level  string
	Tags   []string // the rule's; shared, do not modify
	// Fields are the values that made the rule's true selections true, in rule order.
	Fields []FieldMatch
}

// FieldMatch is one field of the event that matched a detection item.
type FieldMatch struct {
	// Field is the detection item as written ("mcp.tool|contains"); for a keyword, the text field
	// the keyword was found in.
	Field string
	// Value is the event's value (masked arguments stay masked).
	Value string
}

// MaxFileSize bounds a rule file; Sigma rules are a few kilobytes.
const MaxFileSize = 1 << 20

// Parse loads the rules in one YAML file's content (one rule per document). name is used in
// errors. It returns the rules that compiled and an [*Error] for each that did not.
func Parse(name string, data []byte) (*RuleSet, []error) {
	b := newBuilder()
	b.add(name, data)
	rs := b.set()
	return rs, b.errs
}

// Load loads every *.yml and *.yaml file under root in fsys, in lexical order. A broken file or
// rule is reported as an [*Error] and the good rules still load.
func Load(fsys fs.FS, root string) (*RuleSet, []error) {
	b := newBuilder()
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			b.errs = append(b.errs, &Error{File: p, Reason: err.Error(), kind: ErrInvalid})
			return nil
		}
		if d.IsDir() || !isRuleFile(p) {
			return nil
		}
		b.addFile(p, func() ([]byte, error) { return fs.ReadFile(fsys, p) })
		return nil
	})
	if err != nil {
		b.errs = append(b.errs, err)
	}
	rs := b.set()
	return rs, b.errs
}

// LoadPaths loads rule files and directories (recursively, *.yml and *.yaml) from the operating
// system's file system.
func LoadPaths(paths ...string) (*RuleSet, []error) {
	files, errs := readPaths(paths)
	b := newBuilder()
	b.errs = errs
	for _, f := range files {
		b.add(f.name, f.data)
	}
	rs := b.set()
	return rs, b.errs
}

// ruleFile is a rule file's name and content.
type ruleFile struct {
	name string
	data []byte
}

// readPaths reads the rule files named by paths (files, and directories walked recursively for
// *.yml and *.yaml), in order, and returns an [*Error] for each that cannot be read.
func readPaths(paths []string) ([]ruleFile, []error) {
	var files []ruleFile
	var errs []error
	for _, p := range paths {
		err := filepath.WalkDir(p, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				errs = append(errs, &Error{File: p, Reason: err.Error(), kind: ErrInvalid})
				return nil
			}
			if d.IsDir() || (!isRuleFile(p) && p != "" && d.Type().IsRegular() && !isExplicit(p, paths)) {
				return nil
			}
			data, err := readLimited(p)
			if err != nil {
				errs = append(errs, &Error{File: p, Reason: err.Error(), kind: ErrInvalid})
				return nil
			}
			files = append(files, ruleFile{p, data})
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return files, errs
}

// readLimited reads a file of at most [MaxFileSize] bytes (one byte more, so that add reports
// the size).
func readLimited(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxFileSize+1))
}

func isExplicit(p string, paths []string) bool {
	for _, q := range paths {
		if q == p {
			return true
		}
	}
	return false
}

func isRuleFile(p string) bool {
	ext := strings.ToLower(path.Ext(p))
	return ext == ".yml" || ext == ".yaml"
}

type builder struct {
	reg   *registry
	rules []*Rule
	corrs []*Correlation
	ids   map[string]string // rule or correlation id → "title" at file:line, for duplicates
	names map[string]string // the same for names
	errs  []error
}

func newBuilder() *builder {
	return &builder{reg: newRegistry(), ids: map[string]string{}, names: map[string]string{}}
}

func (b *builder) addFile(name string, read func() ([]byte, error)) {
	data, err := read()
	if err != nil {
		b.errs = append(b.errs, &Error{File: name, Reason: err.Error(), kind: ErrInvalid})
		return
	}
	b.add(name, data)
}

func (b *builder) add(name string, data []byte) {
	if len(data) > MaxFileSize {
		b.errs = append(b.errs, &Error{File: name, Reason: fmt.Sprintf("file is larger than %d bytes", MaxFileSize), kind: ErrInvalid})
		return
	}
	docs, err := parseYAML(name, data)
	if err != nil {
		b.errs = append(b.errs, err)
		return
	}
	if len(docs) == 0 {
		b.errs = append(b.errs, &Error{File: name, Reason: "no Sigma rule in the file", kind: ErrInvalid})
		return
	}
	for _, d := range docs {
		c := ruleCompiler{file: name, reg: b.reg}
		if d.kind == nMap && d.get("correlation") != nil {
			r, err := c.correlation(d)
			if err == nil {
				err = b.claim(name, d, r.ID, r.Name, r.Title)
			}
			if err != nil {
				b.errs = append(b.errs, err)
				continue
			}
			b.corrs = append(b.corrs, r)
			continue
		}
		r, err := c.compile(d)
		if err == nil {
			err = b.claim(name, d, r.ID, r.Name, r.Title)
		}
		if err != nil {
			b.errs = append(b.errs, err)
			continue
		}
		b.rules = append(b.rules, r)
	}
}

// claim records a rule's id and name, or returns the error of one already used in the set.
func (b *builder) claim(file string, d *node, id, name, title string) error {
	where := fmt.Sprintf("%q at %s:%d", title, file, d.line)
	if prev, ok := b.ids[id]; ok {
		return &Error{File: file, Line: d.line, Column: d.col, Rule: id, kind: ErrInvalid,
			Reason: fmt.Sprintf("rule id %s is already used by %s", id, prev)}
	}
	if prev, ok := b.names[name]; ok && name != "" {
		n := keyNode(d, "name")
		return &Error{File: file, Line: n.line, Column: n.col, Rule: id, kind: ErrInvalid,
			Reason: fmt.Sprintf("rule name %q is already used by %s", name, prev)}
	}
	b.ids[id] = where
	if name != "" {
		b.names[name] = where
	}
	return nil
}

func (b *builder) set() *RuleSet {
	b.resolve()
	rs := &RuleSet{rules: b.rules, corrs: b.corrs, reg: b.reg, index: make(map[string]int, len(b.rules))}
	for i, r := range b.rules {
		rs.index[r.ID] = i
	}
	rs.pre = newPrefilter(b.rules)
	n, words := b.reg.n, (len(b.rules)+63)/64
	rs.pool.New = func() any {
		return &evalCtx{reg: b.reg, lowered: make([]string, n), have: make([]bool, n), cand: make([]uint64, words)}
	}
	return rs
}

// Rules returns the loaded detection rules in load order.
func (rs *RuleSet) Rules() []*Rule { return rs.rules }

// Correlations returns the loaded correlation rules, each after those it refers to.
func (rs *RuleSet) Correlations() []*Correlation { return rs.corrs }

// Len is the number of loaded detection rules (correlations not included).
func (rs *RuleSet) Len() int { return len(rs.rules) }

// applies reports whether an event belongs to some mapped logsource: an MCP message seen by the
// gateway or an embedded hook (mcp_call), or a kernel event of a sandboxed server (the kernel
// categories). Each rule then checks its own category.
func applies(e *event.Event) bool {
	return (e.Source == event.SourceMCP && e.MCP != nil) || (e.Source == event.SourceKernel && e.Process != nil)
}

// Match returns the rules that match e, in load order; nil when none does.
func (rs *RuleSet) Match(e *event.Event) []Match { return rs.AppendMatches(nil, e) }

// AppendMatches appends the rules that match e to dst, in load order. It allocates only for
// matches. Rules whose necessary values the event lacks are skipped without being evaluated (see
// prefilter.go); the result is the same as evaluating every rule.
func (rs *RuleSet) AppendMatches(dst []Match, e *event.Event) []Match {
	if len(rs.rules) == 0 || !applies(e) {
		return dst
	}
	ctx := rs.pool.Get().(*evalCtx)
	ctx.e = e
	if rs.pre == nil || rs.scanAll {
		for _, r := range rs.rules {
			dst = ctx.match(r, dst)
		}
	} else {
		rs.pre.candidates(ctx, ctx.cand)
		for w := 0; ; {
			i := nextRule(ctx.cand, &w)
			if i < 0 {
				break
			}
			dst = ctx.match(rs.rules[i], dst)
		}
	}
	ctx.e = nil
	clear(ctx.have)
	rs.pool.Put(ctx)
	return dst
}

// match appends r's match to dst when the event is of r's logsource and r matches it.
func (x *evalCtx) match(r *Rule, dst []Match) []Match {
	if !r.applies(x.e) || !x.cond(r, r.cond) {
		return dst
	}
	m := Match{RuleID: r.ID, Title: r.Title, Level: r.Level, Tags: r.Tags}
	x.evidence = &m.Fields
	x.collect(r, r.cond)
	x.evidence = nil
	return append(dst, m)
}

// evalCtx is the per-event scratch state: lower-cased string fields, computed once per event.
type evalCtx struct {
	e        *event.Event
	reg      *registry
	lowered  []string
	have     []bool
	cand     []uint64 // the prefilter's candidate rules, one bit each; all zero between events
	evidence *[]FieldMatch
}

func (x *evalCtx) lower(f *fieldDef, raw string) string {
	if x.have[f.slot] {
		return x.lowered[f.slot]
	}
	l := strings.ToLower(raw)
	x.lowered[f.slot], x.have[f.slot] = l, true
	return l
}

func (x *evalCtx) cond(r *Rule, c *cond) bool {
	switch c.op {
	case opSel:
		return x.selection(r.sels[c.sel])
	case opNot:
		return !x.cond(r, c.kids[0])
	case opAnd:
		for _, k := range c.kids {
			if !x.cond(r, k) {
				return false
			}
		}
		return true
	case opOr:
		for _, k := range c.kids {
			if x.cond(r, k) {
				return true
			}
		}
		return false
	}
	hits := 0
	for i, k := range c.kids {
		if x.cond(r, k) {
			if hits++; hits >= c.n {
				return true
			}
		}
		if hits+len(c.kids)-i-1 < c.n {
			return false
		}
	}
	return false
}

// collect gathers evidence from the selections that hold in the positive part of the condition
// (not under "not"). It runs only for a rule that matched.
func (x *evalCtx) collect(r *Rule, c *cond) {
	switch c.op {
	case opSel:
		if x.selection(r.sels[c.sel]) {
			x.recordSelection(r.sels[c.sel])
		}
	case opNot:
	default:
		for _, k := range c.kids {
			x.collect(r, k)
		}
	}
}

func (x *evalCtx) recordSelection(s *selection) {
	for _, alt := range s.alts {
		ok := true
		for _, it := range alt {
			if !x.item(it) {
				ok = false
				break
			}
		}
		if ok {
			for _, it := range alt {
				x.recordItem(it)
			}
			return
		}
	}
}

func (x *evalCtx) selection(s *selection) bool {
	for _, alt := range s.alts {
		ok := true
		for _, it := range alt {
			if !x.item(it) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (x *evalCtx) item(it *item) bool {
	if it.all {
		for i := range it.groups {
			if !x.group(it, it.groups[i]) {
				return false
			}
		}
		return true
	}
	for i := range it.groups {
		if x.group(it, it.groups[i]) {
			return true
		}
	}
	return false
}

func (x *evalCtx) group(it *item, g []valueMatcher) bool {
	for i := range g {
		if x.value(it.field, &g[i]) {
			return true
		}
	}
	return false
}

// value matches one compiled value against a field, or against every keyword field when f is nil.
func (x *evalCtx) value(f *fieldDef, m *valueMatcher) bool {
	if f == nil {
		for _, tf := range x.reg.text {
			if x.value(tf, m) {
				return true
			}
		}
		return false
	}
	switch f.kind {
	case kString:
		raw := f.str(x.e)
		switch m.kind {
		case mNull:
			return raw == ""
		case mExists:
			return (raw != "") == m.exists
		case mRegex, mCIDR, mNumber:
			return m.matchString(raw)
		}
		if m.cased {
			return m.matchString(raw)
		}
		return m.matchString(x.lower(f, raw))
	case kList:
		vs := f.list(x.e)
		switch m.kind {
		case mNull:
			return len(vs) == 0
		case mExists:
			return (len(vs) > 0) == m.exists
		}
		for _, v := range vs {
			if m.kind != mRegex && m.kind != mCIDR && m.kind != mNumber && !m.cased {
				v = strings.ToLower(v)
			}
			if m.matchString(v) {
				return true
			}
		}
		return false
	}
	v := f.num(x.e)
	switch m.kind {
	case mNull:
		return v == 0
	case mExists:
		return (v != 0) == m.exists
	case mNumber:
		return m.compare(v)
	}
	return m.matchString(strconv.FormatFloat(v, 'f', -1, 64))
}

func (x *evalCtx) recordItem(it *item) {
	if it.field == nil {
		for _, tf := range x.reg.text {
			for i := range it.groups {
				if x.group(&item{field: tf}, it.groups[i]) {
					x.add(tf.name, x.raw(tf))
					break
				}
			}
		}
		return
	}
	x.add(it.key, x.raw(it.field))
}

func (x *evalCtx) add(field, value string) {
	*x.evidence = append(*x.evidence, FieldMatch{field, value})
}

func (x *evalCtx) raw(f *fieldDef) string {
	switch f.kind {
	case kString:
		return f.str(x.e)
	case kList:
		return strings.Join(f.list(x.e), ",")
	}
	return strconv.FormatFloat(f.num(x.e), 'f', -1, 64)
}

// Severity maps a Sigma level onto the CEF 0–10 scale findings carry.
func Severity(level string) int {
	switch level {
	case "informational":
		return 1
	case "low":
		return 3
	case "medium":
		return 5
	case "high":
		return 8
	case "critical":
		return 10
	}
	return 5
}

// Errors sorts errs by file and position, for stable reports.
func Errors(errs []error) []error {
	out := append([]error(nil), errs...)
	sort.SliceStable(out, func(i, j int) bool {
		var a, b *Error
		if !errors.As(out[i], &a) || !errors.As(out[j], &b) {
			return false
		}
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return out
}
