// Package forensics runs canned investigations over mcpwatch's ClickHouse tables and turns them
// into a timeline a responder can read: every event, finding and action about one principal,
// MCP session, resource or sandbox in a time window, merged in time order, with a summary.
//
// Every value from the user is bound as a query argument by clickhouse-go (client-side on
// ClickHouse 18.16, which has no server-side parameters); only the database name, validated as
// an identifier, is spliced into the SQL. Reads use FINAL, so events written twice by
// at-least-once delivery appear once.
package forensics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcpwatch/mcpwatch/storage"
)

// Subject is what an investigation is about.
type Subject string

const (
	// Principal: everything a subject or OAuth client did, the findings about it and the actions
	// taken on it. The value matches the principal key, the subject or the client id.
	Principal Subject = "principal"
	// Session: everything in one MCP session (the Mcp-Session-Id), the findings whose evidence
	// includes its events and their actions.
	Session Subject = "session"
	// Resource: who touched a resource URI, tool or prompt. The value may contain * wildcards
	// (db://sales/*).
	Resource Subject = "resource"
	// Sandbox: MCP and kernel events of one sandbox, findings on them, and actions on the
	// sandbox (quarantines).
	Sandbox Subject = "sandbox"
)

// Subjects lists the investigations, in the order the CLI shows them.
var Subjects = []Subject{Principal, Session, Resource, Sandbox}

// ParseSubject returns the subject named s: principal, session, resource or sandbox.
func ParseSubject(s string) (Subject, error) {
	if sub := Subject(s); slices.Contains(Subjects, sub) {
		return sub, nil
	}
	return "", fmt.Errorf("investigate %q: want principal, session, resource or sandbox", s)
}

// ErrInvalid marks an investigation that cannot run as asked.
var ErrInvalid = errors.New("invalid investigation")

// Query is one investigation.
type Query struct {
	Subject Subject
	Value   string
	Tenant  string // "" means every tenant
	Window  Window
	// Limit caps the timeline's entries of each kind; default 1000. The summary always counts
	// everything in the window.
	Limit int
}

// Entry is one line of the timeline.
type Entry struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"` // event, finding or action
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Principal string    `json:"principal,omitempty"`
	Signature string    `json:"signature,omitempty"` // event signature, detector, or action kind
	Name      string    `json:"name,omitempty"`
	What      string    `json:"what,omitempty"`    // method tool resource, syscall path, action target
	Outcome   string    `json:"outcome,omitempty"` // result[/rule], or action status
	Score     *float64  `json:"score,omitempty"`   // findings
	Detail    string    `json:"detail,omitempty"`
	SrcIP     string    `json:"src_ip,omitempty"`
	Session   string    `json:"session,omitempty"`
	Sandbox   string    `json:"sandbox,omitempty"`
}

// Summary is the header of a timeline, over everything in the window (not only the entries
// shown).
type Summary struct {
	Events       uint64    `json:"events"`
	Denials      uint64    `json:"denials"`
	Errors       uint64    `json:"errors"`
	KernelEvents uint64    `json:"kernel_events"`
	Findings     uint64    `json:"findings"`
	Actions      uint64    `json:"actions"`
	FirstSeen    time.Time `json:"first_seen,omitzero"`
	LastSeen     time.Time `json:"last_seen,omitzero"`
	Principals   []string  `json:"principals"`
	Tools        []string  `json:"tools"`
	SrcIPs       []string  `json:"src_ips"`
	Sessions     uint64    `json:"sessions"`
	HighestScore float64   `json:"highest_score"`
}

// Timeline is the result of an investigation.
type Timeline struct {
	Query     Query   `json:"-"`
	Summary   Summary `json:"summary"`
	Entries   []Entry `json:"entries"`
	Truncated bool    `json:"truncated"` // some kind had more entries than Limit
	// Behaviour is what is normal for a principal (its profiles) next to what it did in the last
	// hour, and its latest score with the evidence; principal investigations only.
	Behaviour *Behaviour `json:"behaviour,omitempty"`
}

// Investigate runs q against database on conn (the read-only user, normally).
func Investigate(ctx context.Context, conn driver.Conn, database string, q Query) (*Timeline, error) {
	if err := storage.ValidIdentifier(database); err != nil {
		return nil, fmt.Errorf("%w: database: %v", ErrInvalid, err)
	}
	q.Value = strings.TrimSpace(q.Value)
	if q.Value == "" {
		return nil, fmt.Errorf("%w: %s: no value to investigate", ErrInvalid, q.Subject)
	}
	if !q.Window.Since.Before(q.Window.Until) {
		return nil, fmt.Errorf("%w: empty time window", ErrInvalid)
	}
	if q.Limit <= 0 {
		q.Limit = 1000
	}
	s, err := newScope(database, q)
	if err != nil {
		return nil, err
	}
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": 120}))
	tl := &Timeline{Query: q, Entries: []Entry{}}
	if err := s.summary(ctx, conn, &tl.Summary); err != nil {
		return nil, err
	}
	for _, read := range []func(context.Context, driver.Conn) ([]Entry, error){s.readEvents, s.readFindings, s.readActions} {
		es, err := read(ctx, conn)
		if err != nil {
			return nil, err
		}
		if len(es) > q.Limit {
			es, tl.Truncated = es[:q.Limit], true
		}
		tl.Entries = append(tl.Entries, es...)
	}
	if q.Subject == Principal {
		if tl.Behaviour, err = s.behaviour(ctx, conn, q); err != nil {
			return nil, err
		}
	}
	kindOrder := map[string]int{"event": 0, "finding": 1, "action": 2}
	slices.SortStableFunc(tl.Entries, func(a, b Entry) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return kindOrder[a.Kind] - kindOrder[b.Kind]
	})
	return tl, nil
}

// likePattern turns a glob (* and ? wildcards) into a LIKE pattern, escaping LIKE's own
// wildcards so that % and _ in a resource name match themselves.
func likePattern(glob string) string {
	var b strings.Builder
	for _, r := range glob {
		switch r {
		case '\\', '%', '_':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '*':
			b.WriteByte('%')
		case '?':
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
