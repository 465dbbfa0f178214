package enrich

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mcpwatch/mcpwatch/event"
)

// Limits on what a directory may hold.
const (
	MaxDirectorySize    = 256 << 20
	maxDirectoryEntries = 2_000_000
	maxValueLen         = 256  // subjects, client ids, tenants, departments, peer groups, roles
	maxAttrValueLen     = 1024 // free-form attributes
	maxAttrKeyLen       = 64
	maxEntryAttrs       = 32
)

// Attribute keys the directory sets. Every key under "directory." is enrichment's own: a value a
// source put there is removed before the directory's are set, so no source can forge them.
const (
	// AttrDirectory is "known" when the principal is in the directory and "unknown" when it has
	// a subject or client id the directory does not list (detectors flag those). Events with
	// neither (kernel events outside any session) get no such attribute.
	AttrDirectory = "directory.status"
	// AttrDirectoryMatch says which identifier found the entry: "subject" or "client_id".
	AttrDirectoryMatch = "directory.match"
	// AttrDirectoryRoles are the roles the directory lists, comma-separated, whether or not the
	// credential's roles were kept (see [Directory.Apply]).
	AttrDirectoryRoles = "directory.roles"
	// AttrRolesSource is "directory" when Principal.Roles were taken from the directory because
	// the credential carried none; absent when the roles are the credential's own.
	AttrRolesSource = "principal.roles_source"
	// Any other directory column or attribute "x" is set as "directory.x".
	attrPrefix = "directory."
)

var reservedAttrs = []string{"status", "match", "roles"}

// Directory holds principals' attributes: roles, department, peer group and free-form
// attributes such as manager or risk tier, looked up by subject or OAuth client id. Build one
// with [ParseDirectory] or [LoadDirectory]; it is immutable and safe for concurrent use.
type Directory struct {
	name      string
	hash      [32]byte
	bySubject map[dirKey]*entry
	byClient  map[dirKey]*entry
	n         int
}

// dirKey is (tenant, id); tenant "" holds entries that apply in every tenant.
type dirKey struct{ tenant, id string }

type entry struct {
	tenant, subject, clientID string
	roles                     []string
	rolesAttr                 string
	department, peerGroup     string
	attrs                     []kv // keys already carry attrPrefix, sorted
	ord                       int  // 1-based position in the file, for error messages
}

type kv struct{ k, v string }

// Len is the number of entries.
func (d *Directory) Len() int { return d.n }

// LoadDirectory reads the directory at path: CSV when the name ends in .csv, YAML for .yaml and
// .yml.
func LoadDirectory(path string) (*Directory, error) {
	src, err := readFile(path, MaxDirectorySize)
	if err != nil {
		return nil, err
	}
	return ParseDirectory(src, filepath.Base(path))
}

// ParseDirectory parses a directory in the format its name's extension says (.csv, .yaml,
// .yml); name is used in error positions. Every problem is reported (joined), each as an
// [*Error] "name:line: message".
func ParseDirectory(src []byte, name string) (*Directory, error) {
	if len(src) > MaxDirectorySize {
		return nil, &Error{File: name, Msg: fmt.Sprintf("larger than %d bytes", MaxDirectorySize)}
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return parseDirectoryCSV(src, name)
	case ".yaml", ".yml":
		return parseDirectoryYAML(src, name)
	}
	return nil, &Error{File: name, Msg: "unknown directory format: want a .csv, .yaml or .yml file"}
}

// directoryFile is the YAML form; see docs/enrichment.md.
type directoryFile struct {
	Version    int              `yaml:"version"`
	Principals []directoryEntry `yaml:"principals"`
}

type directoryEntry struct {
	Subject    string            `yaml:"subject"`
	ClientID   string            `yaml:"client_id"`
	Tenant     string            `yaml:"tenant"`
	Roles      []string          `yaml:"roles"`
	Department string            `yaml:"department"`
	PeerGroup  string            `yaml:"peer_group"`
	Attributes map[string]string `yaml:"attributes"`
}

func parseDirectoryYAML(src []byte, name string) (*Directory, error) {
	var f directoryFile
	if err := decodeYAML(src, name, &f); err != nil {
		return nil, err
	}
	pos := &positions{src: src}
	b := newDirBuilder(name, src)
	if f.Version != 1 {
		b.errs.add(pos.line("version"), "version %d: want `version: 1`", f.Version)
	}
	if len(f.Principals) > maxDirectoryEntries {
		b.errs.add(pos.line("principals"), "%d principals: at most %d", len(f.Principals), maxDirectoryEntries)
		return nil, b.errs.err()
	}
	// Positions are looked up only for entries with a problem (see positions).
	b.lineOf = func(ord int) int { return pos.line("principals", ord-1) }
	for _, p := range f.Principals {
		b.add(p)
	}
	return b.done()
}

// Known CSV columns; every other column is a free-form attribute.
var csvColumns = []string{"subject", "client_id", "tenant", "roles", "department", "peer_group"}

// csvRoleSep separates roles in the CSV roles column (the field separator is the comma).
const csvRoleSep = ";"

func parseDirectoryCSV(src []byte, name string) (*Directory, error) {
	b := newDirBuilder(name, src)
	src = bytes.TrimPrefix(src, []byte("\ufeff")) // spreadsheet exports start with a BOM
	if !utf8.Valid(src) {
		return nil, &Error{File: name, Msg: "not UTF-8 text (export the directory as UTF-8 CSV)"}
	}
	r := csv.NewReader(bytes.NewReader(src))
	r.Comment = '#'
	r.TrimLeadingSpace = true
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: "empty file (want a header line such as subject,roles,department,peer_group)"}
		}
		return nil, csvError(name, err)
	}
	hline, _ := r.FieldPos(0)
	cols := make([]string, len(header))
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "":
			b.errs.add(hline, "column %d has no name", i+1)
		case seen[h]:
			b.errs.add(hline, "column %q given twice", h)
		case !slices.Contains(csvColumns, h):
			if err := attrKey(h); err != nil {
				b.errs.add(hline, "column %d: %v", i+1, err)
			}
		}
		seen[h] = true
		cols[i] = h
	}
	if !seen["subject"] && !seen["client_id"] {
		b.errs.add(hline, "no subject or client_id column (known columns: %s; any other column is an attribute)", strings.Join(csvColumns, ", "))
	}
	if err := b.errs.err(); err != nil {
		return nil, err
	}
	var lines []int // of each entry
	b.lineOf = func(ord int) int { return lines[ord-1] }
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			ce := csvError(name, err).(*Error)
			b.errs.add(ce.Line, "%s", ce.Msg)
			if len(b.errs.errs) >= maxErrors {
				break
			}
			continue
		}
		line, _ := r.FieldPos(0)
		if b.n == maxDirectoryEntries {
			b.errs.add(line, "more than %d principals", maxDirectoryEntries)
			break
		}
		var p directoryEntry
		for i, v := range rec {
			v = strings.TrimSpace(v)
			switch cols[i] {
			case "subject":
				p.Subject = v
			case "client_id":
				p.ClientID = v
			case "tenant":
				p.Tenant = v
			case "roles":
				for r := range strings.SplitSeq(v, csvRoleSep) {
					if r = strings.TrimSpace(r); r != "" {
						p.Roles = append(p.Roles, r)
					}
				}
			case "department":
				p.Department = v
			case "peer_group":
				p.PeerGroup = v
			default:
				if v != "" {
					if p.Attributes == nil {
						p.Attributes = map[string]string{}
					}
					p.Attributes[cols[i]] = v
				}
			}
		}
		lines = append(lines, line)
		b.add(p)
	}
	return b.done()
}

func csvError(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &Error{File: name, Line: pe.Line, Msg: "invalid CSV: " + pe.Err.Error()}
	}
	return &Error{File: name, Msg: "invalid CSV: " + err.Error()}
}

// dirBuilder validates entries and indexes them.
type dirBuilder struct {
	d      *Directory
	errs   *errList
	n      int
	lineOf func(ord int) int // line of the ord-th entry (1-based)
}

func newDirBuilder(name string, src []byte) *dirBuilder {
	return &dirBuilder{
		d: &Directory{name: name, hash: sha256.Sum256(src),
			bySubject: map[dirKey]*entry{}, byClient: map[dirKey]*entry{}},
		errs: &errList{file: name},
	}
}

func (b *dirBuilder) add(p directoryEntry) {
	b.n++
	n := b.n
	bad := func(format string, args ...any) {
		label := fmt.Sprintf("principal #%d", n)
		switch {
		case p.Subject != "":
			label = fmt.Sprintf("principal %.80q", p.Subject)
		case p.ClientID != "":
			label = fmt.Sprintf("client %.80q", p.ClientID)
		}
		b.errs.add(b.lineOf(n), "%s: %s", label, fmt.Sprintf(format, args...))
	}
	if p.Subject == "" && p.ClientID == "" {
		bad("no subject or client_id")
		return
	}
	for _, f := range []struct{ what, v string }{{"subject", p.Subject}, {"client_id", p.ClientID},
		{"tenant", p.Tenant}, {"department", p.Department}, {"peer_group", p.PeerGroup}} {
		if err := plainValue(f.v, maxValueLen); err != nil {
			bad("%s: %v", f.what, err)
		}
	}
	e := &entry{tenant: p.Tenant, subject: p.Subject, clientID: p.ClientID,
		department: p.Department, peerGroup: p.PeerGroup}
	for _, r := range p.Roles {
		switch err := plainValue(r, maxValueLen); {
		case err != nil:
			bad("role: %v", err)
		case r == "" || strings.Contains(r, ","):
			bad("role %q: roles must be non-empty and contain no comma", r)
		case !slices.Contains(e.roles, r):
			e.roles = append(e.roles, r)
		}
	}
	e.rolesAttr = strings.Join(e.roles, ",")
	if len(p.Attributes) > maxEntryAttrs {
		bad("%d attributes: at most %d", len(p.Attributes), maxEntryAttrs)
	}
	for k, v := range p.Attributes {
		if err := attrKey(k); err != nil {
			bad("attribute: %v", err)
			continue
		}
		if err := plainValue(v, maxAttrValueLen); err != nil {
			bad("attribute %s: %v", k, err)
			continue
		}
		e.attrs = append(e.attrs, kv{attrPrefix + strings.ToLower(k), v})
	}
	slices.SortFunc(e.attrs, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	for i := 1; i < len(e.attrs); i++ {
		if e.attrs[i].k == e.attrs[i-1].k {
			bad("attribute %s given twice (attribute names are case-insensitive)", strings.TrimPrefix(e.attrs[i].k, attrPrefix))
		}
	}
	e.ord = n
	index := func(m map[dirKey]*entry, what, id string) {
		if id == "" {
			return
		}
		k := dirKey{p.Tenant, id}
		if first, dup := m[k]; dup {
			in := ""
			if p.Tenant != "" {
				in = " in tenant " + p.Tenant
			}
			bad("%s %q listed twice%s (first at line %d)", what, id, in, b.lineOf(first.ord))
			return
		}
		m[k] = e
	}
	index(b.d.bySubject, "subject", p.Subject)
	index(b.d.byClient, "client_id", p.ClientID)
}

func (b *dirBuilder) done() (*Directory, error) {
	if err := b.errs.err(); err != nil {
		return nil, err
	}
	b.d.n = b.n
	return b.d, nil
}

// attrKey checks a free-form attribute name (a CSV column or a YAML attributes key).
func attrKey(k string) error {
	if k == "" || len(k) > maxAttrKeyLen {
		return fmt.Errorf("attribute name %.40q: want 1 to %d characters", k, maxAttrKeyLen)
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fmt.Errorf("attribute name %q: use letters, digits and _ - . only", k)
		}
	}
	if slices.Contains(reservedAttrs, strings.ToLower(k)) {
		return fmt.Errorf("attribute name %q is reserved (it is set by enrichment itself)", k)
	}
	return nil
}

// plainValue rejects values that are too long, not UTF-8, or contain control characters (which
// would end up in CEF lines and dashboards).
func plainValue(v string, limit int) error {
	switch {
	case len(v) > limit:
		return fmt.Errorf("%.40q...: longer than %d bytes", v, limit)
	case !utf8.ValidString(v):
		return fmt.Errorf("%q: not valid UTF-8", v)
	case strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%q: contains control characters", v)
	}
	return nil
}

// lookup finds the entry of a principal: by subject; by client id only for a principal that is
// the client itself (no subject, or the subject is the client id, as in client-credentials
// tokens), so a person the directory does not list stays unknown even when using a listed
// agent. Within each, the tenant's own entry comes before one that applies to every tenant.
func (d *Directory) lookup(tenant, subject, clientID string) (*entry, string) {
	if subject != "" {
		if e := d.bySubject[dirKey{tenant, subject}]; e != nil {
			return e, "subject"
		}
		if e := d.bySubject[dirKey{"", subject}]; e != nil {
			return e, "subject"
		}
	}
	if clientID != "" && (subject == "" || subject == clientID) {
		if e := d.byClient[dirKey{tenant, clientID}]; e != nil {
			return e, "client_id"
		}
		if e := d.byClient[dirKey{"", clientID}]; e != nil {
			return e, "client_id"
		}
	}
	return nil, ""
}

// Apply fills in e's principal from the directory entry of its subject (or, for a principal
// that is an OAuth client itself, of its client id): Department and PeerGroup (which only the
// directory sets: values a source put there are cleared), the directory's attributes as
// "directory.<name>", and [AttrDirectory] "known" or "unknown".
//
// Roles: the credential is authoritative. Roles it carried are kept as they are; only when it
// carried none are the directory's roles used, and then [AttrRolesSource] says so. The
// directory's roles are always recorded in [AttrDirectoryRoles], so a detector can compare the
// two without the directory ever silently replacing what the token said.
//
// An unknown principal is marked, never refused. A nil directory does nothing. Apply modifies
// e's Principal and Attributes in place.
func (d *Directory) Apply(e *event.Event) {
	if d == nil {
		return
	}
	scrub(e.Attributes, attrPrefix)
	delete(e.Attributes, AttrRolesSource)
	p := &e.Principal
	p.Department, p.PeerGroup = "", ""
	if p.Subject == "" && p.ClientID == "" {
		return
	}
	ent, by := d.lookup(e.Tenant, p.Subject, p.ClientID)
	if ent == nil {
		setAttr(e, AttrDirectory, "unknown")
		return
	}
	setAttr(e, AttrDirectory, "known")
	e.Attributes[AttrDirectoryMatch] = by
	p.Department, p.PeerGroup = ent.department, ent.peerGroup
	if len(ent.roles) > 0 {
		e.Attributes[AttrDirectoryRoles] = ent.rolesAttr
		if len(p.Roles) == 0 {
			p.Roles = slices.Clone(ent.roles)
			e.Attributes[AttrRolesSource] = "directory"
		}
	}
	for _, a := range ent.attrs {
		e.Attributes[a.k] = a.v
	}
}
