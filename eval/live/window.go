package live

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/mcpwatch/mcpwatch/eval/traffic"
)

// Cut is what [Window] did to the attack instances, for the report.
type Cut struct {
	Kept      map[traffic.Kind]int // instances kept, by kind
	Truncated map[traffic.Kind]int // of those, how many the window's end cut short
}

// Window keeps the first test of d's test phase: real time is expensive, and the generator's
// test phase is 90 minutes. The clean calls in it are kept; every attack instance of kinds (all
// when empty) is moved, with all its calls (and a stolen token's owner's concurrent session), to
// start in the first half of the window, staggered, so several of each kind start in it; calls
// after the window's end are dropped, so long kinds (low-and-slow, stolen token, rug pull) are
// cut short. The history is left alone. d is not changed.
func Window(d *traffic.Dataset, test time.Duration, kinds []traffic.Kind) (*traffic.Dataset, Cut, error) {
	if test <= 0 || test > d.TestEnd.Sub(d.TestStart) {
		return nil, Cut{}, fmt.Errorf("live test window %s: want more than 0 and at most the test phase (%s)", test, d.TestEnd.Sub(d.TestStart))
	}
	end := d.TestStart.Add(test)
	keep := func(k traffic.Kind) bool { return len(kinds) == 0 || slices.Contains(kinds, k) }
	var ins []traffic.Instance
	for _, in := range d.Instances {
		if keep(in.Kind) {
			ins = append(ins, in)
		}
	}
	// Starts spread over [10 s, test/2] in report order of kinds, so each kind's instances start
	// at different moments and every instance has at least half the window to show itself.
	slices.SortStableFunc(ins, func(a, b traffic.Instance) int {
		return cmp.Or(cmp.Compare(slices.Index(traffic.Kinds, a.Kind), slices.Index(traffic.Kinds, b.Kind)), cmp.Compare(a.ID, b.ID))
	})
	first, span := 10*time.Second, test/2-10*time.Second
	shift := map[int]time.Duration{} // by old instance id
	newID := map[int]int{}
	owner := map[string]int{} // the owner's session beside a stolen token, by session
	for i := range ins {
		at := d.TestStart.Add(first)
		if len(ins) > 1 {
			at = at.Add(time.Duration(int64(span) * int64(i) / int64(len(ins)-1)))
		}
		at = at.Truncate(time.Second)
		shift[ins[i].ID] = at.Sub(ins[i].Start)
		newID[ins[i].ID] = i
		owner[fmt.Sprintf("a-%d-own", ins[i].ID)] = ins[i].ID
	}
	out := &traffic.Dataset{Config: d.Config, Principals: d.Principals, Start: d.Start, TestStart: d.TestStart, TestEnd: end}
	out.Config.Test = test
	cut := Cut{Kept: map[traffic.Kind]int{}, Truncated: map[traffic.Kind]int{}}
	for _, c := range d.Calls {
		switch id, own := owner[c.Session]; {
		case c.Instance >= 0:
			s, ok := shift[c.Instance]
			if !ok {
				continue // a kind left out
			}
			c.Time, c.Instance = c.Time.Add(s), newID[c.Instance]
		case own && !c.Time.Before(d.TestStart):
			c.Time = c.Time.Add(shift[id])
		}
		if !c.Time.Before(end) {
			continue
		}
		out.Calls = append(out.Calls, c)
	}
	slices.SortStableFunc(out.Calls, func(a, b traffic.Call) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Principal, b.Principal))
	})
	for i, in := range ins {
		s := shift[in.ID]
		in.ID, in.Start, in.End, in.Calls = i, in.Start.Add(s), in.End.Add(s), 0
		cut.Kept[in.Kind]++
		if !in.End.Before(end) {
			in.End = end.Add(-time.Millisecond)
			cut.Truncated[in.Kind]++
		}
		out.Instances = append(out.Instances, in)
	}
	for _, c := range out.Calls {
		if c.Instance >= 0 {
			out.Instances[c.Instance].Calls++
		}
	}
	return out, cut, nil
}
