package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // IANA zones even on hosts and images without /usr/share/zoneinfo

	"go.yaml.in/yaml/v3"

	"github.com/mcpwatch/mcpwatch/internal/glob"
)

// Limits on what Load accepts; policies are small, and a policy file is not trusted to be sane.
const (
	MaxFileSize  = 4 << 20
	maxRules     = 10000
	maxNodeVisit = 1 << 20 // YAML nodes visited, aliases expanded: bounds alias bombs
	maxIDLen     = 128
)

// Error is one problem in a policy file, with its position.
type Error struct {
	File   string
	Line   int // 1-based; 0 if unknown
	Column int
	Rule   string // `rule "x"` or `rule #3`, or ""
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Rule != "" {
		b.WriteString(e.Rule)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrAllowByDefault is wrapped by the error for `defaults: {decision: allow}`.
var ErrAllowByDefault = errors.New("allow-by-default is not supported: mcpwatch policies deny by default (zero trust); write allow rules for what must pass")

// LoadFile loads and compiles the policy at path.
func LoadFile(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	return Load(f, filepath.Base(path))
}

// Load reads, validates and compiles a policy; name is used in error positions. All problems are
// reported (joined), each as an [*Error] "name:line:col: rule "id": message".
func Load(r io.Reader, name string) (*Policy, error) {
	src, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy %s: read: %w", name, err)
	}
	if len(src) > MaxFileSize {
		return nil, &Error{File: name, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	return parse(src, name)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func parse(src []byte, name string) (*Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: "empty policy (want at least `version: 1`)"}
		}
		return nil, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(name, err)
		}
		return nil, &Error{File: name, Line: extra.Line, Column: extra.Column, Msg: "more than one YAML document"}
	}
	l := &loader{file: name}
	p := l.policy(&doc)
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	p.name = name
	return p, nil
}

func yamlError(name string, err error) error {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: name, Line: line, Column: 1, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{File: name, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
}

// loader walks the YAML node tree. Decoding by hand rather than into structs gives every error a
// line and column (yaml.v3's KnownFields reports unknown keys by line only, and Node.Decode does
// not apply it), rejects duplicate keys, and keeps going to report every problem at once.
type loader struct {
	file   string
	errs   []error
	visits int
	rule   string // current rule label for errors
}

func (l *loader) errf(n *yaml.Node, format string, args ...any) {
	e := &Error{File: l.file, Rule: l.rule, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	if len(l.errs) < 100 {
		l.errs = append(l.errs, e)
	}
}

// resolve follows aliases and counts visits; nil when the budget is spent.
func (l *loader) resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	l.visits++
	if l.visits == maxNodeVisit {
		l.errf(n, "policy too large or too many aliases (more than %d nodes)", maxNodeVisit)
	}
	if l.visits >= maxNodeVisit {
		return nil
	}
	return n
}

type field struct {
	key, val *yaml.Node
}

// mapping returns n's key/value pairs in order, rejecting unknown and duplicate keys.
func (l *loader) mapping(n *yaml.Node, what string, known ...string) []field {
	if n = l.resolve(n); n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		l.errf(n, "%s: want a mapping, got %s", what, kindName(n))
		return nil
	}
	var out []field
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := l.resolve(n.Content[i]), n.Content[i+1]
		if k == nil {
			return out
		}
		if k.Kind != yaml.ScalarNode {
			l.errf(k, "%s: keys must be plain strings", what)
			continue
		}
		switch {
		case !containsStr(known, k.Value):
			l.errf(k, "%s: unknown field %q (known: %s)", what, k.Value, strings.Join(known, ", "))
		case seen[k.Value]:
			l.errf(k, "%s: field %q given twice", what, k.Value)
		default:
			seen[k.Value] = true
			out = append(out, field{k, v})
		}
	}
	return out
}

func containsStr(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

// str returns a non-empty scalar string.
func (l *loader) str(n *yaml.Node, what string) (string, bool) {
	if n = l.resolve(n); n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" || n.Value == "" {
		l.errf(n, "%s: want a non-empty string, got %s", what, kindName(n))
		return "", false
	}
	return n.Value, true
}

// strs accepts one string or a non-empty list of strings; it returns the values with their nodes.
func (l *loader) strs(n *yaml.Node, what string) ([]string, []*yaml.Node) {
	if n = l.resolve(n); n == nil {
		return nil, nil
	}
	if n.Kind == yaml.ScalarNode {
		s, ok := l.str(n, what)
		if !ok {
			return nil, nil
		}
		return []string{s}, []*yaml.Node{n}
	}
	if n.Kind != yaml.SequenceNode {
		l.errf(n, "%s: want a string or a list of strings, got %s", what, kindName(n))
		return nil, nil
	}
	if len(n.Content) == 0 {
		l.errf(n, "%s: empty list", what)
		return nil, nil
	}
	var vals []string
	var nodes []*yaml.Node
	for _, c := range n.Content {
		if c = l.resolve(c); c == nil {
			return nil, nil
		}
		if s, ok := l.str(c, what); ok {
			vals = append(vals, s)
			nodes = append(nodes, c)
		}
	}
	return vals, nodes
}

// number parses a risk threshold: a finite number in [0, 100].
func (l *loader) number(n *yaml.Node, what string) (float64, bool) {
	if n = l.resolve(n); n == nil {
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		l.errf(n, "%s: want a number, got %s", what, kindName(n))
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 100 {
		l.errf(n, "%s: %q: want a number from 0 to 100 (the threat score scale)", what, n.Value)
		return 0, false
	}
	return f, true
}

func (l *loader) policy(doc *yaml.Node) *Policy {
	p := &Policy{}
	root := doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			l.errf(doc, "empty policy (want at least `version: 1`)")
			return p
		}
		root = doc.Content[0]
	}
	if r := l.resolve(root); r != nil && r.Kind == yaml.ScalarNode && r.ShortTag() == "!!null" {
		l.errf(r, "empty policy (want at least `version: 1`)")
		return p
	}
	fields := l.mapping(root, "policy", "version", "defaults", "rules")
	var haveVersion bool
	for _, f := range fields {
		switch f.key.Value {
		case "version":
			haveVersion = true
			v := l.resolve(f.val)
			if v != nil && (v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Value != "1") {
				l.errf(v, "version: unsupported version %s (this build reads version 1)", kindName(v))
			}
		case "defaults":
			for _, d := range l.mapping(f.val, "defaults", "decision") {
				s, ok := l.str(d.val, "defaults.decision")
				switch {
				case !ok:
				case s == "allow":
					l.errf(d.val, "defaults.decision: %v", ErrAllowByDefault)
				case s != "deny":
					l.errf(d.val, "defaults.decision: %q: the only default is deny", s)
				}
			}
		case "rules":
			l.rules(f.val, p)
		}
	}
	if !haveVersion && len(fields) > 0 {
		l.errf(fields[0].key, "version: required (add `version: 1`)")
	} else if !haveVersion {
		l.errf(root, "version: required (add `version: 1`)")
	}
	return p
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]*$`)

func (l *loader) rules(n *yaml.Node, p *Policy) {
	if n = l.resolve(n); n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // no rules: everything is denied (Check warns)
	}
	if n.Kind != yaml.SequenceNode {
		l.errf(n, "rules: want a list, got %s", kindName(n))
		return
	}
	if len(n.Content) > maxRules {
		l.errf(n, "rules: more than %d rules", maxRules)
		return
	}
	ids := map[string]int{}
	var deny, allow []*rule
	defer func() { p.deny, p.allow = newRuleIndex(deny), newRuleIndex(allow) }()
	for i, rn := range n.Content {
		l.rule = fmt.Sprintf("rule #%d", i+1)
		r := l.compileRule(rn)
		if r == nil {
			continue
		}
		if prev, dup := ids[r.id]; dup {
			l.errf(rn, "duplicate rule id (first at line %d)", prev)
			continue
		}
		ids[r.id] = r.line
		r.order = len(p.rules)
		p.rules = append(p.rules, r)
		if r.effect == Deny {
			deny = append(deny, r)
		} else {
			allow = append(allow, r)
		}
	}
	l.rule = ""
}

var ruleFields = []string{"id", "description", "effect", "resource", "resources", "actions", "principals", "tenants", "conditions", "approval"}

func (l *loader) compileRule(n *yaml.Node) *rule {
	if n = l.resolve(n); n == nil {
		return nil
	}
	r := &rule{effect: Allow, line: n.Line, col: n.Column}
	before := len(l.errs)
	if n.Kind == yaml.MappingNode { // name the rule in every error, even those about earlier keys
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k, v := n.Content[i], n.Content[i+1]; k.Kind == yaml.ScalarNode && k.Value == "id" && v.Kind == yaml.ScalarNode && v.Value != "" {
				l.rule = fmt.Sprintf("rule %q", v.Value)
				break
			}
		}
	}
	fields := l.mapping(n, "rule", ruleFields...)
	if n.Kind != yaml.MappingNode {
		return nil
	}
	get := map[string]*yaml.Node{}
	for _, f := range fields {
		get[f.key.Value] = f.val
	}
	// The id first, so every later error names the rule.
	if v, ok := get["id"]; ok {
		if id, ok := l.str(v, "id"); ok {
			switch {
			case len(id) > maxIDLen || !idRE.MatchString(id):
				l.errf(v, "id %q: use letters, digits and _ . : - (at most %d)", id, maxIDLen)
			case id == DefaultDenyRule:
				l.errf(v, "id %q is reserved", id)
			default:
				r.id = id
				l.rule = fmt.Sprintf("rule %q", id)
			}
		}
	} else {
		l.errf(n, "id: required")
	}
	if v, ok := get["description"]; ok {
		if vv := l.resolve(v); vv != nil && vv.Kind == yaml.ScalarNode {
			r.description = vv.Value
		} else if vv != nil {
			l.errf(vv, "description: want a string, got %s", kindName(vv))
		}
	}
	if v, ok := get["effect"]; ok {
		if s, ok := l.str(v, "effect"); ok {
			switch Effect(s) {
			case Allow, Deny:
				r.effect = Effect(s)
			default:
				l.errf(v, "effect: %q: want allow or deny", s)
			}
		}
	}
	res, hasRes := get["resource"]
	resList, hasResList := get["resources"]
	switch {
	case hasRes && hasResList:
		l.errf(resList, "give either resource or resources, not both")
	case hasRes:
		l.patterns(r, res, "resource")
	case hasResList:
		l.patterns(r, resList, "resources")
	default:
		l.errf(n, "resource: required (a pattern such as \"tool:sales-db/*\" or \"resource:s3://finance-data/*\")")
	}
	if v, ok := get["actions"]; ok {
		vals, nodes := l.strs(v, "actions")
		for i, a := range vals {
			if a == "*" {
				r.actions |= allActions
			} else if b, ok := actionBits[Action(a)]; ok {
				r.actions |= b
			} else {
				l.errf(nodes[i], "actions: %q: want call, read, get, list or *", a)
			}
		}
	} else {
		l.errf(n, "actions: required (call, read, get, list or *)")
	}
	if v, ok := get["principals"]; ok {
		vals, nodes := l.strs(v, "principals")
		for i, s := range vals {
			if sel, ok := parsePrincipal(s); ok {
				r.principals = append(r.principals, sel)
			} else {
				l.errf(nodes[i], "principals: %q: want sub:<subject>, client:<client id>, role:<role>, group:<group> or anonymous", s)
			}
		}
	}
	if v, ok := get["tenants"]; ok {
		r.tenants, _ = l.strs(v, "tenants")
	}
	if v, ok := get["conditions"]; ok {
		l.conditions(r, v)
	}
	if v, ok := get["approval"]; ok {
		l.approval(r, v)
	}
	if len(l.errs) > before || r.id == "" {
		return nil
	}
	return r
}

func parsePrincipal(s string) (principalSel, bool) {
	if s == "anonymous" {
		return principalSel{kind: selAnonymous, src: s}, true
	}
	for prefix, k := range selPrefix {
		if v, ok := strings.CutPrefix(s, prefix); ok && v != "" {
			return principalSel{kind: k, value: v, src: s}, true
		}
	}
	return principalSel{}, false
}

// patterns compiles target patterns. A pattern names its kind (tool:, resource:, prompt:); a
// bare URI with a scheme ("s3://finance-data/*", the source document's form) is a resource
// pattern; "**" alone matches every target.
func (l *loader) patterns(r *rule, n *yaml.Node, what string) {
	vals, nodes := l.strs(n, what)
	for i, s := range vals {
		p := s
		switch {
		case p == "**":
		case strings.HasPrefix(p, "tool:"), strings.HasPrefix(p, "prompt:"):
			rest := p[strings.IndexByte(p, ':')+1:]
			if !strings.Contains(rest, "/") && !strings.Contains(rest, "**") {
				l.errf(nodes[i], "%s %q: want <kind>:<server>/<name>, e.g. \"tool:sales-db/db_query\" or \"tool:sales-db/*\"", what, s)
				continue
			}
		case strings.HasPrefix(p, "resource:"):
		case strings.Contains(p, "://"):
			p = "resource:" + p
		default:
			l.errf(nodes[i], "%s %q: want a tool:, resource: or prompt: pattern", what, s)
			continue
		}
		g, err := glob.Compile(p)
		if err != nil {
			l.errf(nodes[i], "%s %q: %v", what, s, err)
			continue
		}
		r.patterns = append(r.patterns, g)
	}
}

var condFields = []string{"ip_range", "time", "timezone", "days", "roles", "device_health", "data_class", "auth_methods",
	"max_risk", "step_up_risk", "step_up_auth", "step_up_max_age", "max_auth_age"}

// conditions accepts a mapping, or the source document's list of one-key mappings; all the keys
// together form one set (each at most once) and all conditions must hold.
func (l *loader) conditions(r *rule, n *yaml.Node) {
	if n = l.resolve(n); n == nil {
		return
	}
	var fields []field
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		return // "conditions:" with nothing after it: none
	case n.Kind == yaml.MappingNode:
		fields = l.mapping(n, "conditions", condFields...)
	case n.Kind == yaml.SequenceNode:
		seen := map[string]*yaml.Node{}
		for _, item := range n.Content {
			for _, f := range l.mapping(item, "conditions", condFields...) {
				if prev, dup := seen[f.key.Value]; dup {
					l.errf(f.key, "conditions: %q given twice (first at line %d); list several values in one %s", f.key.Value, prev.Line, f.key.Value)
					continue
				}
				seen[f.key.Value] = f.key
				fields = append(fields, f)
			}
		}
	default:
		l.errf(n, "conditions: want a mapping or a list of mappings, got %s", kindName(n))
		return
	}
	get := map[string]field{}
	for _, f := range fields {
		get[f.key.Value] = f
	}
	timeDone := false
	for _, f := range fields {
		switch k := f.key.Value; k {
		case "ip_range":
			l.ipRange(r, f.val)
		case "time", "timezone", "days":
			if !timeDone {
				timeDone = true
				l.timeCond(r, get)
			}
		case "roles":
			vals, _ := l.strs(f.val, k)
			r.conds = append(r.conds, &listCond{key: "roles", values: vals, get: getRoles})
		case "device_health":
			vals, _ := l.strs(f.val, k)
			r.conds = append(r.conds, &deviceCond{values: vals})
		case "data_class":
			c := &setCond{key: k, get: getClasses}
			c.anyOf, c.allOf, c.noneOf = l.setValues(f.val, k, "any_of", "none_of")
			r.conds = append(r.conds, c)
		case "auth_methods":
			c := &setCond{key: k, get: getAMR}
			c.anyOf, c.allOf, c.noneOf = l.setValues(f.val, k, "any_of", "all_of")
			r.conds = append(r.conds, c)
		case "max_auth_age":
			if r.effect != Allow {
				l.errf(f.key, "%s: applies to allow rules only", k)
				continue
			}
			r.maxAuthAge = l.duration(f.val, k)
		case "max_risk", "step_up_risk", "step_up_auth", "step_up_max_age":
			if r.effect != Allow {
				l.errf(f.key, "%s: applies to allow rules only (a deny rule denies at any risk)", k)
				continue
			}
			l.risk(r, f, get)
		}
	}
	if r.risk.hasStepUp {
		if r.risk.stepUpAuth == nil {
			r.risk.stepUpAuth = defaultStepUpAuth
		}
		if r.risk.stepUpMaxAge == 0 {
			r.risk.stepUpMaxAge = defaultStepUpMaxAge
		}
	}
}

func (l *loader) risk(r *rule, f field, get map[string]field) {
	switch k := f.key.Value; k {
	case "max_risk":
		r.risk.max, r.risk.hasMax = l.number(f.val, k)
	case "step_up_risk":
		r.risk.stepUp, r.risk.hasStepUp = l.number(f.val, k)
	case "step_up_auth", "step_up_max_age":
		if _, ok := get["step_up_risk"]; !ok {
			l.errf(f.key, "%s: needs step_up_risk", k)
			return
		}
		if k == "step_up_auth" {
			r.risk.stepUpAuth, _ = l.strs(f.val, k)
			return
		}
		r.risk.stepUpMaxAge = l.duration(f.val, k)
	}
}

// duration reads a duration from 1s to 24h; 0 after an error.
func (l *loader) duration(n *yaml.Node, what string) time.Duration {
	s, ok := l.str(n, what)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second || d > 24*time.Hour {
		l.errf(n, "%s: %q: want a duration from 1s to 24h, e.g. 5m", what, s)
		return 0
	}
	return d
}

// setValues reads a string or list (meaning any_of) or a mapping of {any_of | all_of, none_of}.
func (l *loader) setValues(n *yaml.Node, what, posKey, negKey string) (anyOf, allOf, noneOf []string) {
	if n = l.resolve(n); n == nil {
		return
	}
	if n.Kind != yaml.MappingNode {
		anyOf, _ = l.strs(n, what)
		return
	}
	fields := l.mapping(n, what, posKey, negKey)
	if len(fields) == 0 {
		l.errf(n, "%s: give %s or %s", what, posKey, negKey)
	}
	for _, f := range fields {
		vals, _ := l.strs(f.val, what+"."+f.key.Value)
		switch f.key.Value {
		case "any_of":
			anyOf = vals
		case "all_of":
			allOf = vals
		case "none_of":
			noneOf = vals
		}
	}
	return
}

func (l *loader) ipRange(r *rule, n *yaml.Node) {
	vals, nodes := l.strs(n, "ip_range")
	c := &ipCond{}
	for i, s := range vals {
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		switch {
		case err != nil:
			l.errf(nodes[i], "ip_range %q: invalid CIDR", s)
		case p.Addr().Zone() != "":
			l.errf(nodes[i], "ip_range %q: zones are not supported", s)
		case p.Addr().Is4In6():
			l.errf(nodes[i], "ip_range %q: write IPv4-mapped ranges in IPv4 form (addresses are unmapped before matching)", s)
		case p.Masked() != p:
			l.errf(nodes[i], "ip_range %q: host bits set; did you mean %s?", s, p.Masked())
		default:
			c.prefixes = append(c.prefixes, p)
		}
	}
	r.conds = append(r.conds, c)
}

var dayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

func (l *loader) timeCond(r *rule, get map[string]field) {
	c := &timeCond{loc: time.UTC}
	var parts []string
	if f, ok := get["time"]; ok {
		if s, ok := l.str(f.val, "time"); ok {
			start, end, err := parseWindow(s)
			if err != nil {
				l.errf(l.resolve(f.val), "time %q: %v", s, err)
			}
			c.window, c.start, c.end = true, start, end
			parts = append(parts, s)
		}
	}
	if f, ok := get["days"]; ok {
		vals, nodes := l.strs(f.val, "days")
		for i, d := range vals {
			mask, err := parseDays(d)
			if err != nil {
				l.errf(nodes[i], "days %q: %v", d, err)
			}
			c.days |= mask
		}
		if len(vals) > 0 {
			parts = append(parts, strings.Join(vals, ","))
		}
	}
	if f, ok := get["timezone"]; ok {
		if _, ok := get["time"]; !ok {
			if _, ok := get["days"]; !ok {
				l.errf(f.key, "timezone: needs time or days")
			}
		}
		if s, ok := l.str(f.val, "timezone"); ok {
			loc, err := time.LoadLocation(s)
			if err != nil || s == "Local" {
				l.errf(l.resolve(f.val), "timezone %q: not an IANA time zone (e.g. Asia/Seoul, UTC)", s)
			} else {
				c.loc = loc
			}
		}
	}
	parts = append(parts, c.loc.String())
	c.src = strings.Join(parts, " ")
	r.conds = append(r.conds, c)
}

// parseWindow parses "HH:MM-HH:MM" into minutes; the end may be 24:00; start > end wraps midnight.
func parseWindow(s string) (start, end int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, errors.New(`want "HH:MM-HH:MM", e.g. "09:00-18:00"`)
	}
	if start, err = parseClock(strings.TrimSpace(a), false); err != nil {
		return 0, 0, err
	}
	if end, err = parseClock(strings.TrimSpace(b), true); err != nil {
		return 0, 0, err
	}
	return start, end, nil
}

func parseClock(s string, isEnd bool) (int, error) {
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("%q: want HH:MM", s)
	}
	h, err1 := strconv.Atoi(s[:2])
	m, err2 := strconv.Atoi(s[3:])
	if err1 != nil || err2 != nil || s[0] == '+' || s[0] == '-' || s[3] == '+' || s[3] == '-' {
		return 0, fmt.Errorf("%q: want HH:MM", s)
	}
	if h == 24 && m == 0 && isEnd {
		return 24 * 60, nil
	}
	if h > 23 || m > 59 {
		return 0, fmt.Errorf("%q: no such time of day", s)
	}
	return h*60 + m, nil
}

// parseDays parses "mon" or a range "mon-fri" (ranges may wrap: "fri-mon").
func parseDays(s string) (uint8, error) {
	a, b, isRange := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "-")
	from, ok1 := dayNames[strings.TrimSpace(a)]
	to := from
	ok2 := true
	if isRange {
		to, ok2 = dayNames[strings.TrimSpace(b)]
	}
	if !ok1 || !ok2 {
		return 0, errors.New("want mon, tue, wed, thu, fri, sat, sun or a range such as mon-fri")
	}
	var mask uint8
	for d := from; ; d = (d + 1) % 7 {
		mask |= 1 << d
		if d == to {
			return mask, nil
		}
	}
}

var approverRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$`)

// Bounds of an approval's terms.
const (
	maxApprovers       = 32
	defaultApprovalTTL = 10 * time.Minute
)

// approval compiles a rule's `approval: {approvers, required, timeout, on_timeout}`: calls the
// rule allows wait until required of the approvers (key ids of the approvals keyring) have
// signed. Only allow rules of the call action take one: a held list or read has no single
// effect to approve.
func (l *loader) approval(r *rule, n *yaml.Node) {
	fields := l.mapping(n, "approval", "approvers", "required", "timeout", "on_timeout")
	if n = l.resolve(n); n == nil || n.Kind != yaml.MappingNode {
		return
	}
	if r.effect != Allow {
		l.errf(n, "approval: applies to allow rules only (a deny rule refuses whatever anyone approves)")
		return
	}
	if r.actions != bitCall {
		l.errf(n, "approval: applies to rules whose actions are [call] only, this rule has [%s]", r.actions)
		return
	}
	a := &ApprovalHint{Timeout: defaultApprovalTTL, OnTimeout: "deny"}
	var requiredNode *yaml.Node
	for _, f := range fields {
		switch f.key.Value {
		case "approvers":
			vals, nodes := l.strs(f.val, "approval.approvers")
			seen := map[string]bool{}
			for i, s := range vals {
				switch {
				case !approverRE.MatchString(s):
					l.errf(nodes[i], "approval.approvers: %q: a key id of the approvals keyring (letters, digits, _ . @ : -; at most 64)", s)
				case seen[s]:
					l.errf(nodes[i], "approval.approvers: %q listed twice", s)
				default:
					seen[s] = true
					a.Approvers = append(a.Approvers, s)
				}
			}
			if len(vals) > maxApprovers {
				l.errf(f.val, "approval.approvers: %d approvers, at most %d", len(vals), maxApprovers)
			}
		case "required":
			requiredNode = l.resolve(f.val)
			if requiredNode == nil {
				return
			}
			v, err := strconv.Atoi(requiredNode.Value)
			if requiredNode.Kind != yaml.ScalarNode || requiredNode.ShortTag() != "!!int" || err != nil || v < 1 {
				l.errf(requiredNode, "approval.required: want a whole number of approvals, at least 1, got %s", kindName(requiredNode))
				requiredNode = nil
				continue
			}
			a.Required = v
		case "timeout":
			a.Timeout = l.duration(f.val, "approval.timeout")
		case "on_timeout":
			if s, ok := l.str(f.val, "approval.on_timeout"); ok {
				if s != "deny" && s != "approve" {
					l.errf(l.resolve(f.val), "approval.on_timeout: %q: want deny (the default) or approve", s)
				}
				a.OnTimeout = s
			}
		}
	}
	switch {
	case len(a.Approvers) == 0:
		l.errf(n, "approval.approvers: required (the key ids whose signatures count)")
	case requiredNode == nil && a.Required == 0:
		l.errf(n, "approval.required: required (how many of the approvers must approve)")
	case a.Required > len(a.Approvers):
		l.errf(requiredNode, "approval.required: %d of %d approvers can never be reached", a.Required, len(a.Approvers))
	}
	r.approval = a
}
