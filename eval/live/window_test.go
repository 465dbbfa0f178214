package live

import (
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/eval/traffic"
)

// Window must keep the history as generated, start every kept instance inside the live window
// with its calls, drop everything after the window's end, and say which instances it cut short.
func TestWindow(t *testing.T) {
	full, err := traffic.Generate(traffic.Config{Seed: 7, Principals: 60, History: 6 * time.Hour, PerKind: 2})
	if err != nil {
		t.Fatal(err)
	}
	test := 4 * time.Minute
	d, cut, err := Window(full, test, []traffic.Kind{traffic.Scraping, traffic.LowSlow, traffic.Stolen})
	if err != nil {
		t.Fatal(err)
	}
	end := d.TestStart.Add(test)
	if !d.TestEnd.Equal(end) || len(d.Instances) != 6 {
		t.Fatalf("test end %s, %d instances", d.TestEnd, len(d.Instances))
	}
	hist := func(d *traffic.Dataset) int {
		n := 0
		for _, c := range d.Calls {
			if c.Time.Before(d.TestStart) {
				n++
			}
		}
		return n
	}
	if hist(d) != hist(full) {
		t.Errorf("history: %d calls, generated %d", hist(d), hist(full))
	}
	calls := make([]int, len(d.Instances))
	for i, c := range d.Calls {
		if i > 0 && c.Time.Before(d.Calls[i-1].Time) {
			t.Fatal("calls out of time order")
		}
		if !c.Time.Before(end) {
			t.Fatalf("call at %s after the window's end", c.Time)
		}
		if c.Instance >= 0 {
			in := d.Instances[c.Instance]
			if c.Kind != in.Kind || c.Principal != in.Principal && c.Kind != traffic.Stolen || c.Time.Before(in.Start) {
				t.Fatalf("call %+v does not belong to instance %+v", c, in)
			}
			calls[c.Instance]++
		}
	}
	for i, in := range d.Instances {
		if in.ID != i || in.Start.Before(d.TestStart) || in.Start.After(d.TestStart.Add(test/2)) || in.Calls != calls[i] || in.Calls == 0 {
			t.Errorf("instance %+v (calls counted %d)", in, calls[i])
		}
	}
	if cut.Kept[traffic.LowSlow] != 2 || cut.Truncated[traffic.LowSlow] != 2 || cut.Truncated[traffic.Stolen] != 2 {
		t.Errorf("cut %+v: low-and-slow and stolen outlast 4 minutes", cut)
	}
	if _, _, err := Window(full, 2*time.Hour, nil); err == nil {
		t.Error("a window longer than the test phase was accepted")
	}
}
