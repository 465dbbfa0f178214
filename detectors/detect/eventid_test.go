package detect

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/mcpwatch/mcpwatch/event"
)

// Evidence carries the event ids detectors sampled: an id that did not print back exactly as it
// came would point an analyst at an event that does not exist.
func TestEventIDRoundTrip(t *testing.T) {
	for _, id := range []string{"", event.NewID(), "0193a5c2-0000-7000-8000-00000000002a",
		"00000000-0000-0000-0000-000000000000", "0193A5C2-0000-7000-8000-00000000002A", "evt-1",
		"0193a5c2-0000-7000-8000-00000000002", "0193a5c2x0000-7000-8000-00000000002a", "ü" + strings.Repeat("x", 34)} {
		e := MakeEventID(id)
		if got := e.String(); got != id {
			t.Errorf("MakeEventID(%q).String() = %q", id, got)
		}
		if e.IsZero() != (id == "") {
			t.Errorf("MakeEventID(%q).IsZero() = %v", id, e.IsZero())
		}
	}
	if e := MakeEventID(event.NewID()); e.other != "" {
		t.Errorf("a UUID is held as a string: %+v", e)
	}
}

// An id that is not a UUID is copied: a detector's sample must not keep a record's bytes alive.
func TestEventIDCopies(t *testing.T) {
	b := []byte("evt-1")
	s := unsafe.String(&b[0], len(b))
	e := MakeEventID(s)
	b[0] = 'X'
	if e.String() != "evt-1" {
		t.Fatalf("the id changed with the bytes it came from: %q", e.String())
	}
}
