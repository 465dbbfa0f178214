// Package table prints rows of strings under column names in the output formats of mcpwatch's
// commands: an aligned text table, CSV, or JSON lines. `mcpwatch query`, `investigate`,
// `tools list` and the demo print through it, so that one --format flag means the same
// everywhere.
package table

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Format is an output format, as named on the command line.
type Format string

const (
	// Text aligns the columns with spaces and ends with a "(N rows)" line; its name is "table".
	Text Format = "table"
	// CSV is RFC 4180 CSV with a header row.
	CSV Format = "csv"
	// JSON is one object per row (JSON lines), keyed by column name.
	JSON Format = "json"
)

// ParseFormat returns the format named s: "table" (also the empty string), "csv" or "json".
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Text, CSV, JSON:
		return f, nil
	case "":
		return Text, nil
	}
	return "", fmt.Errorf("unknown format %q: want table, csv or json", s)
}

// Write prints cols and rows in format f; every row has one cell per column. An unknown format
// is an error, as with [ParseFormat].
func Write(w io.Writer, f Format, cols []string, rows [][]string) error {
	f, err := ParseFormat(string(f))
	if err != nil {
		return err
	}
	switch f {
	case CSV:
		return WriteCSV(w, cols, rows)
	case JSON:
		return WriteJSON(w, cols, rows)
	}
	return WriteText(w, cols, rows)
}

// WriteText prints the header and the rows with columns aligned by spaces (two between
// columns), then "(N rows)". Cells are printed as they are: a tab or newline inside a cell
// breaks the alignment.
func WriteText(w io.Writer, cols []string, rows [][]string) error {
	tw := newAligned(w, cols, rows)
	fmt.Fprintf(tw, "(%d rows)\n", len(rows))
	return tw.Flush()
}

// WriteAligned prints the header and the rows as [WriteText] does, without the row count.
func WriteAligned(w io.Writer, cols []string, rows [][]string) error {
	return newAligned(w, cols, rows).Flush()
}

func newAligned(w io.Writer, cols []string, rows [][]string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw
}

// WriteCSV prints a header row and the rows as CSV, quoting cells as RFC 4180 requires.
func WriteCSV(w io.Writer, cols []string, rows [][]string) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(cols)
	_ = cw.WriteAll(rows)
	return cw.Error()
}

// WriteJSON prints one JSON object per row, mapping each column name to its cell; keys come out
// sorted, and of columns with the same name the last one wins.
func WriteJSON(w io.Writer, cols []string, rows [][]string) error {
	enc := json.NewEncoder(w)
	for _, r := range rows {
		m := make(map[string]string, len(cols))
		for i, c := range cols {
			m[c] = r[i]
		}
		if err := enc.Encode(m); err != nil {
			return err
		}
	}
	return nil
}
