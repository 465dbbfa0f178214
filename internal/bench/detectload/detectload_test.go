package detectload

import (
	"bytes"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// The reused path must yield the very records the allocating one does: otherwise the two
// harness modes of the detect benchmark would judge different traffic, and their difference
// would not be the harness's cost alone.
func TestFillReusedMatchesNext(t *testing.T) {
	old, reused := New(500, 9, 50*time.Microsecond), New(500, 9, 50*time.Microsecond)
	evs := make([]event.Event, 250)
	var kinds [4]int
	for chunk := range 200 {
		reused.FillReused(evs)
		for i := range evs {
			e := old.Next()
			want, err := event.Encode(&e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := event.Encode(&evs[i])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("chunk %d event %d differs:\n got %s\nwant %s", chunk, i, got, want)
			}
			switch {
			case e.Outcome.Result == event.ResultDenied:
				kinds[0]++
			case e.MCP.Direction == event.DirResponse:
				kinds[1]++
			case e.MCP.ResourceURI != "":
				kinds[2]++
			case len(e.PII) > 0 || e.Network.SrcIP[:3] == "192":
				kinds[3]++
			}
		}
	}
	for i, n := range kinds {
		if n == 0 {
			t.Errorf("kind %d of event never generated: the comparison misses it", i)
		}
	}
}

// Filling reused storage allocates nothing per event once warm: what the benchmark's records
// cost is then the buffer they are encoded into, as with a Kafka fetch.
func TestFillReusedAllocates(t *testing.T) {
	g := New(1000, 1, 10*time.Microsecond)
	evs := make([]event.Event, 500)
	for range 50 {
		g.FillReused(evs)
	}
	if a := testing.AllocsPerRun(20, func() { g.FillReused(evs) }); a > 1 {
		t.Errorf("%v allocations per FillReused of 500 events", a)
	}
}
