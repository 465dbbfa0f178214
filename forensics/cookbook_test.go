package forensics

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// cookbook are the expected results of every query in docs/forensics.md on the seed (tenant
// acme, 2026-11-20), derived from the seed's description in seed_test.go.
var cookbook = map[string][][]string{
	"top-talkers":    {{"mallory", "30", "10", "2"}, {"alice", "20", "0", "1"}, {"bob", "12", "0", "1"}},
	"denied-by-rule": {{"no-bulk-export", "10", "1", "2026-11-20 02:00:00", "2026-11-20 02:04:30"}},
	"denial-rate":    {{"mallory", "10", "30", "0.333"}},
	"denial-codes":   {{"403", "-32001", "bulk export of customer data", "10"}},
	"tool-usage":     {{"db_query", "49", "2", "10"}, {"search", "10", "1", "0"}, {"export_csv", "1", "1", "0"}},
	"peak-call-rate": {{"mallory", "6"}, {"alice", "1"}, {"bob", "1"}},
	"new-tools-per-principal": {
		{"mallory", "export_csv", "2026-11-20 02:03:10", "1"},
		{"bob", "search", "2026-11-20 14:00:30", "10"},
	},
	"off-hours-access":    {{"mallory", "30", "2026-11-20 02:00:00", "2026-11-20 02:04:50"}},
	"external-source-ips": {{"203.0.113.7", `["mallory"]`, "30"}},
	"source-ips-per-principal": {
		{"alice", `["10.1.0.5"]`, "1"}, {"bob", `["10.1.0.6"]`, "1"}, {"mallory", `["203.0.113.7"]`, "1"},
	},
	"resource-access":         {{"db://sales/customers", "mallory", "30", "10"}, {"db://sales/orders", "alice", "20", "0"}},
	"pii-bearing-calls":       {{"mallory", "phone_kr", "30", "30"}, {"alice", "email", "2", "1"}},
	"tool-definition-changes": {{"s-bob", "bob", "2", `["h1","h2"]`, "2026-11-20 14:00:00", "2026-11-20 14:05:00"}},
	"findings-by-detector":    {{"rate", "1", "1", "92.5"}},
	"riskiest-principals":     {{"mallory", "92.5", "1", "2026-11-20 02:05:00"}},
	"finding-evidence": {
		{"2026-11-20 02:00:00", "mallory", "db_query", "denied", "no-bulk-export"},
		{"2026-11-20 02:00:30", "mallory", "db_query", "denied", "no-bulk-export"},
		{"2026-11-20 02:03:10", "mallory", "export_csv", "allowed", "analysts-read-sales"},
	},
	"why-this-score": {
		{"2026-11-20 02:05:00", "87", "87: calls_per_min 6 vs 0.5 (self); first use of export_csv", "ueba", "rate", "calls_per_min", "6", "0.5", "self", "99", "27", "6 calls/min, normal 0.5"},
		{"2026-11-20 02:05:00", "87", "87: calls_per_min 6 vs 0.5 (self); first use of export_csv", "ueba", "new_tool", "tool", "1", "0", "peers", "NULL", "18", "first call of export_csv"},
	},
	"tools-outside-profile":     {{"mallory", "export_csv", "1", "2026-11-20 02:03:10"}},
	"revocations":               {{"mallory", "2026-11-20 02:05:00", "2026-11-20 02:05:00", "92.5", "412", "succeeded", "1"}},
	"response-latency":          {{"quarantine", "1", "0", "1250", "1250"}, {"revoke", "1", "0", "412", "412"}, {"webhook", "1", "0", "380", "380"}},
	"retried-or-failed-actions": {{"2026-11-20 02:05:01", "quarantine", "quarantine/sandbox/acme/sbx-7", "succeeded", "2", "cgroup frozen"}},
	"kernel-activity-by-sandbox": {
		{"sbx-7", "connect", "1", `["python3"]`}, {"sbx-7", "execve", "1", `["python3"]`}, {"sbx-7", "openat", "1", `["python3"]`},
	},
	"sensitive-file-reads": {{"2026-11-20 02:01:10", "sbx-7", "python3", "4242", "/etc/shadow"}},
	"sandbox-egress":       {{"sbx-7", "198.51.100.9:4444", "python3", "1", "2026-11-20 02:01:05"}},
}

var sqlBlock = regexp.MustCompile("(?s)```sql\n(.*?)```")

// cookbookQueries returns the named ```sql blocks of docs/forensics.md.
func cookbookQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../docs/forensics.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range sqlBlock.FindAllStringSubmatch(string(b), -1) {
		first, _, _ := strings.Cut(m[1], "\n")
		name, ok := strings.CutPrefix(first, "-- name: ")
		if !ok {
			t.Errorf("sql block without a '-- name: ' first line: %.60q", m[1])
			continue
		}
		if _, dup := out[name]; dup {
			t.Errorf("two queries named %s", name)
		}
		out[name] = m[1]
	}
	return out
}

// Every cookbook query in docs/forensics.md runs, read-only, against the seeded day and returns
// exactly the rows the seed implies: a query that silently returns nothing (a wrong column, a
// filter that never matches) or double-counts replays fails here.
func TestCookbook(t *testing.T) {
	queries := cookbookQueries(t)
	for name := range cookbook {
		if _, ok := queries[name]; !ok {
			t.Errorf("expected query %s is not in docs/forensics.md", name)
		}
	}
	if len(queries) < 20 {
		t.Errorf("the cookbook has %d queries; it promises about 20", len(queries))
	}
	db := seeded(t)
	all := map[string]string{"tenant": "acme", "since": "2026-11-20 00:00:00", "until": "2026-11-21 00:00:00", "principal": "mallory"}
	for _, name := range slices.Sorted(mapsKeys(queries)) {
		t.Run(name, func(t *testing.T) {
			want, ok := cookbook[name]
			if !ok {
				t.Fatalf("no expected result for cookbook query %s: add it to the cookbook table", name)
			}
			// BindParams refuses a value without a placeholder: pass each query only its own.
			params := map[string]string{}
			for k, v := range all {
				if strings.Contains(queries[name], "{"+k+":") {
					params[k] = v
				}
			}
			sql, args, err := BindParams(queries[name], params)
			if err != nil {
				t.Fatal(err)
			}
			_, rows, err := storageQuery(context.Background(), db, sql, args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, sql)
			}
			if !slices.EqualFunc(rows, want, slices.Equal) {
				t.Fatalf("got  %q\nwant %q", rows, want)
			}
		})
	}
}
