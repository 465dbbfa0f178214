package privacy

import (
	"slices"
	"testing"
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
