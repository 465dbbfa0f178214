package forensics

import (
	"strings"
	"testing"
)

// `mcpwatch investigate KIND VALUE` accepts exactly the four subjects, spelled as the CLI shows
// them; anything else is refused with the list before any query runs.
func TestParseSubject(t *testing.T) {
	for _, s := range Subjects {
		if got, err := ParseSubject(string(s)); err != nil || got != s {
			t.Errorf("ParseSubject(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "table", "Principal", "principals", " session"} {
		if _, err := ParseSubject(s); err == nil || !strings.Contains(err.Error(), "want principal, session, resource or sandbox") {
			t.Errorf("ParseSubject(%q): %v", s, err)
		}
	}
}
