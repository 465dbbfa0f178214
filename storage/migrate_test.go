package storage

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestStatements(t *testing.T) {
	sql := `-- header comment; with a semicolon
CREATE TABLE IF NOT EXISTS ${database}.a
(
    x String -- trailing comment
);

  -- indented comment
CREATE TABLE IF NOT EXISTS ${database}.b (s String DEFAULT 'a;b') ENGINE = Memory;
-- only comments;
SELECT 1;   
SELECT 2`
	got := Statements(sql, "db1")
	want := []string{
		"CREATE TABLE IF NOT EXISTS db1.a\n(\n    x String -- trailing comment\n)",
		"CREATE TABLE IF NOT EXISTS db1.b (s String DEFAULT 'a;b') ENGINE = Memory",
		"SELECT 1",
		"SELECT 2",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

// The embedded migrations must load (names, contiguous versions) and obey the rules that make
// re-running a half-applied migration safe on 18.16: if this fails, a crash during `migrate`
// could leave a database that no later run can fix. Each file is checked as 18.16 gets it (no
// newer feature may leak into that form) and as a current server gets it.
func TestMigrationFilesFollowTheRules(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("migrations %v", ms)
	}
	create := regexp.MustCompile(`(?i)^CREATE\s+(TABLE|DATABASE|VIEW|MATERIALIZED\s+VIEW|ROLE|USER)\s+`)
	guardedAlter := regexp.MustCompile(`(?i)^ALTER\s+TABLE\s+db\.\w+\s+(ADD\s+COLUMN\s+\w+(?:\.\w+)?\s|ADD\s+INDEX\s+IF\s+NOT\s+EXISTS\s|MODIFY\s+(TTL|SETTING)\s)`)
	for _, m := range ms {
		total := 0
		for _, f := range []Features{{}, AllFeatures()} {
			stmts, err := Render(m, "db", f)
			if err != nil {
				t.Fatalf("%04d_%s with %s: %v", m.Version, m.Name, f, err)
			}
			total += len(stmts)
			for i, s := range stmts {
				up := strings.ToUpper(s)
				where := fmt.Sprintf("%04d_%s statement %d (features %s)", m.Version, m.Name, i+1, f)
				switch {
				case create.MatchString(s) && !strings.Contains(up, "IF NOT EXISTS"):
					t.Errorf("%s: CREATE without IF NOT EXISTS", where)
				case strings.HasPrefix(up, "DROP") && !strings.Contains(up, "IF EXISTS"):
					t.Errorf("%s: DROP without IF EXISTS", where)
				case strings.HasPrefix(up, "ALTER") && !guardedAlter.MatchString(s):
					// Migrate guards "ADD COLUMN name" itself (18.16 has no IF NOT EXISTS there);
					// other ALTERs must be idempotent on their own.
					t.Errorf("%s: ALTER that is not idempotent: %.80s", where, s)
				case strings.HasPrefix(up, "ALTER") && strings.Contains(up, "ADD COLUMN") && !addColumnRE.MatchString(s):
					t.Errorf("%s: ADD COLUMN not in the guarded form", where)
				case strings.HasPrefix(up, "INSERT"):
					t.Errorf("%s: INSERT ... VALUES through Exec hangs on 18.16", where)
				}
				if create.MatchString(s) && !strings.Contains(s, "db.") && !strings.Contains(up, " ROLE ") {
					t.Errorf("%s: object not qualified with ${database}", where)
				}
				if strings.Contains(s, "{{") || strings.Contains(s, "${") {
					t.Errorf("%s: unexpanded placeholder: %.80s", where, s)
				}
				if f == (Features{}) {
					for _, banned := range []string{"DateTime64", "Map(", "LowCardinality", "CODEC", "TTL ", "IPv4", "IPv6", "JSONExtract", "INDEX ", " ROLE ", "GRANT "} {
						if strings.Contains(s, banned) {
							t.Errorf("%s: %s does not exist on ClickHouse 18.16", where, banned)
						}
					}
				}
			}
		}
		if total == 0 {
			t.Errorf("%04d_%s: no statements for any server", m.Version, m.Name)
		}
	}
}

// Rendering follows the server version: 18.16 gets none of the newer forms, 20.3 the storage
// features, 20.5 access control as well.
func TestFeaturesFor(t *testing.T) {
	for _, c := range []struct {
		v    string
		want string
	}{
		{"18.16.1", ""},
		{"19.17.4.11", ""},
		{"20.3.1", "codecs,datetime64,lowcardinality,skip_indexes,ttl"},
		{"20.5.2", "codecs,datetime64,lowcardinality,rbac,skip_indexes,ttl"},
		{"26.9.2.1", "codecs,datetime64,lowcardinality,rbac,skip_indexes,ttl"},
	} {
		v, err := ParseVersion(c.v)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(FeaturesFor(v).Names(), ","); got != c.want {
			t.Errorf("%s: %q, want %q", c.v, got, c.want)
		}
	}
}

func TestLoadMigrationsRejectsBadSets(t *testing.T) {
	ok := &fstest.MapFile{Data: []byte("SELECT 1;\n")}
	for name, fsys := range map[string]fstest.MapFS{
		"gap":       {"m/0001_a.sql": ok, "m/0003_c.sql": ok},
		"duplicate": {"m/0001_a.sql": ok, "m/0001_b.sql": ok},
		"from zero": {"m/0000_a.sql": ok},
		"bad name":  {"m/0001-a.sql": ok},
	} {
		if _, err := loadMigrations(fsys, "m"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Migrate creates the tables with the engines and keys that make replays collapse, records what
// it applied, and a second run changes nothing.
func TestMigrateAppliesAndIsIdempotent(t *testing.T) {
	conn, db := freshDB(t)
	ctx := context.Background()
	known, _ := Migrations()
	applied, err := Migrate(ctx, conn, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(known) {
		t.Fatalf("applied %d of %d migrations", len(applied), len(known))
	}
	for _, tb := range []struct{ name, sortingKey string }{
		{"events", "tenant, principal, time, id"},
		{"findings", "tenant, principal, time, id"},
		{"actions", "tenant, subject, time, id"},
		{"schema_migrations", "version"},
	} {
		var engine, key, part string
		err := conn.QueryRow(ctx, "SELECT engine, sorting_key, partition_key FROM system.tables WHERE database = ? AND name = ?", db, tb.name).
			Scan(&engine, &key, &part)
		if err != nil {
			t.Fatalf("%s: %v", tb.name, err)
		}
		if engine != "ReplacingMergeTree" || key != tb.sortingKey {
			t.Errorf("%s: engine %s, sorting key %q; want ReplacingMergeTree, %q", tb.name, engine, key, tb.sortingKey)
		}
		if tb.name != "schema_migrations" && part != "toYYYYMMDD(time)" {
			t.Errorf("%s: partition key %q", tb.name, part)
		}
	}
	again, err := Migrate(ctx, conn, db)
	if err != nil || len(again) != 0 {
		t.Fatalf("second run applied %v, err %v", again, err)
	}
	if n := count(t, conn, "SELECT count() FROM "+db+".schema_migrations"); n != uint64(len(known)) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(known))
	}
	st, err := Status(ctx, conn, db)
	if err != nil || st.Err() != nil || len(st.Applied) != len(known) || st.Applied[0].Checksum != known[0].Checksum {
		t.Fatalf("status %+v, err %v", st, err)
	}
	if err := CheckSchema(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
}

// A database migrated by a newer mcpwatch must be refused before any DDL runs: older DDL against
// a newer schema could undo what the newer build relies on. Writers, which only add rows to
// columns they name, still accept it.
func TestMigrateRefusesNewerSchema(t *testing.T) {
	conn, db := freshDB(t)
	ctx := context.Background()
	known, _ := Migrations()
	if err := conn.Exec(ctx, query("schema_migrations", db)); err != nil {
		t.Fatal(err)
	}
	future := Migration{Version: len(known) + 1, Name: "from_the_future", Checksum: "f00d"}
	if err := record(ctx, conn, db, future, Version{Raw: "26.1.1"}, Features{}); err != nil {
		t.Fatal(err)
	}
	_, err := Migrate(ctx, conn, db)
	if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), "from_the_future") {
		t.Fatalf("got %v, want ErrNewerSchema naming the unknown migration", err)
	}
	if n := count(t, conn, "SELECT count() FROM system.tables WHERE database = ? AND name = 'events'", db); n != 0 {
		t.Fatal("Migrate ran DDL before refusing")
	}
	if err := CheckSchema(ctx, conn, db); !errors.Is(err, ErrSchemaBehind) {
		t.Fatalf("CheckSchema on an unmigrated database: %v", err)
	}

	conn2, db2 := migrated(t)
	if err := record(ctx, conn2, db2, future, Version{Raw: "26.1.1"}, Features{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, conn2, db2); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("got %v, want ErrNewerSchema", err)
	}
	if err := CheckSchema(ctx, conn2, db2); err != nil {
		t.Fatalf("a writer should accept a newer, additive schema: %v", err)
	}
}

// An applied migration whose file changed since means the database may not have the schema this
// build expects; Migrate must say so instead of skipping it.
func TestMigrateRefusesChangedMigration(t *testing.T) {
	conn, db := freshDB(t)
	ctx := context.Background()
	if err := conn.Exec(ctx, query("schema_migrations", db)); err != nil {
		t.Fatal(err)
	}
	if err := record(ctx, conn, db, Migration{Version: 1, Name: "init", Checksum: "0123456789abcdef"}, Version{Raw: "18.16.1"}, Features{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, conn, db); !errors.Is(err, ErrChecksum) {
		t.Fatalf("got %v, want ErrChecksum", err)
	}
	if err := CheckSchema(ctx, conn, db); !errors.Is(err, ErrChecksum) {
		t.Fatalf("CheckSchema: %v, want ErrChecksum", err)
	}
}

// A migration interrupted after some statements (a crash, a lost connection) completes on the
// next run.
func TestMigrateResumesInterruptedMigration(t *testing.T) {
	conn, db := freshDB(t)
	ctx := context.Background()
	known, _ := Migrations()
	first := Statements(known[0].SQL, db)[0]
	if err := conn.Exec(ctx, first); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, "SELECT count() FROM system.tables WHERE database = ? AND name IN ('events', 'findings', 'actions')", db); n != 3 {
		t.Fatalf("%d of 3 tables after resuming", n)
	}
}

func TestMigrateRefusesMissingDatabaseAndBadNames(t *testing.T) {
	env := chEnv(t)
	conn := openAs(t, env.Addr, env.AdminUser, env.AdminPassword, "")
	ctx := context.Background()
	if _, err := Migrate(ctx, conn, "mcpwatch_test_does_not_exist_"+time.Now().Format("150405")); !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("got %v, want ErrNoDatabase", err)
	}
	for _, bad := range []string{"", "a.b", "x; DROP DATABASE y", "1abc", "a-b", "`a`"} {
		if _, err := Migrate(ctx, conn, bad); err == nil {
			t.Errorf("database name %q accepted", bad)
		}
	}
}

// 0007 re-run whole after it was applied (a run interrupted before it was recorded) changes
// nothing and fails nowhere: Nested sub-columns are guarded like plain ones, and the recreated
// dedup views still show the new columns.
func TestMigrationExplanationsRerun(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	ms, _ := Migrations()
	ver, err := ServerVersion(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	m := ms[6]
	if m.Name != "explanations" {
		t.Fatalf("migration 7 is %s", m.Name)
	}
	stmts, err := Render(m, db, FeaturesFor(ver))
	if err != nil {
		t.Fatal(err)
	}
	before := count(t, conn, "SELECT count() FROM system.columns WHERE database = ?", db)
	for range 2 {
		for i, s := range stmts {
			if err := execGuarded(ctx, conn, db, s); err != nil {
				t.Fatalf("statement %d again: %v\n%s", i+1, err, s)
			}
		}
	}
	if after := count(t, conn, "SELECT count() FROM system.columns WHERE database = ?", db); after != before {
		t.Fatalf("%d columns after re-running 0007, %d before", after, before)
	}
	for table, col := range map[string]string{"scores_dedup": "evidence.peer_percentile", "findings_dedup": "tags", "events_dedup": "user_agent"} {
		if n := count(t, conn, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?", db, table, col); n != 1 {
			t.Errorf("%s has no column %s", table, col)
		}
	}
}
