package pins

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// `mcpwatch tools list` is how an operator finds what to approve: every tool of every server in
// name order with its state, or with pendingOnly just the ones a gateway blocks or audits. If a
// changed or unapproved tool went missing here, it could not be found to unblock.
func TestList(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	at := time.Date(2026, 11, 23, 9, 6, 12, 0, time.FixedZone("KST", 9*3600))
	f := &File{}
	*f.Put("zeta", "read") = Pin{SHA256: a, ApprovedBy: "tofu", ApprovedAt: at}
	*f.Put("acme-data", "send_email") = Pin{SeenSHA256: b}                                               // strict, never approved
	*f.Put("acme-data", "db_query") = Pin{SHA256: a, SeenSHA256: b, ApprovedBy: "carol", ApprovedAt: at} // changed
	*f.Put("acme-data", "file_read") = Pin{SHA256: a, SeenSHA256: a}                                     // seen the approved one

	want := [][]string{
		{"acme-data", "db_query", StateChanged, "aaaaaaaaaaaa", "bbbbbbbbbbbb", "carol", "2026-11-23T09:06:12+09:00"},
		{"acme-data", "file_read", StateOK, "aaaaaaaaaaaa", "aaaaaaaaaaaa", "", ""},
		{"acme-data", "send_email", StateUnapproved, "-", "bbbbbbbbbbbb", "", ""},
		{"zeta", "read", StateOK, "aaaaaaaaaaaa", "-", "tofu", "2026-11-23T09:06:12+09:00"},
	}
	got := f.List(false)
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("List(false):\n%q\nwant\n%q", got, want)
	}
	for _, r := range got {
		if len(r) != len(ListColumns) {
			t.Fatalf("row %q has %d cells for %d columns", r, len(r), len(ListColumns))
		}
	}
	if got := f.List(true); !slices.EqualFunc(got, [][]string{want[0], want[2]}, slices.Equal) {
		t.Fatalf("List(true): %q", got)
	}
	if got := (&File{}).List(false); len(got) != 0 {
		t.Fatalf("empty file: %q", got)
	}
}
