package dashboards

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/internal/chtest"
)

// valueCase is a panel whose rows on the seed data are known: want holds each row's cells as
// text (times as "2006-01-02 15:04:05" UTC), for the acme tenant and for All tenants.
type valueCase struct {
	panel     string // file/title/refId as in columns.golden
	acme, all [][]string
	unordered bool // the panel's ORDER BY leaves ties; compare as sets
}

// The counts follow from seed: acme has mallory's 30 calls (every third, 10, denied), bob's two
// tools/list answers and three kernel events of sbx-7 — 35 events — and globex one call; two
// findings (mallory's, answered by the revoke and quarantine; bob's, open); five actions (revoke,
// quarantine, step-up, its lift, a pending approval); one score of 87.
var valueCases = []valueCase{
	{panel: "soc-overview.json/Calls/A", acme: [][]string{{"35"}}, all: [][]string{{"36"}}},
	{panel: "soc-overview.json/Denials/A", acme: [][]string{{"10"}}, all: [][]string{{"10"}}},
	{panel: "soc-overview.json/Findings/A", acme: [][]string{{"2"}}, all: [][]string{{"2"}}},
	{panel: "soc-overview.json/Actions/A", acme: [][]string{{"5"}}, all: [][]string{{"5"}}},
	{panel: "soc-overview.json/Top-risk principals/A",
		acme: [][]string{{"acme", "mallory", "87", "87", "87: calls_per_min 6 vs 0.5 (self)", "1"}}},
	{panel: "findings-response.json/Open findings/A",
		acme: [][]string{{"2026-11-20 14:06:00", "acme", "bob", "ueba", "tools_changed", "40", "5", "tool definitions changed mid-session"}}},
	{panel: "findings-response.json/Controls in force at the end of the range/A", unordered: true, acme: [][]string{
		{"acme", "revoke", "revoke/subject/acme/mallory", "subject", "playbook:exfil", "score 92.5 >= 90", "2026-11-22 23:00:00", "c-revoke"},
		{"acme", "quarantine", "quarantine/sandbox/acme/sbx-7", "sandbox", "playbook:exfil", "kernel egress", "2026-11-22 23:00:00", "c-quar"},
	}},
	{panel: "findings-response.json/Approvals and lifts/A", acme: [][]string{
		{"2026-11-20 04:30:00", "acme", "approval", "approval/payments/transfer", "pending", "gateway:gw-1", "2 of 3 approvals needed", ""},
		{"2026-11-20 04:00:00", "acme", "lift", "step_up/subject/acme/mallory", "succeeded", "operator:carol", "verified by phone", "c-step"},
	}},
	{panel: "sandboxes-kernel.json/Sandboxes/A",
		acme: [][]string{{"sbx-7", "sales-db", "32", "10", "3", "2026-11-20 02:00:00", "2026-11-20 14:05:00"}},
		all:  [][]string{{"sbx-7", "sales-db", "33", "10", "3", "2026-11-20 02:00:00", "2026-11-20 14:05:00"}}},
	{panel: "mcp-servers-tools.json/Tool usage/A",
		acme: [][]string{{"sales-db", "db_query", "30", "10", "0", "1", "12"}},
		all:  [][]string{{"sales-db", "db_query", "31", "10", "0", "2", "12"}}},
	{panel: "mcp-servers-tools.json/Tool definitions seen/A", acme: [][]string{
		{"sales-db", "h1", "2026-11-20 14:00:00", "2026-11-20 14:00:00", "1", "1"},
		{"sales-db", "h2", "2026-11-20 14:05:00", "2026-11-20 14:05:00", "1", "1"},
	}},
}

// The stat panels and key tables return the values the seed implies, not just some rows: for
// acme and, where given, for All tenants. It fails when a panel counts the wrong thing (kernel
// events left out of calls, a lifted control still shown in force, an answered finding shown
// open, a tenant filter that leaks or drops rows), which the column test cannot see.
func TestPanelValuesOnClickHouse(t *testing.T) {
	db := chtest.New(t)
	seed(t, db)
	sqls := map[string]string{}
	for _, c := range sqlCases(t) {
		sqls[c.name] = c.sql
	}
	r := Range{From: seedDay, To: seedDay.Add(24*time.Hour - time.Second), Interval: time.Minute}
	for _, c := range valueCases {
		sql, ok := sqls[c.panel]
		if !ok {
			t.Errorf("%s: no such panel", c.panel)
			continue
		}
		for _, sel := range []struct {
			label string
			vars  Vars
			want  [][]string
		}{
			{"acme", Vars{"tenant": {"acme"}, "principal": {"mallory"}, "server": {"sales-db"}}, c.acme},
			{"all", Vars{"tenant": nil, "principal": {"mallory"}, "server": nil}, c.all},
		} {
			if sel.want == nil {
				continue
			}
			q, err := Expand(sql, sel.vars, r)
			if err != nil {
				t.Fatalf("%s: %v", c.panel, err)
			}
			got, err := queryText(db, q)
			if err != nil {
				t.Errorf("%s (%s): %v", c.panel, sel.label, err)
				continue
			}
			want := sel.want
			if c.unordered {
				got, want = sortRows(got), sortRows(want)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s (%s):\n got %q\nwant %q", c.panel, sel.label, got, want)
			}
		}
	}
}

// queryText runs q as the read-only user and renders every cell as text.
func queryText(db *chtest.DB, q string) ([][]string, error) {
	rows, err := db.Reader.Query(context.Background(), q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	var out [][]string
	for rows.Next() {
		ptrs := make([]any, len(types))
		for i, ct := range types {
			ptrs[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]string, len(ptrs))
		for i, p := range ptrs {
			switch v := reflect.ValueOf(p).Elem().Interface().(type) {
			case time.Time:
				row[i] = v.UTC().Format(time.DateTime)
			default:
				row[i] = fmt.Sprint(v)
			}
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

func sortRows(rows [][]string) [][]string {
	s := slices.Clone(rows)
	slices.SortFunc(s, func(a, b []string) int { return strings.Compare(strings.Join(a, "\x00"), strings.Join(b, "\x00")) })
	return s
}
