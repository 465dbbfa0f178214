package enrich

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mcpwatch/mcpwatch/event"
)

// Limits on what a catalog may hold; a catalog is configuration, not trusted to be sane.
const (
	MaxCatalogSize  = 4 << 20
	maxCatalogRules = 20000
	maxClassLen     = 64
	maxIDLen        = 128
)

// Attribute keys the catalog sets.
const (
	// AttrCatalogRules lists the ids of the catalog rules that matched, comma-separated in file
	// order, so an analyst can see why an event got its classes and sensitivity.
	AttrCatalogRules = "catalog.rules"
)

// Catalog labels events with data classes and a sensitivity weight from the resources, tools,
// prompts and servers they touch. Build one with [ParseCatalog] or [LoadCatalog]; it is
// immutable and safe for concurrent use.
type Catalog struct {
	name    string
	hash    [32]byte
	rules   []crule
	dflt    float64
	classW  map[string]float64
	byRes   index // resource URIs, and file:// URIs of kernel events' paths
	byTool  index // tool names; server-qualified patterns check the server too
	byPromp index
	bySrv   index
}

type crule struct {
	id          string
	classes     []string
	sensitivity float64 // < 0: the rule sets no sensitivity
}

// Len is the number of rules.
func (c *Catalog) Len() int { return len(c.rules) }

// catalogFile is the YAML form; see docs/enrichment.md.
type catalogFile struct {
	Version            int                `yaml:"version"`
	DefaultSensitivity *float64           `yaml:"default_sensitivity"`
	ClassSensitivity   map[string]float64 `yaml:"class_sensitivity"`
	Rules              []catalogRule      `yaml:"rules"`
}

type catalogRule struct {
	ID          string   `yaml:"id"`
	Description string   `yaml:"description"`
	Resources   []string `yaml:"resources"`
	Tools       []string `yaml:"tools"`
	Prompts     []string `yaml:"prompts"`
	Servers     []string `yaml:"servers"`
	Classes     []string `yaml:"classes"`
	Sensitivity *float64 `yaml:"sensitivity"`
}

// LoadCatalog reads and compiles the catalog at path.
func LoadCatalog(path string) (*Catalog, error) {
	src, err := readFile(path, MaxCatalogSize)
	if err != nil {
		return nil, err
	}
	return ParseCatalog(src, filepath.Base(path))
}

// ParseCatalog validates and compiles a catalog; name is used in error positions. Every problem
// is reported (joined), each as an [*Error] "name:line: message".
func ParseCatalog(src []byte, name string) (*Catalog, error) {
	if len(src) > MaxCatalogSize {
		return nil, &Error{File: name, Msg: fmt.Sprintf("larger than %d bytes", MaxCatalogSize)}
	}
	var f catalogFile
	if err := decodeYAML(src, name, &f); err != nil {
		return nil, err
	}
	pos := &positions{src: src}
	errs := &errList{file: name}
	if f.Version != 1 {
		errs.add(pos.line("version"), "version %d: want `version: 1`", f.Version)
	}
	c := &Catalog{name: name, hash: sha256.Sum256(src), classW: map[string]float64{}}
	if f.DefaultSensitivity != nil {
		if !unit(*f.DefaultSensitivity) {
			errs.add(pos.line("default_sensitivity"), "default_sensitivity %v: want a number from 0 to 1", *f.DefaultSensitivity)
		}
		c.dflt = *f.DefaultSensitivity
	}
	for k, w := range f.ClassSensitivity {
		cls, err := className(k)
		switch {
		case err != nil:
			errs.add(pos.line("class_sensitivity", k), "class_sensitivity: %v", err)
		case !unit(w):
			errs.add(pos.line("class_sensitivity", k), "class_sensitivity %s: %v: want a number from 0 to 1", k, w)
		case hasKey(c.classW, cls):
			errs.add(pos.line("class_sensitivity", k), "class_sensitivity: class %q given twice (classes are case-insensitive)", cls)
		default:
			c.classW[cls] = w
		}
	}
	if len(f.Rules) > maxCatalogRules {
		errs.add(pos.line("rules"), "%d rules: at most %d", len(f.Rules), maxCatalogRules)
		return nil, errs.err()
	}
	seen := map[string]int{}
	for i, r := range f.Rules {
		line := pos.line("rules", i)
		label := fmt.Sprintf("rule #%d", i+1)
		switch {
		case r.ID == "":
			errs.add(line, "%s: no id", label)
		case len(r.ID) > maxIDLen || strings.ContainsFunc(r.ID, isControlOrComma):
			errs.add(line, "%s: id %.40q: at most %d characters, no commas or control characters", label, r.ID, maxIDLen)
		default:
			label = fmt.Sprintf("rule %q", r.ID)
			if first, dup := seen[r.ID]; dup {
				errs.add(line, "%s: id given twice (first at line %d)", label, first)
			}
			seen[r.ID] = line
		}
		cr := crule{id: r.ID, sensitivity: -1}
		if r.Sensitivity != nil {
			if !unit(*r.Sensitivity) {
				errs.add(pos.line("rules", i, "sensitivity"), "%s: sensitivity %v: want a number from 0 to 1", label, *r.Sensitivity)
			}
			cr.sensitivity = *r.Sensitivity
		}
		for j, k := range r.Classes {
			cls, err := className(k)
			if err != nil {
				errs.add(pos.line("rules", i, "classes", j), "%s: %v", label, err)
				continue
			}
			cr.classes = append(cr.classes, cls)
		}
		slices.Sort(cr.classes)
		cr.classes = slices.Compact(cr.classes)
		if len(r.Classes) == 0 && r.Sensitivity == nil {
			errs.add(line, "%s: gives neither classes nor a sensitivity", label)
		}
		if len(r.Resources)+len(r.Tools)+len(r.Prompts)+len(r.Servers) == 0 {
			errs.add(line, "%s: matches nothing (give resources, tools, prompts or servers)", label)
		}
		rule := int32(len(c.rules))
		c.rules = append(c.rules, cr)
		each := func(field string, pats []string, qualified bool, x *index) {
			for j, p := range pats {
				post, err := compilePosting(p, qualified)
				if err != nil {
					errs.add(pos.line("rules", i, field, j), "%s: %s %q: %v", label, field, p, err)
					continue
				}
				post.rule = rule
				x.add(post)
			}
		}
		each("resources", r.Resources, false, &c.byRes)
		each("tools", r.Tools, true, &c.byTool)
		each("prompts", r.Prompts, true, &c.byPromp)
		each("servers", r.Servers, false, &c.bySrv)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// compilePosting compiles one pattern. Tool and prompt patterns may name the server before a
// '/': "sales-db/db_query" matches db_query on the server sales-db, "db_query" on any server,
// "*/export_*" any export_ tool on any server.
func compilePosting(p string, qualified bool) (posting, error) {
	if !qualified {
		g, err := compileGlob(p)
		return posting{name: g}, err
	}
	srv, name, ok := strings.Cut(p, "/")
	if !ok {
		g, err := compileGlob(p)
		return posting{name: g}, err
	}
	if srv == "" || name == "" {
		return posting{}, fmt.Errorf("want <server>/<name> or <name>")
	}
	sg, err := compileGlob(srv)
	if err != nil {
		return posting{}, fmt.Errorf("server: %w", err)
	}
	ng, err := compileGlob(name)
	if err != nil {
		return posting{}, fmt.Errorf("name: %w", err)
	}
	if sg.All() || sg.String() == "*" {
		sg = nil // any server
	}
	return posting{name: ng, server: sg}, nil
}

func unit(v float64) bool { return v >= 0 && v <= 1 } // false for NaN

func hasKey[V any](m map[string]V, k string) bool { _, ok := m[k]; return ok }

func isControlOrComma(r rune) bool { return r < 0x20 || r == 0x7f || r == ',' }

// className checks and lower-cases a data class: classes are labels compared case-insensitively
// (as the policy's data_class condition does).
func className(s string) (string, error) {
	if s == "" || len(s) > maxClassLen {
		return "", fmt.Errorf("class %.40q: want 1 to %d characters", s, maxClassLen)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' || r == ':') {
			return "", fmt.Errorf("class %q: use letters, digits and _ - . : only", s)
		}
	}
	return strings.ToLower(s), nil
}

// maxMatches bounds the rules one event collects before merging (a stack buffer serves the
// common case; more only allocate).
const maxMatches = 16

// Apply labels e: the classes of every matching rule are added to the classes e already has
// (sources' classes are kept), and Normalized.Sensitivity becomes the largest of the sensitivity
// e already had, the matching rules' sensitivities and the class_sensitivity of its classes —
// or the default sensitivity when none of these applies. A nil catalog does nothing. Apply
// modifies e's DataClasses and Attributes in place.
func (c *Catalog) Apply(e *event.Event) {
	if c == nil {
		return
	}
	var buf [maxMatches]int32
	m := c.match(e, buf[:0])
	if len(m) > 1 {
		slices.Sort(m)
		m = slices.Compact(m)
	}
	scrub(e.Attributes, "catalog.")
	s := -1.0
	for _, r := range m {
		cr := &c.rules[r]
		e.DataClasses = addClasses(e.DataClasses, cr.classes)
		s = max(s, cr.sensitivity)
	}
	if len(c.classW) > 0 {
		for _, cls := range e.DataClasses {
			w, ok := c.classW[cls]
			if !ok {
				w, ok = c.classW[strings.ToLower(cls)]
			}
			if ok {
				s = max(s, w)
			}
		}
	}
	if s < 0 {
		s = c.dflt
	}
	if e.Normalized == nil {
		e.Normalized = &event.Normalized{}
	}
	cur := e.Normalized.Sensitivity
	if !(cur >= s) { // also replaces a NaN from a broken source
		cur = s
	}
	e.Normalized.Sensitivity = min(cur, 1)
	switch len(m) {
	case 0:
	case 1:
		setAttr(e, AttrCatalogRules, c.rules[m[0]].id)
	default:
		ids := make([]string, len(m))
		for i, r := range m {
			ids[i] = c.rules[r].id
		}
		setAttr(e, AttrCatalogRules, strings.Join(ids, ","))
	}
}

func (c *Catalog) match(e *event.Event, m []int32) []int32 {
	srv := e.Target.Server
	if e.MCP != nil {
		if e.MCP.ResourceURI != "" && !c.byRes.empty() {
			m = c.byRes.lookup(e.MCP.ResourceURI, "", m)
		}
		if e.MCP.Tool != "" && !c.byTool.empty() {
			m = c.byTool.lookup(e.MCP.Tool, srv, m)
		}
		if e.MCP.Prompt != "" && !c.byPromp.empty() {
			m = c.byPromp.lookup(e.MCP.Prompt, srv, m)
		}
	}
	// A kernel event's file path is a file:// resource, so "file:///etc/**" covers both an MCP
	// filesystem server's resources and what a sandboxed server opens itself.
	if e.Process != nil && strings.HasPrefix(e.Process.Path, "/") && !c.byRes.empty() {
		m = c.byRes.lookup("file://"+e.Process.Path, "", m)
	}
	if srv != "" && !c.bySrv.empty() {
		m = c.bySrv.lookup(srv, "", m)
	}
	return m
}

// addClasses returns have with the classes of add it lacks (compared case-insensitively),
// sorted. have's backing array is not reused: it may be shared with the source's event.
func addClasses(have, add []string) []string {
	var missing []string
	for _, c := range add {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, c) }) {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return have
	}
	out := make([]string, 0, len(have)+len(missing))
	out = append(append(out, have...), missing...)
	slices.Sort(out)
	return out
}

func setAttr(e *event.Event, k, v string) {
	if e.Attributes == nil {
		e.Attributes = make(map[string]string, 4)
	}
	e.Attributes[k] = v
}

// scrub deletes the keys under prefix: only enrichment may set them, so a source cannot forge,
// say, a known principal.
func scrub(attrs map[string]string, prefix string) {
	for k := range attrs {
		if strings.HasPrefix(k, prefix) {
			delete(attrs, k)
		}
	}
}

func readFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read: %w", path, err)
	}
	if int64(len(src)) > limit {
		return nil, &Error{File: filepath.Base(path), Msg: fmt.Sprintf("larger than %d bytes", limit)}
	}
	return src, nil
}
