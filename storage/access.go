package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ErrNoAccessControl: the server has no SQL users and roles (before 20.5); its users live in
// users.xml.
var ErrNoAccessControl = errors.New("clickhouse server has no SQL access control (users are configured in users.xml)")

// ReaderRole is the role migration 0006 creates on servers with SQL access control: SELECT on the
// database and nothing else.
func ReaderRole(database string) string { return database + "_reader" }

// EnsureReader creates the read-only forensic user on a server with SQL access control, or
// updates its password: readonly = 2 (no writes, no DDL, and the setting cannot be lifted by
// the client), default database, and the reader role as its only grant. Only the SHA-256 of the
// password is sent, so it appears in no query log. It returns [ErrNoAccessControl] on 18.16,
// where the user belongs in users.xml (deploy/local/stack.sh writes it).
func EnsureReader(ctx context.Context, conn driver.Conn, database, user, password string) error {
	if err := ValidIdentifier(database); err != nil {
		return fmt.Errorf("reader user: database: %w", err)
	}
	if err := ValidIdentifier(user); err != nil {
		return fmt.Errorf("reader user: %w", err)
	}
	if password == "" {
		return errors.New("reader user: empty password (set $MCPWATCH_CLICKHOUSE_RO_PASSWORD)")
	}
	ver, err := ServerVersion(ctx, conn)
	if err != nil {
		return fmt.Errorf("reader user: %w", err)
	}
	if !FeaturesFor(ver).RBAC {
		return fmt.Errorf("reader user %s on ClickHouse %s: %w", user, ver, ErrNoAccessControl)
	}
	sum := sha256.Sum256([]byte(password))
	for _, stmt := range readerStatements(database, user, hex.EncodeToString(sum[:])) {
		if err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("reader user %s: %w", user, err) // the statement holds only the hash; still not echoed
		}
	}
	return nil
}

// readerStatements create or update user; each is idempotent.
func readerStatements(database, user, sha256Hex string) []string {
	auth := "IDENTIFIED WITH sha256_hash BY '" + sha256Hex + "'"
	return []string{
		"CREATE USER IF NOT EXISTS " + user + " " + auth + " DEFAULT DATABASE " + database + " SETTINGS readonly = 2",
		"ALTER USER " + user + " " + auth + " DEFAULT DATABASE " + database + " SETTINGS readonly = 2",
		"GRANT " + ReaderRole(database) + " TO " + user,
		"ALTER USER " + user + " DEFAULT ROLE " + ReaderRole(database),
	}
}
