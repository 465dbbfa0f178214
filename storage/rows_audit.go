package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcpwatch/mcpwatch/event"
)

// TableAudit holds the response audit trail (migration 0009).
const TableAudit = "response_audit"

// auditRows buffers rows of the response_audit table.
type auditRows struct {
	seq, timeMS                                                       []uint64
	time, ingest                                                      []time.Time
	keyID, prevHash, hash, actionID, tenant, kind, actor, action, raw []string
	partition                                                         []int32
	offset                                                            []int64
}

func (r *auditRows) columns() []column {
	return []column{
		{"seq", r.seq}, {"time", r.time}, {"time_ms", r.timeMS}, {"ingest_time", r.ingest},
		{"key_id", r.keyID}, {"prev_hash", r.prevHash}, {"hash", r.hash}, {"action_id", r.actionID},
		{"source_partition", r.partition}, {"source_offset", r.offset}, {"tenant", r.tenant},
		{"kind", r.kind}, {"actor", r.actor}, {"action", r.action}, {"raw", r.raw},
	}
}

func (r *auditRows) len() int { return len(r.seq) }

// add stores e as read (raw). The action's tenant, kind and actor are copied out for queries
// when it decodes; an entry whose action does not (the ledger chains such records as found) is
// stored all the same, with those columns empty.
func (r *auditRows) add(e *event.AuditEntry, raw []byte, ingest time.Time) error {
	var c conv
	t := c.dateTime("time", time.UnixMilli(e.TimeMS), true)
	if c.err != nil {
		return fmt.Errorf("audit entry %d: %w", e.Seq, c.err)
	}
	var a event.Action
	if event.Decode(e.Action, &a) != nil {
		a = event.Action{}
	}
	r.seq = append(r.seq, e.Seq)
	r.time = append(r.time, t)
	r.timeMS = append(r.timeMS, uint64(e.TimeMS))
	r.ingest = append(r.ingest, ingest)
	r.keyID = append(r.keyID, e.KeyID)
	r.prevHash = append(r.prevHash, e.PrevHash)
	r.hash = append(r.hash, e.Hash)
	r.actionID = append(r.actionID, e.ActionID)
	r.partition = append(r.partition, e.Partition)
	r.offset = append(r.offset, e.Offset)
	r.tenant = append(r.tenant, a.Tenant)
	r.kind = append(r.kind, string(a.Kind))
	r.actor = append(r.actor, a.Actor)
	r.action = append(r.action, string(e.Action))
	r.raw = append(r.raw, string(raw))
	return nil
}

// ReadAudit passes the stored audit entries (their raw form) to fn in seq order. A replayed copy
// not yet merged away is read once (LIMIT 1 BY seq, hash); two different entries under one seq
// are both read, for the verifier to report. It stops at fn's first error.
func ReadAudit(ctx context.Context, conn driver.Conn, database string, fn func(raw []byte) error) error {
	if err := ValidIdentifier(database); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": 3600}))
	rows, err := conn.Query(ctx, "SELECT raw FROM "+database+"."+TableAudit+" ORDER BY seq, hash LIMIT 1 BY seq, hash")
	if err != nil {
		return fmt.Errorf("read %s.%s: %w", database, TableAudit, err)
	}
	defer rows.Close()
	var raw string
	for rows.Next() {
		if err := rows.Scan(&raw); err != nil {
			return fmt.Errorf("read %s.%s: %w", database, TableAudit, err)
		}
		if err := fn([]byte(raw)); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s.%s: %w", database, TableAudit, err)
	}
	return nil
}
