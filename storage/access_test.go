package storage

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// Access control is version-gated: 20.5 and newer get the reader role from migration 0006 and
// the user from EnsureReader; 18.16 gets neither and keeps its read-only user in users.xml.
// chdb's embedded user may not manage roles, so the SQL is pinned here instead.
func TestReaderRoleRendering(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	m := ms[5]
	if m.Name != "reader_role" {
		t.Fatalf("migration 6 is %s", m.Name)
	}
	old, err := Render(m, "mcpwatch", FeaturesFor(Version{Major: 20, Minor: 4}))
	if err != nil || len(old) != 0 {
		t.Fatalf("20.4 gets %q %v, want nothing", old, err)
	}
	got, err := Render(m, "mcpwatch", FeaturesFor(Version{Major: 20, Minor: 5}))
	want := []string{"CREATE ROLE IF NOT EXISTS mcpwatch_reader", "GRANT SELECT ON mcpwatch.* TO mcpwatch_reader"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("20.5 gets %q %v, want %q", got, err, want)
	}
	stmts := readerStatements("mcpwatch", "mcpwatch_ro", strings.Repeat("ab", 32))
	want = []string{
		"CREATE USER IF NOT EXISTS mcpwatch_ro IDENTIFIED WITH sha256_hash BY '" + strings.Repeat("ab", 32) + "' DEFAULT DATABASE mcpwatch SETTINGS readonly = 2",
		"ALTER USER mcpwatch_ro IDENTIFIED WITH sha256_hash BY '" + strings.Repeat("ab", 32) + "' DEFAULT DATABASE mcpwatch SETTINGS readonly = 2",
		"GRANT mcpwatch_reader TO mcpwatch_ro",
		"ALTER USER mcpwatch_ro DEFAULT ROLE mcpwatch_reader",
	}
	if !slices.Equal(stmts, want) {
		t.Fatalf("reader statements\n%q\nwant\n%q", stmts, want)
	}
}

func TestEnsureReader(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	for _, bad := range [][2]string{{"ro; DROP", "pw"}, {"ro", ""}} {
		if err := EnsureReader(ctx, conn, db, bad[0], bad[1]); err == nil || errors.Is(err, ErrNoAccessControl) {
			t.Errorf("user %q password %q: %v", bad[0], bad[1], err)
		}
	}
	v, err := ServerVersion(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	err = EnsureReader(ctx, conn, db, "mcpwatch_test_ro", "secret-pw")
	if FeaturesFor(v).RBAC {
		t.Skipf("ClickHouse %s has SQL access control; this test covers the users.xml case", v)
	}
	if !errors.Is(err, ErrNoAccessControl) || strings.Contains(err.Error(), "secret-pw") {
		t.Fatalf("on %s: %v, want ErrNoAccessControl without the password", v, err)
	}
}
