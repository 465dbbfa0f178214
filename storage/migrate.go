package storage

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

//go:embed sql/*.sql
var sqlFS embed.FS

// Migration is one versioned schema change, a file migrations/NNNN_name.sql.
type Migration struct {
	Version  int
	Name     string
	Checksum string // hex SHA-256 of the file as embedded, before ${database} is substituted
	SQL      string
}

// Errors of [Migrate] and [CheckSchema].
var (
	// ErrNewerSchema: the database has a migration this build does not know; a newer mcpwatch
	// migrated it. Running older DDL against it could undo what the newer build relies on.
	ErrNewerSchema = errors.New("database schema is newer than this build")
	// ErrSchemaBehind: migrations this build needs have not been applied.
	ErrSchemaBehind = errors.New("database schema is behind this build (run `mcpwatch migrate`)")
	// ErrChecksum: an applied migration differs from the file this build carries: someone edited
	// a released migration, and the database may not have the schema this build expects.
	ErrChecksum = errors.New("applied migration differs from this build's")
	// ErrNoDatabase: the database does not exist. mcpwatch does not create it, because the
	// pipeline's user should not be allowed to create databases.
	ErrNoDatabase = errors.New("database does not exist")
	// ErrOldServer: the server is older than [MinServer].
	ErrOldServer = errors.New("clickhouse server too old")
)

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// Migrations returns the migrations this build carries, in version order. Versions start at 1
// and have no gaps (a test holds the files to that).
func Migrations() ([]Migration, error) {
	return loadMigrations(migrationFS, "migrations")
}

func loadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		v, _ := strconv.Atoi(m[1])
		sum := sha256.Sum256(b)
		out = append(out, Migration{Version: v, Name: m[2], Checksum: hex.EncodeToString(sum[:]), SQL: string(b)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrations: version %d found where %d was expected (versions start at 1, no gaps or duplicates)", m.Version, i+1)
		}
	}
	return out, nil
}

// Statements splits a migration into statements: a statement ends with ';' at the end of a line.
// Lines that are only a `--` comment are dropped; a statement made only of comments is skipped.
// ${database} becomes database, which the caller has validated with [ValidIdentifier].
func Statements(sql, database string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	for line := range strings.Lines(sql) {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "--") {
			continue
		}
		if strings.HasSuffix(t, ";") {
			cur.WriteString(strings.TrimSuffix(strings.TrimRight(line, " \t\r\n"), ";"))
			flush()
			continue
		}
		cur.WriteString(line)
	}
	flush()
	for i := range out {
		out[i] = strings.ReplaceAll(out[i], "${database}", database)
	}
	return out
}

// query returns the single statement of sql/name.sql for database.
func query(name, database string) string {
	b, err := sqlFS.ReadFile("sql/" + name + ".sql")
	if err != nil {
		panic("storage: missing embedded sql/" + name + ".sql") // a build defect, caught by every test
	}
	s := Statements(string(b), database)
	if len(s) != 1 {
		panic("storage: sql/" + name + ".sql must hold exactly one statement")
	}
	return s[0]
}

// Applied is a migration recorded in a database's schema_migrations table.
type Applied struct {
	Version  int
	Name     string
	Checksum string
}

// SchemaStatus compares a database with this build's migrations.
type SchemaStatus struct {
	Applied []Applied
	Known   []Migration
	Pending []Migration // known, not applied
	Newer   []Applied   // applied, unknown to this build
	Changed []Applied   // applied with a checksum other than this build's
}

// Err is the reason the database cannot be used as it is, or nil.
func (s SchemaStatus) Err() error {
	switch {
	case len(s.Newer) > 0:
		return fmt.Errorf("%w: it has migration %04d_%s, this build knows up to %04d (upgrade mcpwatch)",
			ErrNewerSchema, s.Newer[0].Version, s.Newer[0].Name, len(s.Known))
	case len(s.Changed) > 0:
		return fmt.Errorf("%w: %04d_%s has checksum %.12s…, this build's is %.12s…",
			ErrChecksum, s.Changed[0].Version, s.Changed[0].Name, s.Changed[0].Checksum, s.Known[s.Changed[0].Version-1].Checksum)
	case len(s.Pending) > 0:
		return fmt.Errorf("%w: %d pending, first %04d_%s", ErrSchemaBehind, len(s.Pending), s.Pending[0].Version, s.Pending[0].Name)
	}
	return nil
}

// Status reads the database's applied migrations and compares them with this build's. It does not
// change the database; a database never migrated reports every migration pending.
func Status(ctx context.Context, conn driver.Conn, database string) (SchemaStatus, error) {
	known, err := Migrations()
	if err != nil {
		return SchemaStatus{}, err
	}
	if err := checkDatabase(ctx, conn, database); err != nil {
		return SchemaStatus{}, err
	}
	var exists uint64
	if err := conn.QueryRow(ctx, query("table_exists", database), database, "schema_migrations").Scan(&exists); err != nil {
		return SchemaStatus{}, fmt.Errorf("look up %s.schema_migrations: %w", database, err)
	}
	st := SchemaStatus{Known: known}
	if exists > 0 {
		if st.Applied, err = applied(ctx, conn, database); err != nil {
			return SchemaStatus{}, err
		}
	}
	have := map[int]bool{}
	for _, a := range st.Applied {
		have[a.Version] = true
		switch {
		case a.Version > len(known) || a.Version < 1:
			st.Newer = append(st.Newer, a)
		case known[a.Version-1].Checksum != a.Checksum:
			st.Changed = append(st.Changed, a)
		}
	}
	for _, m := range known {
		if !have[m.Version] {
			st.Pending = append(st.Pending, m)
		}
	}
	return st, nil
}

// CheckSchema returns nil if every migration of this build has been applied, as writers need.
// A database migrated further by a newer build is accepted: migrations only add within one event
// schema version, and writers name their columns.
func CheckSchema(ctx context.Context, conn driver.Conn, database string) error {
	st, err := Status(ctx, conn, database)
	if err != nil {
		return err
	}
	st.Newer = nil
	if err := st.Err(); err != nil {
		return fmt.Errorf("database %s: %w", database, err)
	}
	return nil
}

// Migrate brings database up to this build's schema: it applies the pending migrations in version
// order, each statement by statement, and records each in schema_migrations after its last
// statement succeeded. It is idempotent, and a migration interrupted halfway is re-run whole
// (every statement is idempotent). It refuses, before changing anything, a database that holds a
// migration this build does not know ([ErrNewerSchema]) or whose applied migration differs from
// this build's file ([ErrChecksum]), and a server older than [MinServer]. It returns the
// migrations it applied.
//
// Run it from one process (the migrate command or a deploy job); concurrent runs are harmless
// but not coordinated, as ClickHouse offers no lock.
func Migrate(ctx context.Context, conn driver.Conn, database string) ([]Migration, error) {
	if err := ValidIdentifier(database); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	ver, err := ServerVersion(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", database, err)
	}
	if !ver.AtLeast(MinServer.Major, MinServer.Minor) {
		return nil, fmt.Errorf("migrate %s: %w: %s, need %s or newer", database, ErrOldServer, ver, MinServer)
	}
	st, err := Status(ctx, conn, database)
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", database, err)
	}
	if len(st.Newer) > 0 || len(st.Changed) > 0 {
		return nil, fmt.Errorf("migrate %s: %w", database, st.Err())
	}
	if len(st.Pending) == 0 {
		return nil, nil
	}
	if err := conn.Exec(ctx, query("schema_migrations", database)); err != nil {
		return nil, fmt.Errorf("migrate %s: create schema_migrations: %w", database, err)
	}
	// schema_migrations tables made before features were recorded lack the column.
	if err := execGuarded(ctx, conn, database, "ALTER TABLE "+database+".schema_migrations ADD COLUMN features Array(String) DEFAULT []"); err != nil {
		return nil, fmt.Errorf("migrate %s: schema_migrations: %w", database, err)
	}
	features := FeaturesFor(ver)
	var done []Migration
	for _, m := range st.Pending {
		stmts, err := Render(m, database, features)
		if err != nil {
			return done, fmt.Errorf("migrate %s: %w", database, err)
		}
		for i, stmt := range stmts {
			if err := execGuarded(ctx, conn, database, stmt); err != nil {
				return done, fmt.Errorf("migrate %s: %04d_%s statement %d: %w", database, m.Version, m.Name, i+1, err)
			}
		}
		if err := record(ctx, conn, database, m, ver, features); err != nil {
			return done, fmt.Errorf("migrate %s: record %04d_%s: %w", database, m.Version, m.Name, err)
		}
		done = append(done, m)
	}
	return done, nil
}

func checkDatabase(ctx context.Context, conn driver.Conn, database string) error {
	if err := ValidIdentifier(database); err != nil {
		return err
	}
	var n uint64
	if err := conn.QueryRow(ctx, query("database_exists", database), database).Scan(&n); err != nil {
		return fmt.Errorf("look up database %s: %w", database, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s (create it first: CREATE DATABASE %s)", ErrNoDatabase, database, database)
	}
	return nil
}

func applied(ctx context.Context, conn driver.Conn, database string) ([]Applied, error) {
	rows, err := conn.Query(ctx, query("applied_migrations", database))
	if err != nil {
		return nil, fmt.Errorf("read %s.schema_migrations: %w", database, err)
	}
	defer rows.Close()
	var out []Applied
	for rows.Next() {
		var (
			v    uint32
			a    Applied
			name string
		)
		if err := rows.Scan(&v, &name, &a.Checksum); err != nil {
			return nil, fmt.Errorf("read %s.schema_migrations: %w", database, err)
		}
		a.Version, a.Name = int(v), name
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s.schema_migrations: %w", database, err)
	}
	return out, nil
}

// addColumnRE matches the one ALTER form migrations may use on every server. The column may be a
// Nested sub-column (evidence.feature): system.columns lists those under that dotted name.
var addColumnRE = regexp.MustCompile(`(?is)^ALTER\s+TABLE\s+(\w+)\.(\w+)\s+ADD\s+COLUMN\s+(\w+(?:\.\w+)?)\s`)

// execGuarded runs one migration statement. ADD COLUMN has no IF NOT EXISTS on 18.16, so an
// "ALTER TABLE db.t ADD COLUMN c ..." statement is skipped when system.columns already lists c:
// a migration interrupted after it re-runs cleanly.
func execGuarded(ctx context.Context, conn driver.Conn, database, stmt string) error {
	if m := addColumnRE.FindStringSubmatch(stmt); m != nil {
		if m[1] != database {
			return fmt.Errorf("ALTER of %s.%s: migrations may only change %s", m[1], m[2], database)
		}
		var n uint64
		if err := conn.QueryRow(ctx, query("column_exists", database), database, m[2], m[3]).Scan(&n); err != nil {
			return fmt.Errorf("look up column %s.%s: %w", m[2], m[3], err)
		}
		if n > 0 {
			return nil
		}
	}
	return conn.Exec(ctx, stmt)
}

// record inserts m into schema_migrations. Batch INSERT with named columns: on 18.16 an
// INSERT ... VALUES through Exec hangs.
func record(ctx context.Context, conn driver.Conn, database string, m Migration, ver Version, f Features) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+database+".schema_migrations (version, name, checksum, applied_at, server_version, features)")
	if err != nil {
		return err
	}
	defer func() { _ = b.Close() }()
	names := f.Names()
	if names == nil {
		names = []string{}
	}
	if err := b.Append(uint32(m.Version), m.Name, m.Checksum, time.Now().UTC(), ver.Raw, names); err != nil {
		return err
	}
	return b.Send()
}

// CreateDatabase creates database if it does not exist. It needs a user allowed to create
// databases (an administrator, not the pipeline's writer).
func CreateDatabase(ctx context.Context, conn driver.Conn, database string) error {
	if err := ValidIdentifier(database); err != nil {
		return err
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+database); err != nil {
		return fmt.Errorf("create database %s: %w", database, err)
	}
	return nil
}

// DropDatabase drops database if it exists (tests and `reset` tooling).
func DropDatabase(ctx context.Context, conn driver.Conn, database string) error {
	if err := ValidIdentifier(database); err != nil {
		return err
	}
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+database); err != nil {
		return fmt.Errorf("drop database %s: %w", database, err)
	}
	return nil
}
