package storage

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/template"
)

// Features are the server capabilities a migration may use. Migration files are text/template
// documents rendered with the server's Features, so one file holds both the ClickHouse 18.16 form
// of a statement and the form newer servers get:
//
//	time {{time}},                      -- DateTime64(3, 'UTC') or DateTime('UTC')
//	tool {{lc "String"}},               -- LowCardinality(String) or String
//	time_ms UInt64{{codec "Delta, ZSTD(1)"}},
//	{{if .RBAC}}CREATE ROLE IF NOT EXISTS ...;{{end}}
//
// A statement that renders to nothing is skipped. Which features a migration was applied with is
// recorded in schema_migrations.features, because the same database keeps the forms it was
// created with when its server is upgraded later.
type Features struct {
	DateTime64     bool // DateTime64(3, 'UTC') instead of DateTime plus a milliseconds column
	LowCardinality bool // LowCardinality(String) without allow_experimental_low_cardinality_type
	Codecs         bool // column CODEC(...)
	TTL            bool // table TTL (retention enforced by the server)
	SkipIndexes    bool // data skipping indexes (bloom_filter, minmax, set)
	RBAC           bool // SQL users, roles and grants
}

// featureVersions says from which server version mcpwatch uses each feature. The thresholds are
// conservative: the long-term-support release (20.3) that has all of the storage features
// without experimental settings, and 20.5 for SQL access control.
var featureVersions = []struct {
	name         string
	major, minor int
	set          func(*Features)
}{
	{"datetime64", 20, 3, func(f *Features) { f.DateTime64 = true }},
	{"lowcardinality", 20, 3, func(f *Features) { f.LowCardinality = true }},
	{"codecs", 20, 3, func(f *Features) { f.Codecs = true }},
	{"ttl", 20, 3, func(f *Features) { f.TTL = true }},
	{"skip_indexes", 20, 3, func(f *Features) { f.SkipIndexes = true }},
	{"rbac", 20, 5, func(f *Features) { f.RBAC = true }},
}

// FeaturesFor returns what a server of version v supports.
func FeaturesFor(v Version) Features {
	var f Features
	for _, fv := range featureVersions {
		if v.AtLeast(fv.major, fv.minor) {
			fv.set(&f)
		}
	}
	return f
}

// AllFeatures is what a current server supports.
func AllFeatures() Features { return FeaturesFor(Version{Major: 99, Minor: 0, Raw: "99.0.0"}) }

// Names lists the enabled features, sorted; 18.16 has none.
func (f Features) Names() []string {
	var out []string
	for _, fv := range featureVersions {
		var one Features
		fv.set(&one)
		if f.has(one) {
			out = append(out, fv.name)
		}
	}
	slices.Sort(out)
	return out
}

// has reports whether every feature set in want is set in f.
func (f Features) has(want Features) bool {
	return (!want.DateTime64 || f.DateTime64) && (!want.LowCardinality || f.LowCardinality) &&
		(!want.Codecs || f.Codecs) && (!want.TTL || f.TTL) && (!want.SkipIndexes || f.SkipIndexes) &&
		(!want.RBAC || f.RBAC)
}

func (f Features) String() string {
	if n := f.Names(); len(n) > 0 {
		return strings.Join(n, ",")
	}
	return "none (ClickHouse 18.16 forms)"
}

// templateData is what a migration template sees: {{.Database}} and the feature flags.
type templateData struct {
	Features
	Database string
}

func funcs(f Features) template.FuncMap {
	return template.FuncMap{
		// time is the type of an event-time column.
		"time": func() string {
			if f.DateTime64 {
				return "DateTime64(3, 'UTC')"
			}
			return "DateTime('UTC')"
		},
		// lc wraps a string type in LowCardinality where that is not experimental.
		"lc": func(typ string) string {
			if f.LowCardinality {
				return "LowCardinality(" + typ + ")"
			}
			return typ
		},
		// codec appends a column codec clause.
		"codec": func(spec string) string {
			if f.Codecs {
				return " CODEC(" + spec + ")"
			}
			return ""
		},
		// index is a data-skipping index declaration line inside CREATE TABLE's column list,
		// with its leading comma.
		"index": func(spec string) string {
			if f.SkipIndexes {
				return ",\n    INDEX " + spec
			}
			return ""
		},
	}
}

// Render expands a migration template for database on a server with features f. It is exported
// so that `mcpwatch migrate --print` and tests can show the DDL a server would get.
func Render(m Migration, database string, f Features) ([]string, error) {
	tpl, err := template.New(m.file()).Funcs(funcs(f)).Option("missingkey=error").Parse(m.SQL)
	if err != nil {
		return nil, fmt.Errorf("migration %s: %w", m.file(), err)
	}
	var b strings.Builder
	if err := tpl.Execute(&b, templateData{Features: f, Database: database}); err != nil {
		return nil, fmt.Errorf("migration %s: %w", m.file(), err)
	}
	return Statements(b.String(), database), nil
}

func (m Migration) file() string { return fmt.Sprintf("%04d_%s.sql", m.Version, m.Name) }

// WriteSchema writes every migration of this build as a server of version v would get it, for
// database: a header naming the version and its features, then each migration's statements
// under a "-- NNNN name" comment, each ended with ';'. It connects to nothing.
func WriteSchema(w io.Writer, database string, v Version) error {
	if err := ValidIdentifier(database); err != nil {
		return err
	}
	ms, err := Migrations()
	if err != nil {
		return err
	}
	f := FeaturesFor(v)
	fmt.Fprintf(w, "-- mcpwatch schema for ClickHouse %s (features: %s), database %s\n", v, f, database)
	for _, m := range ms {
		stmts, err := Render(m, database, f)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "\n-- %04d %s\n", m.Version, m.Name)
		for _, s := range stmts {
			fmt.Fprintf(w, "%s;\n", s)
		}
	}
	return nil
}
