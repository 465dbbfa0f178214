package storage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcpwatch/mcpwatch/component"
)

// retentionColumns are the day-partitioned tables retention applies to, and the time column
// their partition key is made of. profiles (current state, not history) and schema_migrations
// are kept.
var retentionColumns = map[string]string{
	TableEvents:     "time",
	TableFindings:   "time",
	TableActions:    "time",
	TableScores:     "time",
	"events_minute": "minute",
}

// Retention is how many days each table keeps; a table not listed is kept forever.
type Retention map[string]int

// ParseRetention reads "events=90,findings=365,...": table=days pairs. Days must be at least 1.
func ParseRetention(s string) (Retention, error) {
	r := Retention{}
	for _, pair := range strings.Split(s, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		table, days, ok := strings.Cut(pair, "=")
		table, days = strings.TrimSpace(table), strings.TrimSuffix(strings.TrimSpace(days), "d")
		if _, known := retentionColumns[table]; !ok || !known {
			return nil, fmt.Errorf("retention %q: want table=days with table one of %s", pair, strings.Join(slices.Sorted(maps.Keys(retentionColumns)), ", "))
		}
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("retention %q: days must be a whole number of at least 1", pair)
		}
		r[table] = n
	}
	return r, nil
}

// Validate reports tables retention does not apply to and day counts below 1, each as a field
// error named by its table.
func (r Retention) Validate() error {
	var errs []error
	for _, t := range slices.Sorted(maps.Keys(r)) {
		if _, known := retentionColumns[t]; !known {
			errs = append(errs, component.Fieldf(t, "not a table retention applies to (one of %s)", strings.Join(slices.Sorted(maps.Keys(retentionColumns)), ", ")))
		} else if r[t] < 1 {
			errs = append(errs, component.Fieldf(t, "days must be at least 1, got %d", r[t]))
		}
	}
	return errors.Join(errs...)
}

func (r Retention) String() string {
	var parts []string
	for _, t := range slices.Sorted(maps.Keys(r)) {
		parts = append(parts, fmt.Sprintf("%s=%d", t, r[t]))
	}
	return strings.Join(parts, ",")
}

// RetentionResult is what [ApplyRetention] did to one table.
type RetentionResult struct {
	Table   string
	Days    int
	TTL     bool     // the server enforces it from now on (newer servers)
	Dropped []string // day partitions (YYYYMMDD) dropped now (18.16)
}

// Describe says in one line what [ApplyRetention] did to the table, or would do when dryRun, as
// `mcpwatch retention` prints it.
func (r RetentionResult) Describe(dryRun bool) string {
	switch {
	case r.TTL && dryRun:
		return fmt.Sprintf("%s: would set TTL %d days", r.Table, r.Days)
	case r.TTL:
		return fmt.Sprintf("%s: TTL %d days (the server drops expired parts itself)", r.Table, r.Days)
	case len(r.Dropped) == 0:
		return fmt.Sprintf("%s: nothing older than %d days", r.Table, r.Days)
	case dryRun:
		return fmt.Sprintf("%s: would drop %d day partitions older than %d days: %s", r.Table, len(r.Dropped), r.Days, strings.Join(r.Dropped, " "))
	}
	return fmt.Sprintf("%s: dropped %d day partitions older than %d days: %s", r.Table, len(r.Dropped), r.Days, strings.Join(r.Dropped, " "))
}

// ttlStatements make the server enforce days on table itself, dropping whole parts only (the
// parts of one day partition expire together, as partition drops on 18.16 do).
func ttlStatements(database, table string, days int) []string {
	t := database + "." + table
	return []string{
		fmt.Sprintf("ALTER TABLE %s MODIFY TTL toDateTime(%s) + INTERVAL %d DAY", t, retentionColumns[table], days),
		"ALTER TABLE " + t + " MODIFY SETTING ttl_only_drop_parts = 1",
	}
}

// ApplyRetention enforces r on database. On servers with TTL it sets each table's TTL (idempotent;
// the server drops expired parts in the background from then on). On 18.16, which has no TTL, it
// drops every day partition whose whole day is older than the limit relative to now, i.e. days
// before now-days (UTC); run it periodically (`mcpwatch retention`, or the sink's
// --retention-interval). dryRun reports what would be dropped without dropping it.
func ApplyRetention(ctx context.Context, conn driver.Conn, database string, r Retention, now time.Time, dryRun bool) ([]RetentionResult, error) {
	if err := checkDatabase(ctx, conn, database); err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	ver, err := ServerVersion(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	ttl := FeaturesFor(ver).TTL
	var out []RetentionResult
	for _, table := range slices.Sorted(maps.Keys(r)) {
		days := r[table]
		res := RetentionResult{Table: table, Days: days, TTL: ttl}
		if ttl {
			for _, stmt := range ttlStatements(database, table, days) {
				if dryRun {
					continue
				}
				if err := conn.Exec(ctx, stmt); err != nil {
					return out, fmt.Errorf("retention %s.%s: %w", database, table, err)
				}
			}
			out = append(out, res)
			continue
		}
		cutoff, _ := strconv.ParseUint(now.UTC().AddDate(0, 0, -days).Format("20060102"), 10, 32)
		parts, err := dayPartitions(ctx, conn, database, table)
		if err != nil {
			return out, err
		}
		for _, p := range parts {
			if p >= cutoff {
				continue
			}
			if !dryRun {
				if err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.%s DROP PARTITION %d", database, table, p)); err != nil {
					return out, fmt.Errorf("retention %s.%s: drop partition %d: %w", database, table, p, err)
				}
			}
			res.Dropped = append(res.Dropped, strconv.FormatUint(p, 10))
		}
		out = append(out, res)
	}
	return out, nil
}

// dayPartitions lists the table's active partitions (toYYYYMMDD values), oldest first.
func dayPartitions(ctx context.Context, conn driver.Conn, database, table string) ([]uint64, error) {
	rows, err := conn.Query(ctx, "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active ORDER BY partition", database, table)
	if err != nil {
		return nil, fmt.Errorf("retention: list partitions of %s.%s: %w", database, table, err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("retention: list partitions of %s.%s: %w", database, table, err)
		}
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil || len(p) != 8 {
			return nil, fmt.Errorf("retention: %s.%s has partition %q, not a day (YYYYMMDD): not partitioned as mcpwatch expects", database, table, p)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// EnforceRetention applies r through the sink's connection now and then every interval until ctx
// ends, so a deployment on 18.16 needs no separate scheduler. Failures are logged and retried at
// the next interval: retention is housekeeping and must not stop the sink.
func (s *Sink) EnforceRetention(ctx context.Context, r Retention, every time.Duration) error {
	if len(r) == 0 || every <= 0 {
		return nil
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		res, err := ApplyRetention(ctx, s.conn, s.cfg.Database, r, time.Now(), false)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("retention failed; retrying at the next interval", "err", err, "interval", every)
		case err == nil:
			for _, rr := range res {
				if len(rr.Dropped) > 0 {
					s.log.Info("retention dropped day partitions", "table", rr.Table, "days", rr.Days, "partitions", rr.Dropped)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
