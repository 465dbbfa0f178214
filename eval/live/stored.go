package live

import (
	"context"
	"fmt"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/storage"
)

// stored is what the pipeline stored for a run, read back as the read-only user.
type stored struct {
	findings    []event.Finding
	scores      []event.Score
	events      int       // test-phase events
	audited     int       // test-phase request events of the calls' methods
	toolChanges int       // tool-change events
	latencies   []float64 // seconds from a test-phase finding's event time to its row
}

// readStored reads the tenant's findings and scores (every one: the metrics need the score
// standing before the test phase), and counts the test phase's events from testStart.
func readStored(ctx context.Context, ro storage.Options, db, tenant string, testStart time.Time, seen map[string]time.Time) (*stored, error) {
	conn, err := storage.Open(ctx, ro)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	st := &stored{}
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT raw FROM %s.findings FINAL WHERE tenant = ?", db), tenant)
	if err != nil {
		return nil, fmt.Errorf("findings: %w", err)
	}
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			rows.Close()
			return nil, err
		}
		var f event.Finding
		if err := event.Decode([]byte(raw), &f); err != nil {
			rows.Close()
			return nil, fmt.Errorf("finding: %w", err)
		}
		st.findings = append(st.findings, f)
		if at, ok := seen[f.ID]; ok && !f.Time.Before(testStart) {
			st.latencies = append(st.latencies, at.Sub(f.Time).Seconds())
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = conn.Query(ctx, fmt.Sprintf("SELECT raw FROM %s.scores FINAL WHERE tenant = ?", db), tenant)
	if err != nil {
		return nil, fmt.Errorf("scores: %w", err)
	}
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			rows.Close()
			return nil, err
		}
		var s event.Score
		if err := event.Decode([]byte(raw), &s); err != nil {
			rows.Close()
			return nil, fmt.Errorf("score: %w", err)
		}
		st.scores = append(st.scores, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var events, audited, changes uint64
	err = conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(),
	countIf(direction = 'request' AND method IN ('tools/call', 'resources/read', 'prompts/get', 'tools/list')),
	countIf(attr_values[indexOf(attr_keys, 'mcp.tool.changed')] != '')
FROM %s.events FINAL WHERE tenant = ? AND time_ms >= ?`, db), tenant, uint64(testStart.UnixMilli())).Scan(&events, &audited, &changes)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	st.events, st.audited, st.toolChanges = int(events), int(audited), int(changes)
	return st, nil
}

// watchFindings polls the tenant's findings from from on, as the read-only user, until ctx ends,
// and returns when each was first seen stored, by id: ingest_time has whole seconds only.
func watchFindings(ctx context.Context, ro storage.Options, db, tenant string, from time.Time) (func() map[string]time.Time, error) {
	conn, err := storage.Open(ctx, ro)
	if err != nil {
		return nil, err
	}
	seen := map[string]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer conn.Close()
		q := fmt.Sprintf("SELECT id FROM %s.findings WHERE tenant = ? AND time_ms >= ?", db)
		for {
			if rows, err := conn.Query(ctx, q, tenant, uint64(from.UnixMilli())); err == nil {
				now := time.Now()
				for rows.Next() {
					var id string
					if rows.Scan(&id) == nil {
						if _, ok := seen[id]; !ok {
							seen[id] = now
						}
					}
				}
				rows.Close()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return func() map[string]time.Time { <-done; return seen }, nil
}
