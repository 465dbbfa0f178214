package forensics

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/storage"
)

//go:embed stored_events.sql
var storedEventsSQL string

// StoredEvents reads the stored MCP events of window w (of one tenant and principal when not
// empty), oldest first, at most limit, each once however often the sink stored it, decoded whole
// from the raw column, and hands each to each (`mcpwatch sigma test --from-clickhouse`).
func StoredEvents(ctx context.Context, conn driver.Conn, database string, w Window, tenant, principal string, limit int, each func(*event.Event) error) error {
	if err := storage.ValidIdentifier(database); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	rows, err := conn.Query(ctx, strings.ReplaceAll(storedEventsSQL, "{database}", database), w.Since.UTC(), w.Until.UTC(), tenant, tenant, principal, principal, uint64(limit))
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		var e event.Event
		if err := event.Decode([]byte(raw), &e); err != nil {
			return fmt.Errorf("stored event: %w", err)
		}
		if err := each(&e); err != nil {
			return err
		}
	}
	return rows.Err()
}
