package forensics

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// scope holds the WHERE conditions of one investigation for each table, with their arguments.
// Only the validated database name is spliced in; every value is a ? bound by the driver.
type scope struct {
	db                        string
	base                      string // window and tenant; every table has time and tenant
	baseArgs                  []any
	evWhere, fiWhere, acWhere string
	evArgs, fiArgs, acArgs    []any
	limit                     int
}

func newScope(db string, q Query) (*scope, error) {
	s := &scope{db: db, limit: q.Limit + 1,
		base:     "time >= ? AND time < ? AND (? = '' OR tenant = ?)",
		baseArgs: []any{q.Window.Since.UTC(), q.Window.Until.UTC(), q.Tenant, q.Tenant},
	}
	v := q.Value
	// Findings whose evidence includes a matching event; used where findings have no column
	// that names the subject directly.
	byEvidence := func() {
		s.fiWhere = "id IN (SELECT id FROM " + db + ".findings ARRAY JOIN event_ids AS eid WHERE " + s.base +
			" AND eid IN (SELECT id FROM " + db + ".events WHERE " + s.base + " AND " + s.evWhere + "))"
		s.fiArgs = slices.Concat(s.baseArgs, s.baseArgs, s.evArgs)
	}
	switch q.Subject {
	case Principal:
		s.evWhere, s.evArgs = "(principal = ? OR subject = ? OR client_id = ?)", []any{v, v, v}
		s.fiWhere, s.fiArgs = s.evWhere, s.evArgs
	case Session:
		s.evWhere, s.evArgs = "session_id = ?", []any{v}
		byEvidence()
	case Resource:
		p := likePattern(v)
		s.evWhere, s.evArgs = "(resource_uri LIKE ? OR tool LIKE ? OR prompt LIKE ?)", []any{p, p, p}
		byEvidence()
	case Sandbox:
		s.evWhere, s.evArgs = "sandbox = ?", []any{v}
		byEvidence()
	default:
		return nil, fmt.Errorf("%w: unknown investigation %q (want principal, session, resource or sandbox)", ErrInvalid, q.Subject)
	}
	// Actions taken on the findings in scope, plus, per subject, actions that name it directly:
	// revocations of the subject, quarantines of the sandbox or tool.
	s.acWhere = "finding_id IN (SELECT id FROM " + s.db + ".findings WHERE " + s.base + " AND " + s.fiWhere + ")"
	s.acArgs = slices.Concat(s.baseArgs, s.fiArgs)
	switch q.Subject {
	case Principal:
		s.acWhere = "(subject = ? OR " + s.acWhere + ")"
		s.acArgs = slices.Concat([]any{v}, s.acArgs)
	case Sandbox:
		s.acWhere = "(target = ? OR (target LIKE '%/sandbox/%' AND endsWith(target, ?)) OR " + s.acWhere + ")"
		s.acArgs = slices.Concat([]any{v, "/" + v}, s.acArgs)
	case Resource:
		s.acWhere = "(target LIKE ? OR (target LIKE '%/tool/%' AND target LIKE ?) OR " + s.acWhere + ")"
		s.acArgs = slices.Concat([]any{likePattern(v), "%/" + likePattern(v)}, s.acArgs)
	}
	return s, nil
}

func (s *scope) where(cond string, args []any) (string, []any) {
	return " WHERE " + s.base + " AND " + cond, slices.Concat(s.baseArgs, args)
}

func (s *scope) summary(ctx context.Context, conn driver.Conn, sum *Summary) error {
	w, args := s.where(s.evWhere, s.evArgs)
	var first, last uint64
	err := conn.QueryRow(ctx, `SELECT count(), countIf(result = 'denied'), countIf(result = 'error'), countIf(source = 'kernel'),
		min(time_ms), max(time_ms), arraySlice(arraySort(groupUniqArray(principal)), 1, 100), arraySlice(arraySort(groupUniqArrayIf(tool, tool != '')), 1, 100),
		arraySlice(arraySort(groupUniqArrayIf(src_ip, src_ip != '')), 1, 100), uniqExactIf(session_id, session_id != '')
		FROM `+s.db+`.events FINAL`+w, args...).
		Scan(&sum.Events, &sum.Denials, &sum.Errors, &sum.KernelEvents, &first, &last, &sum.Principals, &sum.Tools, &sum.SrcIPs, &sum.Sessions)
	if err != nil {
		return fmt.Errorf("forensics: summarize events: %w", err)
	}
	seen := func(n uint64, first, last uint64) {
		if n == 0 {
			return
		}
		f, l := time.UnixMilli(int64(first)).UTC(), time.UnixMilli(int64(last)).UTC()
		if sum.FirstSeen.IsZero() || f.Before(sum.FirstSeen) {
			sum.FirstSeen = f
		}
		if l.After(sum.LastSeen) {
			sum.LastSeen = l
		}
	}
	seen(sum.Events, first, last)
	w, args = s.where(s.fiWhere, s.fiArgs)
	if err := conn.QueryRow(ctx, "SELECT count(), max(score), min(time_ms), max(time_ms) FROM "+s.db+".findings FINAL"+w, args...).
		Scan(&sum.Findings, &sum.HighestScore, &first, &last); err != nil {
		return fmt.Errorf("forensics: summarize findings: %w", err)
	}
	seen(sum.Findings, first, last)
	w, args = s.where(s.acWhere, s.acArgs)
	if err := conn.QueryRow(ctx, "SELECT count(), min(time_ms), max(time_ms) FROM "+s.db+".actions FINAL"+w, args...).
		Scan(&sum.Actions, &first, &last); err != nil {
		return fmt.Errorf("forensics: summarize actions: %w", err)
	}
	seen(sum.Actions, first, last)
	for _, l := range [][]string{sum.Principals, sum.Tools, sum.SrcIPs} {
		slices.Sort(l)
	}
	return nil
}

func (s *scope) readEvents(ctx context.Context, conn driver.Conn) ([]Entry, error) {
	w, args := s.where(s.evWhere, s.evArgs)
	rows, err := conn.Query(ctx, `SELECT id, time_ms, tenant, principal, source, signature, name, direction, method, tool,
		resource_uri, prompt, toString(result), policy_rule, reason, session_id, src_ip, sandbox,
		proc_syscall, proc_comm, proc_path, arguments_masked, dst_ip, dst_port
		FROM `+s.db+`.events FINAL`+w+` ORDER BY time_ms, id LIMIT ?`, append(args, s.limit)...)
	if err != nil {
		return nil, fmt.Errorf("forensics: read events: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var (
			e                                                            Entry
			ms                                                           uint64
			source, dir, method, tool, uri, prompt, result, rule, reason string
			syscall, comm, path, args, dstIP                             string
			dstPort                                                      uint16
		)
		if err := rows.Scan(&e.ID, &ms, &e.Tenant, &e.Principal, &source, &e.Signature, &e.Name, &dir, &method, &tool,
			&uri, &prompt, &result, &rule, &reason, &e.Session, &e.SrcIP, &e.Sandbox, &syscall, &comm, &path, &args, &dstIP, &dstPort); err != nil {
			return nil, fmt.Errorf("forensics: read events: %w", err)
		}
		e.Kind, e.Time = "event", time.UnixMilli(int64(ms)).UTC()
		if source == "kernel" {
			if path == "" && dstIP != "" { // a connect: its destination
				path = net.JoinHostPort(dstIP, strconv.Itoa(int(dstPort)))
			}
			e.What = join(syscall, path)
			e.Detail = join("comm="+comm, reason)
			if comm == "" {
				e.Detail = reason
			}
		} else {
			e.What = join(method, tool, uri, prompt)
			e.Detail = reason
			if e.Detail == "" && args != "" {
				e.Detail = "args " + short(args, 80)
			}
		}
		if e.What == "" {
			e.What = source + " " + dir
		}
		e.Outcome = result
		if rule != "" {
			e.Outcome += "/" + rule
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("forensics: read events: %w", err)
	}
	return out, nil
}

func (s *scope) readFindings(ctx context.Context, conn driver.Conn) ([]Entry, error) {
	w, args := s.where(s.fiWhere, s.fiArgs)
	rows, err := conn.Query(ctx, `SELECT id, time_ms, tenant, principal, detector, score, severity, summary, length(event_ids)
		FROM `+s.db+`.findings FINAL`+w+` ORDER BY time_ms, id LIMIT ?`, append(args, s.limit)...)
	if err != nil {
		return nil, fmt.Errorf("forensics: read findings: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var (
			e       Entry
			ms      uint64
			score   float64
			sev     uint8
			summary string
			nEv     uint64
		)
		if err := rows.Scan(&e.ID, &ms, &e.Tenant, &e.Principal, &e.Signature, &score, &sev, &summary, &nEv); err != nil {
			return nil, fmt.Errorf("forensics: read findings: %w", err)
		}
		e.Kind, e.Time, e.Score = "finding", time.UnixMilli(int64(ms)).UTC(), &score
		e.Name, e.Outcome = "severity "+strconv.Itoa(int(sev)), "finding"
		e.Detail = summary
		if nEv > 0 {
			e.Detail += fmt.Sprintf(" (%d evidence events)", nEv)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("forensics: read findings: %w", err)
	}
	return out, nil
}

func (s *scope) readActions(ctx context.Context, conn driver.Conn) ([]Entry, error) {
	w, args := s.where(s.acWhere, s.acArgs)
	rows, err := conn.Query(ctx, `SELECT id, time_ms, tenant, subject, kind, target, status, detail, attempts, latency_ms, finding_id
		FROM `+s.db+`.actions FINAL`+w+` ORDER BY time_ms, id LIMIT ?`, append(args, s.limit)...)
	if err != nil {
		return nil, fmt.Errorf("forensics: read actions: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var (
			e                   Entry
			ms                  uint64
			status, detail, fid string
			attempts            uint32
			latency             float64
		)
		if err := rows.Scan(&e.ID, &ms, &e.Tenant, &e.Principal, &e.Signature, &e.What, &status, &detail, &attempts, &latency, &fid); err != nil {
			return nil, fmt.Errorf("forensics: read actions: %w", err)
		}
		e.Kind, e.Time, e.Outcome = "action", time.UnixMilli(int64(ms)).UTC(), status
		e.Name = "response " + e.Signature
		e.Detail = join(detail, fmt.Sprintf("%d attempt(s), %.0f ms after finding %s", attempts, latency, short(fid, 13)))
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("forensics: read actions: %w", err)
	}
	return out, nil
}

func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}

func short(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
