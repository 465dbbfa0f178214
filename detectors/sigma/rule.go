package sigma

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/mcpwatch/mcpwatch/event"
)

// Meta is what a detection or correlation rule says about itself.
type Meta struct {
	ID    string
	Title string
	// Name is the rule's optional "name", by which correlation rules may refer to it.
	Name           string
	Description    string
	Status         string // stable, test, experimental, deprecated, unsupported; "" if not given
	Level          string // informational, low, medium, high, critical; "" if not given
	Tags           []string
	FalsePositives []string
	References     []string
	Author         string
	Date           string
	Modified       string
}

// Rule is one loaded Sigma detection rule, compiled.
type Rule struct {
	Meta
	// Fields are the rule's "fields": what an analyst should look at when it fires.
	Fields    []string
	Logsource Logsource
	// Condition is the condition as written (several are joined with " or ").
	Condition string

	// File and Line locate the rule's document.
	File string
	Line int

	// applies reports whether an event belongs to the rule's logsource.
	applies func(*event.Event) bool

	sels  []*selection
	names []string
	cond  *cond
	// output is false when only correlation rules use the rule (see [Rule.Output]).
	output bool
}

// Output reports whether a match of the rule is a finding of its own: false when correlation
// rules refer to it and none of them says "generate: true", so it only feeds them.
func (r *Rule) Output() bool { return r.output }

// selection is a search identifier: an OR of alternatives, each an AND of items.
type selection struct {
	name string
	alts [][]*item
}

// item is one "field|modifiers: values" entry, or a keyword list (field nil).
type item struct {
	field *fieldDef
	key   string // as written, for evidence
	all   bool   // every value group must match (modifier "all"), not one
	// groups are the values; a value a modifier expands (base64offset, windash) is a group of
	// alternatives, any of which matches.
	groups [][]valueMatcher
}

var (
	statuses = map[string]bool{"stable": true, "test": true, "experimental": true, "deprecated": true, "unsupported": true}
	levels   = map[string]bool{"informational": true, "low": true, "medium": true, "high": true, "critical": true}
)

// ruleCompiler turns one YAML document into a [Rule], or the first error with its position.
type ruleCompiler struct {
	file string
	reg  *registry
	rule *Rule
}

func (c *ruleCompiler) errAt(n *node, kind error, format string, args ...any) *Error {
	e := &Error{File: c.file, Reason: fmt.Sprintf(format, args...), kind: kind}
	if n != nil {
		e.Line, e.Column = n.line, n.col
	}
	if c.rule != nil {
		e.Rule = c.rule.ID
		if e.Rule == "" {
			e.Rule = c.rule.Title
		}
	}
	return e
}

func (c *ruleCompiler) invalid(n *node, format string, args ...any) *Error {
	return c.errAt(n, ErrInvalid, format, args...)
}

func (c *ruleCompiler) unsupported(n *node, format string, args ...any) *Error {
	return c.errAt(n, ErrUnsupported, format, args...)
}

// keyNode returns the key node of k in mapping m (for positions), or m.
func keyNode(m *node, k string) *node {
	for _, key := range m.keys {
		if key.str == k {
			return key
		}
	}
	return m
}

func (c *ruleCompiler) str(doc *node, key string, required bool) (string, error) {
	v := doc.get(key)
	if v == nil || v.kind == nNull {
		if required {
			return "", c.invalid(doc, "required field %q is missing", key)
		}
		return "", nil
	}
	if v.kind != nScalar {
		return "", c.invalid(v, "%q must be a string, not %s", key, v.kindName())
	}
	return v.str, nil
}

// strList reads a list of strings; a single string is a list of one.
func (c *ruleCompiler) strList(doc *node, key string) ([]string, error) {
	v := doc.get(key)
	if v == nil || v.kind == nNull {
		return nil, nil
	}
	if v.kind == nScalar {
		return []string{v.str}, nil
	}
	if v.kind != nSeq {
		return nil, c.invalid(v, "%q must be a list of strings, not %s", key, v.kindName())
	}
	out := make([]string, 0, len(v.items))
	for _, it := range v.items {
		if it.kind != nScalar {
			return nil, c.invalid(it, "%q must be a list of strings; this entry is %s", key, it.kindName())
		}
		out = append(out, it.str)
	}
	return out, nil
}

func (c *ruleCompiler) compile(doc *node) (*Rule, error) {
	if doc.kind != nMap {
		return nil, c.invalid(doc, "a Sigma rule must be a mapping, not %s", doc.kindName())
	}
	r := &Rule{File: c.file, Line: doc.line}
	c.rule = r
	// Rules of kinds this engine does not run are refused before anything else, so their reason
	// is the first a person reads. (Correlation rules are compiled by [ruleCompiler.correlation].)
	if doc.get("filter") != nil {
		return nil, c.unsupported(keyNode(doc, "filter"), "Sigma filter rules are not supported yet")
	}
	if doc.get("action") != nil {
		return nil, c.unsupported(keyNode(doc, "action"), "rule collections (action: global/reset/repeat) are not supported; write each rule as its own document")
	}
	if err := c.meta(doc, &r.Meta); err != nil {
		return nil, err
	}
	var err error
	if r.Fields, err = c.strList(doc, "fields"); err != nil {
		return nil, err
	}
	if err := c.logsource(doc); err != nil {
		return nil, err
	}
	if err := c.detection(doc); err != nil {
		return nil, err
	}
	return r, nil
}

// meta reads what every rule says about itself: title and id (a UUID) are required, status and
// level must be values of the specification.
func (c *ruleCompiler) meta(doc *node, m *Meta) error {
	var err error
	if m.Title, err = c.str(doc, "title", true); err != nil {
		return err
	}
	if m.Title == "" {
		return c.invalid(doc.get("title"), "title must not be empty")
	}
	c.rule.Title = m.Title
	if m.ID, err = c.str(doc, "id", false); err != nil {
		return err
	}
	if m.ID == "" {
		// The correlation specification makes the id optional; mcpwatch names findings by it.
		return c.invalid(doc, "required field %q is missing: a rule needs an id (a UUID), by which mcpwatch names its findings", "id")
	}
	if _, perr := uuid.Parse(m.ID); perr != nil || len(m.ID) != 36 {
		return c.invalid(doc.get("id"), "id %q is not a UUID (write it as xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", m.ID)
	}
	c.rule.ID = m.ID
	if m.Status, err = c.str(doc, "status", false); err != nil {
		return err
	}
	if m.Status != "" && !statuses[m.Status] {
		return c.invalid(doc.get("status"), "status %q is not one of stable, test, experimental, deprecated, unsupported", m.Status)
	}
	if m.Level, err = c.str(doc, "level", false); err != nil {
		return err
	}
	if m.Level != "" && !levels[m.Level] {
		return c.invalid(doc.get("level"), "level %q is not one of informational, low, medium, high, critical", m.Level)
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"name", &m.Name}, {"description", &m.Description}, {"author", &m.Author}, {"date", &m.Date}, {"modified", &m.Modified}} {
		if *f.dst, err = c.str(doc, f.key, false); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		key string
		dst *[]string
	}{{"tags", &m.Tags}, {"falsepositives", &m.FalsePositives}, {"references", &m.References}} {
		if *f.dst, err = c.strList(doc, f.key); err != nil {
			return err
		}
	}
	return nil
}

func (c *ruleCompiler) logsource(doc *node) error {
	ls := doc.get("logsource")
	if ls == nil {
		return c.invalid(doc, "required field %q is missing", "logsource")
	}
	if ls.kind != nMap {
		return c.invalid(ls, "logsource must be a mapping (product, category, service), not %s", ls.kindName())
	}
	var err error
	r := c.rule
	if r.Logsource.Product, err = c.str(ls, "product", false); err != nil {
		return err
	}
	if r.Logsource.Category, err = c.str(ls, "category", false); err != nil {
		return err
	}
	if r.Logsource.Service, err = c.str(ls, "service", false); err != nil {
		return err
	}
	switch p := r.Logsource.Product; p {
	case "", Product:
	default:
		return c.unsupported(ls.get("product"), "logsource product %q has no mapping onto mcpwatch events; use product: %s", p, Product)
	}
	if svc := r.Logsource.Service; svc != "" {
		return c.unsupported(ls.get("service"), "logsource service %q has no mapping onto mcpwatch events; leave service out", svc)
	}
	const mapped = "mapped: mcp_call, process_creation, file_access, network_connection"
	switch cat := r.Logsource.Category; {
	case categories[cat] != nil:
		r.applies = categories[cat]
	case unmappedCategories[cat] != "":
		return c.unsupported(ls.get("category"), "logsource category %q is not mapped: %s", cat, unmappedCategories[cat])
	case cat == "":
		return c.invalid(ls, "logsource needs a category (%s)", mapped)
	default:
		return c.unsupported(ls.get("category"), "logsource category %q has no mapping onto mcpwatch events (%s)", cat, mapped)
	}
	return nil
}

func (c *ruleCompiler) detection(doc *node) error {
	det := doc.get("detection")
	if det == nil {
		return c.invalid(doc, "required field %q is missing", "detection")
	}
	if det.kind != nMap {
		return c.invalid(det, "detection must be a mapping of search identifiers and a condition, not %s", det.kindName())
	}
	r := c.rule
	var condNode *node
	for i, k := range det.keys {
		v := det.vals[i]
		switch k.str {
		case "condition":
			condNode = v
			continue
		case "timeframe":
			return c.unsupported(k, "detection.timeframe belongs to aggregation expressions, which are not supported; write a correlation rule instead")
		}
		if k.str == "" || strings.ContainsAny(k.str, " \t|()*") {
			return c.invalid(k, "search identifier %q must be a word (letters, digits, _, -, .)", k.str)
		}
		sel, err := c.selection(k.str, v)
		if err != nil {
			return err
		}
		r.sels = append(r.sels, sel)
		r.names = append(r.names, k.str)
	}
	if condNode == nil {
		return c.invalid(keyNode(doc, "detection"), "detection has no condition")
	}
	var conds []*node
	switch condNode.kind {
	case nScalar:
		conds = []*node{condNode}
	case nSeq:
		// A list of conditions (deprecated in Sigma) matches when any of them does.
		conds = condNode.items
	}
	if len(conds) == 0 {
		return c.invalid(condNode, "condition must be a string, not %s", condNode.kindName())
	}
	var texts []string
	var trees []*cond
	for _, cn := range conds {
		if cn.kind != nScalar || cn.scalar != sString {
			return c.invalid(cn, "condition must be a string, not %s", cn.kindName())
		}
		t, err := parseCondition(cn.str, r.names)
		if err != nil {
			var ce *condError
			if errors.As(err, &ce) {
				kind := ErrInvalid
				if ce.unsupported {
					kind = ErrUnsupported
				}
				return c.errAt(cn, kind, "condition %q: at column %d: %s", cn.str, ce.off+1, ce.msg)
			}
			return c.invalid(cn, "condition: %v", err)
		}
		texts = append(texts, cn.str)
		trees = append(trees, t)
	}
	r.Condition = strings.Join(texts, " or ")
	r.cond = trees[0]
	if len(trees) > 1 {
		r.cond = &cond{op: opOr, kids: trees}
	}
	return nil
}

func (c *ruleCompiler) selection(name string, v *node) (*selection, error) {
	sel := &selection{name: name}
	switch v.kind {
	case nMap:
		alt, err := c.mapItems(v)
		if err != nil {
			return nil, err
		}
		sel.alts = [][]*item{alt}
	case nSeq:
		if len(v.items) == 0 {
			return nil, c.invalid(v, "search identifier %q is an empty list", name)
		}
		maps := 0
		for _, it := range v.items {
			if it.kind == nMap {
				maps++
			}
			if it.kind == nSeq {
				return nil, c.invalid(it, "search identifier %q: a list inside a list is not Sigma; use a list of mappings or of values", name)
			}
		}
		switch maps {
		case len(v.items):
			for _, it := range v.items {
				alt, err := c.mapItems(it)
				if err != nil {
					return nil, err
				}
				sel.alts = append(sel.alts, alt)
			}
		case 0:
			it, err := c.item(nil, "", nil, v)
			if err != nil {
				return nil, err
			}
			sel.alts = [][]*item{{it}}
		default:
			return nil, c.invalid(v, "search identifier %q mixes mappings and plain values; use either a list of mappings or a keyword list", name)
		}
	case nScalar:
		it, err := c.item(nil, "", nil, v)
		if err != nil {
			return nil, err
		}
		sel.alts = [][]*item{{it}}
	default:
		return nil, c.invalid(v, "search identifier %q must be a mapping, a list of mappings or a keyword list, not %s", name, v.kindName())
	}
	return sel, nil
}

func (c *ruleCompiler) mapItems(m *node) ([]*item, error) {
	if len(m.keys) == 0 {
		return nil, c.invalid(m, "empty mapping in a selection")
	}
	items := make([]*item, 0, len(m.keys))
	for i, k := range m.keys {
		parts := strings.Split(k.str, "|")
		var f *fieldDef
		if parts[0] != "" {
			var reason string
			if f, reason = c.reg.lookup(parts[0], c.rule.Logsource.Category); f == nil {
				return nil, c.unsupported(k, "%s", reason)
			}
		}
		it, err := c.item(f, k.str, k, m.vals[i])
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

// modifiers a rule may use, and why the others are refused.
var refusedModifiers = map[string]string{
	"expand":   "modifier \"expand\" needs placeholder values from a processing pipeline, which mcpwatch does not have",
	"fieldref": "modifier \"fieldref\" (compare with another field) is not supported yet",
	"utf16le":  "modifier \"utf16le\" is not supported: mcpwatch events are UTF-8 text, so UTF-16 encodings never occur in them",
	"utf16be":  "modifier \"utf16be\" is not supported: mcpwatch events are UTF-8 text, so UTF-16 encodings never occur in them",
	"utf16":    "modifier \"utf16\" is not supported: mcpwatch events are UTF-8 text, so UTF-16 encodings never occur in them",
	"wide":     "modifier \"wide\" is not supported: mcpwatch events are UTF-8 text, so UTF-16 encodings never occur in them",
	"minute":   "timestamp modifiers (minute, hour, day, week, month, year) are not supported",
	"hour":     "timestamp modifiers (minute, hour, day, week, month, year) are not supported",
	"day":      "timestamp modifiers (minute, hour, day, week, month, year) are not supported",
	"week":     "timestamp modifiers (minute, hour, day, week, month, year) are not supported",
	"month":    "timestamp modifiers (minute, hour, day, week, month, year) are not supported",
	"year":     "timestamp modifiers (minute, hour, day, week, month, year) are not supported",
}

var numOps = map[string]numOp{"lt": numLT, "lte": numLTE, "gt": numGT, "gte": numGTE}

// maxExpansion bounds how many alternatives windash may make of one value.
const maxExpansion = 1024

// item compiles "key: values"; f is nil for keywords. keyNode positions errors about the key.
func (c *ruleCompiler) item(f *fieldDef, key string, kn *node, vals *node) (*item, error) {
	at := kn
	if at == nil {
		at = vals
	}
	it := &item{field: f, key: key}
	var mods []string
	if key != "" {
		mods = strings.Split(key, "|")[1:]
	}
	var (
		position   string // contains, startswith, endswith
		special    string // re, cidr, exists, lt, lte, gt, gte
		transforms []string
		cased      bool
		reFlags    string
		seen       = map[string]bool{}
	)
	for _, m := range mods {
		if seen[m] {
			return nil, c.invalid(at, "modifier %q appears twice in %q", m, key)
		}
		seen[m] = true
		switch m {
		case "contains", "startswith", "endswith":
			if position != "" {
				return nil, c.invalid(at, "modifiers %q and %q cannot be combined", position, m)
			}
			position = m
		case "all":
			it.all = true
		case "cased":
			cased = true
		case "base64", "base64offset":
			if position != "" {
				return nil, c.invalid(at, "modifier %q after %q would encode the wildcards; write %s|%s", m, position, m, position)
			}
			if seen["base64"] && seen["base64offset"] {
				return nil, c.invalid(at, "modifiers base64 and base64offset cannot be combined")
			}
			transforms = append(transforms, m)
		case "windash":
			transforms = append(transforms, m)
		case "re", "cidr", "exists", "lt", "lte", "gt", "gte":
			if special != "" {
				return nil, c.invalid(at, "modifiers %q and %q cannot be combined", special, m)
			}
			special = m
		case "i", "m", "s", "ignorecase", "multiline", "dotall":
			if special != "re" {
				return nil, c.invalid(at, "modifier %q only qualifies \"re\" and must follow it", m)
			}
			reFlags += m[:1]
		case "":
			return nil, c.invalid(at, "empty modifier in %q", key)
		default:
			if why, ok := refusedModifiers[m]; ok {
				return nil, c.unsupported(at, "%s", why)
			}
			return nil, c.unsupported(at, "unknown modifier %q in %q", m, key)
		}
	}
	if special != "" && (position != "" || len(transforms) > 0 || (cased && special != "re")) {
		other := position
		if other == "" && len(transforms) > 0 {
			other = transforms[0]
		}
		if other == "" {
			other = "cased"
		}
		return nil, c.invalid(at, "modifier %q cannot be combined with %q", special, other)
	}
	if special == "re" && cased {
		return nil, c.invalid(at, "modifier \"cased\" is meaningless with \"re\", which is case-sensitive unless \"re|i\"")
	}
	if special == "cidr" && f != nil && f.kind == kNumber {
		return nil, c.invalid(at, "modifier \"cidr\" on the numeric field %q", f.name)
	}
	if f == nil && (special == "exists" || special == "cidr" || isNumOp(special)) {
		return nil, c.invalid(at, "modifier %q needs a field; keywords search text", special)
	}

	var values []*node
	switch vals.kind {
	case nSeq:
		if len(vals.items) == 0 {
			return nil, c.invalid(vals, "%q has an empty list of values", key)
		}
		values = vals.items
	case nMap:
		return nil, c.invalid(vals, "the value of %q must be a value or a list of values, not a mapping", key)
	default:
		values = []*node{vals}
	}
	if special == "exists" && len(values) != 1 {
		return nil, c.invalid(vals, "modifier \"exists\" takes one value, true or false")
	}
	for _, v := range values {
		if v.kind != nScalar && v.kind != nNull {
			return nil, c.invalid(v, "a value of %q must be a string, number, boolean or null, not %s", key, v.kindName())
		}
		g, err := c.value(f, key, v, position, special, transforms, cased, reFlags)
		if err != nil {
			return nil, err
		}
		it.groups = append(it.groups, g)
	}
	return it, nil
}

func isNumOp(m string) bool { _, ok := numOps[m]; return ok }

// value compiles one value into its group of alternatives.
func (c *ruleCompiler) value(f *fieldDef, key string, v *node, position, special string, transforms []string, cased bool, reFlags string) ([]valueMatcher, error) {
	if v.kind == nNull {
		if position != "" || special != "" || len(transforms) > 0 || f == nil {
			return nil, c.invalid(v, "null in %q: null only means \"the field is absent\" and takes no modifiers", key)
		}
		return []valueMatcher{{kind: mNull}}, nil
	}
	switch special {
	case "exists":
		if v.scalar != sBool {
			return nil, c.invalid(v, "modifier \"exists\" takes true or false, not %q", v.str)
		}
		return []valueMatcher{{kind: mExists, exists: v.str == "true"}}, nil
	case "lt", "lte", "gt", "gte":
		if v.scalar != sInt && v.scalar != sFloat {
			return nil, c.invalid(v, "modifier %q compares numbers; %q is not a number", special, v.str)
		}
		return []valueMatcher{{kind: mNumber, op: numOps[special], num: v.num}}, nil
	case "cidr":
		p, err := netip.ParsePrefix(v.str)
		if err != nil {
			return nil, c.invalid(v, "modifier \"cidr\": %q is not a network such as 10.0.0.0/8 or fd00::/8", v.str)
		}
		return []valueMatcher{{kind: mCIDR, prefix: p.Masked()}}, nil
	case "re":
		flags := ""
		if reFlags != "" {
			flags = "(?" + reFlags + ")"
		}
		re, err := regexp.Compile(flags + v.str)
		if err != nil {
			var se *syntax.Error
			if errors.As(err, &se) && (se.Code == syntax.ErrInvalidPerlOp || se.Code == syntax.ErrInvalidEscape) {
				return nil, c.unsupported(v, "regular expression %q: %v (Go's RE2 has no lookaround, backreferences or possessive quantifiers)", v.str, err)
			}
			return nil, c.invalid(v, "regular expression %q: %v", v.str, err)
		}
		return []valueMatcher{{kind: mRegex, re: re}}, nil
	}
	// A plain number on a numeric field compares as a number.
	if f != nil && f.kind == kNumber && position == "" && len(transforms) == 0 {
		if num, err := strconv.ParseFloat(v.str, 64); err == nil {
			return []valueMatcher{{kind: mNumber, op: numEq, num: num}}, nil
		}
	}
	strs := []string{v.str}
	for _, t := range transforms {
		var next []string
		for _, s := range strs {
			switch t {
			case "windash":
				next = append(next, windash(s)...)
			case "base64", "base64offset":
				ss := parseSigmaString(s)
				if ss.hasWild {
					return nil, c.invalid(v, "modifier %q cannot encode the wildcards in %q; escape them (\\* \\?) or drop the wildcards", t, v.str)
				}
				if t == "base64" {
					next = append(next, escapeSigma(base64.StdEncoding.EncodeToString([]byte(ss.literal))))
				} else {
					for _, enc := range base64Offsets(ss.literal) {
						next = append(next, escapeSigma(enc))
					}
				}
			}
			if len(next) > maxExpansion {
				return nil, c.unsupported(v, "modifier %q expands %q into more than %d values", t, v.str, maxExpansion)
			}
		}
		strs = next
	}
	if position == "" && f == nil {
		// Keywords search anywhere in the text fields.
		position = "contains"
	}
	out := make([]valueMatcher, 0, len(strs))
	for _, s := range strs {
		out = append(out, compileString(parseSigmaString(s), position, cased))
	}
	return out, nil
}

// base64Offsets returns the three base64 encodings of s as it may appear at any byte offset
// inside a larger encoded text, with the characters that depend on the neighbours cut off (the
// same strings pySigma's base64offset modifier produces).
func base64Offsets(s string) []string {
	start := [3]int{0, 2, 3}
	endCut := [3]int{0, 3, 2}
	out := make([]string, 0, 3)
	for i := range 3 {
		enc := base64.StdEncoding.EncodeToString(append([]byte(strings.Repeat(" ", i)), s...))
		end := len(enc) - endCut[(len(s)+i)%3]
		if start[i] > end {
			continue
		}
		out = append(out, enc[start[i]:end])
	}
	return out
}

// windashChars are the characters Windows command lines accept for option prefixes.
var windashChars = []string{"-", "/", "–", "—", "―"}

// windash returns s with every option prefix ("-" or "/" at the start of a word) replaced by
// each of [windashChars], in every combination.
func windash(s string) []string {
	out := []string{""}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c == '-' || c == '/') && !wordBefore(s, i) && wordAfter(s, i+1) {
			next := make([]string, 0, len(out)*len(windashChars))
			for _, o := range out {
				for _, d := range windashChars {
					next = append(next, o+d)
				}
			}
			out = next
			if len(out) > maxExpansion {
				return out
			}
			continue
		}
		for j := range out {
			out[j] += s[i : i+1]
		}
	}
	return out
}

// wordBefore and wordAfter say whether a word character (a letter or digit of any script, or
// '_', as in pySigma's \B[-/]\b) ends s[:i] or starts s[i:].
func wordBefore(s string, i int) bool {
	r, n := utf8.DecodeLastRuneInString(s[:i])
	return n > 0 && isWordRune(r)
}

func wordAfter(s string, i int) bool {
	r, n := utf8.DecodeRuneInString(s[i:])
	return n > 0 && isWordRune(r)
}

func isWordRune(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }
