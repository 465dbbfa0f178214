package table

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite internal/table/testdata/* from the current output")

// cases are the tables the goldens print: nothing, awkward cells, a very wide column and
// repeated column names.
var cases = []struct {
	name string
	cols []string
	rows [][]string
}{
	{"empty", []string{"tool", "calls"}, nil},
	{"awkward", []string{"name", "value", "note"}, [][]string{
		{"", "", ""},
		{"소유자 김민지", "ε=0.5 ±1.2", "ünïcödé ✓"},
		{"a,b", `say "hi"`, "line one\nline two"},
		{"crlf\r\n", " leading and trailing ", `back\slash`},
		{"tab\tinside", "x", "y"},
		{"last", "1", "-"},
	}},
	{"wide", []string{"id", "sql"}, [][]string{
		{"1", strings.Repeat("SELECT region, revenue FROM sales WHERE owner = '[EMAIL]' ", 8)},
		{"2", "SELECT 1"},
	}},
	{"duplicate_columns", []string{"a", "b", "a"}, [][]string{{"first", "middle", "last"}}},
}

// Each format's output is pinned byte for byte: `mcpwatch query` output is read by scripts, and
// BENCHMARKS.md and the docs quote it. If this fails after an intended change, rerun with
// -update and review the diff of testdata/.
func TestGolden(t *testing.T) {
	for _, c := range cases {
		for _, f := range []Format{Text, CSV, JSON} {
			t.Run(c.name+"/"+string(f), func(t *testing.T) {
				var out bytes.Buffer
				if err := Write(&out, f, c.cols, c.rows); err != nil {
					t.Fatal(err)
				}
				golden(t, c.name+"."+string(f), out.Bytes())
			})
		}
		t.Run(c.name+"/aligned", func(t *testing.T) {
			var out bytes.Buffer
			if err := WriteAligned(&out, c.cols, c.rows); err != nil {
				t.Fatal(err)
			}
			golden(t, c.name+".aligned", out.Bytes())
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// CSV and JSON must carry every cell back unchanged, whatever it holds (commas, quotes,
// newlines, unicode): a consumer parsing them would otherwise read other values than the
// database returned.
func TestCSVAndJSONRoundTrip(t *testing.T) {
	for _, c := range cases {
		if c.name == "duplicate_columns" {
			continue // JSON keeps one of the same-named columns, as documented
		}
		var out bytes.Buffer
		if err := WriteCSV(&out, c.cols, c.rows); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&out).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := append([][]string{c.cols}, c.rows...)
		if len(recs) != len(want) {
			t.Fatalf("%s: %d CSV records, want %d", c.name, len(recs), len(want))
		}
		for i := range want {
			for j := range want[i] {
				// encoding/csv reads \r\n inside a quoted field back as \n.
				if w := strings.ReplaceAll(want[i][j], "\r\n", "\n"); recs[i][j] != w {
					t.Errorf("%s: CSV cell %d,%d = %q, want %q", c.name, i, j, recs[i][j], w)
				}
			}
		}

		out.Reset()
		if err := WriteJSON(&out, c.cols, c.rows); err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(&out)
		for i, r := range c.rows {
			var m map[string]string
			if err := dec.Decode(&m); err != nil {
				t.Fatalf("%s: row %d: %v", c.name, i, err)
			}
			for j, col := range c.cols {
				if m[col] != r[j] {
					t.Errorf("%s: JSON row %d %s = %q, want %q", c.name, i, col, m[col], r[j])
				}
			}
		}
		if dec.More() {
			t.Errorf("%s: more JSON values than rows", c.name)
		}
	}
}

// The --format flag of every command accepts exactly these names (the empty string is the
// default); anything else is refused with the names to use, before any query runs.
func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"": Text, "table": Text, "csv": CSV, "json": JSON} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"xml", "TABLE", "Json", " csv", "text"} {
		if _, err := ParseFormat(in); err == nil || !strings.Contains(err.Error(), "want table, csv or json") {
			t.Errorf("ParseFormat(%q): %v", in, err)
		}
	}
	var out bytes.Buffer
	if err := Write(&out, "xml", []string{"a"}, [][]string{{"1"}}); err == nil || out.Len() != 0 {
		t.Errorf("Write in an unknown format: %v, wrote %q", err, out.String())
	}
	if err := Write(&out, "", []string{"a"}, [][]string{{"1"}}); err != nil || !strings.HasSuffix(out.String(), "(1 rows)\n") {
		t.Errorf("Write in the default format: %v, wrote %q", err, out.String())
	}
}
