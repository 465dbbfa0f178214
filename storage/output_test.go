package storage

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// `mcpwatch retention` prints one line per table from Describe; --dry-run must say "would" for
// every change, or an operator previewing a drop would read that it already happened.
func TestRetentionResultDescribe(t *testing.T) {
	for _, c := range []struct {
		r      RetentionResult
		dryRun bool
		want   string
	}{
		{RetentionResult{Table: "events", Days: 90, TTL: true}, true, "events: would set TTL 90 days"},
		{RetentionResult{Table: "events", Days: 90, TTL: true}, false, "events: TTL 90 days (the server drops expired parts itself)"},
		{RetentionResult{Table: "scores", Days: 30}, false, "scores: nothing older than 30 days"},
		{RetentionResult{Table: "scores", Days: 30}, true, "scores: nothing older than 30 days"},
		{RetentionResult{Table: "events", Days: 2, Dropped: []string{"20261120", "20261121"}}, true,
			"events: would drop 2 day partitions older than 2 days: 20261120 20261121"},
		{RetentionResult{Table: "events", Days: 2, Dropped: []string{"20261120"}}, false,
			"events: dropped 1 day partitions older than 2 days: 20261120"},
	} {
		if got := c.r.Describe(c.dryRun); got != c.want {
			t.Errorf("%+v dry=%v: %q, want %q", c.r, c.dryRun, got, c.want)
		}
	}
}

// `mcpwatch migrate --print VERSION` shows the DDL a server would get without connecting: every
// migration in order under its header, each statement ended with ';', in the forms of that
// version. If this broke, operators reviewing a schema change would read other DDL than the
// server receives.
func TestWriteSchema(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		version, features string
		has, hasNot       string
	}{
		{"18.16.1", "none (ClickHouse 18.16 forms)", "DateTime", "DateTime64"},
		{"24.8.4.13", "codecs,datetime64,lowcardinality,rbac,skip_indexes,ttl", "DateTime64", ""},
	} {
		v, err := ParseVersion(c.version)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := WriteSchema(&out, "audit_db", v); err != nil {
			t.Fatal(err)
		}
		s := out.String()
		if head := "-- mcpwatch schema for ClickHouse " + c.version + " (features: " + c.features + "), database audit_db\n"; !strings.HasPrefix(s, head) {
			t.Fatalf("%s: header %q, want %q", c.version, s[:strings.IndexByte(s, '\n')+1], head)
		}
		last := 0
		for _, m := range ms {
			h := fmt.Sprintf("\n-- %04d %s\n", m.Version, m.Name)
			i := strings.Index(s, h)
			if i < last {
				t.Fatalf("%s: migration header %q missing or out of order", c.version, h)
			}
			last = i
		}
		if !strings.Contains(s, "CREATE TABLE IF NOT EXISTS audit_db.events\n") || !strings.Contains(s, c.has) ||
			(c.hasNot != "" && strings.Contains(s, c.hasNot)) {
			t.Errorf("%s: unexpected DDL:\n%s", c.version, s)
		}
		for _, part := range strings.Split(s, "\n-- ")[1:] {
			_, body, _ := strings.Cut(part, "\n")
			if body = strings.TrimSpace(body); body != "" && !strings.HasSuffix(body, ";") {
				t.Errorf("%s: statement without ';' in -- %s", c.version, part)
			}
		}
		if strings.Contains(s, "${database}") || strings.Contains(s, "{{") {
			t.Errorf("%s: unrendered template left", c.version)
		}
	}
	if err := WriteSchema(&bytes.Buffer{}, "bad-name", Version{Major: 18, Minor: 16, Patch: 1}); err == nil {
		t.Fatal("invalid database name accepted")
	}
}
