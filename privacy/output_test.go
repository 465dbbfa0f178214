package privacy

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/internal/table"
)

// `query --dp` prints an answer through Row: the noise's 95% half-width is rounded to three
// significant digits with a ± sign, the rest printed in full. If this broke, analysts would
// read a different precision than they were told, or cells under the wrong column.
func TestAnswerRow(t *testing.T) {
	a := Answer{Aggregate: Mean, Column: "latency_ms", Value: 123.456789, Epsilon: 0.5, Error95: 11.98273,
		Spent: 1.5, Remaining: 8.5, ID: "r-1", Query: "mean(latency_ms) WHERE tool = 'db_query'"}
	want := []string{"mean", "123.456789", "0.5", "±12", "1.5", "8.5", "mean(latency_ms) WHERE tool = 'db_query'"}
	if got := a.Row(); !slices.Equal(got, want) {
		t.Fatalf("Row() = %q, want %q", got, want)
	}
	if len(AnswerColumns) != len(want) {
		t.Fatalf("%d columns for %d cells", len(AnswerColumns), len(want))
	}
	if got := (Answer{Aggregate: Count, Value: 10042, Epsilon: 0.5, Error95: 5.991}).Row()[3]; got != "±5.99" {
		t.Fatalf("error95 cell %q", got)
	}
}

// In JSON the whole answer is printed, noise parameters included, so a script can check the
// error it was given; in CSV the row under its header.
func TestAnswerWrite(t *testing.T) {
	a := Answer{Aggregate: Count, Value: 10042, Epsilon: 0.5, Error95: 5.991, Spent: 0.5, Remaining: 9.5, Query: "count()"}
	var b strings.Builder
	if err := a.Write(&b, table.JSON); err != nil {
		t.Fatal(err)
	}
	var back Answer
	if err := json.Unmarshal([]byte(b.String()), &back); err != nil || back.Value != a.Value || back.Error95 != a.Error95 || back.Query != a.Query {
		t.Fatalf("json %s: %v", b.String(), err)
	}
	b.Reset()
	if err := a.Write(&b, table.CSV); err != nil {
		t.Fatal(err)
	}
	if want := "aggregate,value,epsilon,error95,spent,remaining,query\ncount,10042,0.5,±5.99,0.5,9.5,count()\n"; b.String() != want {
		t.Fatalf("csv %q, want %q", b.String(), want)
	}
}
