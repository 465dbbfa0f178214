package ledger

import (
	"context"

	"github.com/mcpwatch/mcpwatch/storage"
)

// ClickHouseSource reads the response_audit table's copy of the chain, in seq order, over a
// connection opened with o when called (give it the read-only user: verify never writes).
func ClickHouseSource(o storage.Options) Source {
	return func(ctx context.Context, fn func([]byte) error) error {
		conn, err := storage.Open(ctx, o)
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		return storage.ReadAudit(ctx, conn, o.Database, fn)
	}
}
