package traffic

import (
	"reflect"
	"testing"
	"time"
)

func small(seed uint64, split Split) Config {
	return Config{Seed: seed, Principals: 80, History: 24 * time.Hour, PerKind: 1, Split: split}
}

func TestDeterministicPerSeed(t *testing.T) {
	a, err := Generate(small(5, Eval))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(small(5, Eval))
	if !reflect.DeepEqual(a.Calls, b.Calls) || !reflect.DeepEqual(a.Instances, b.Instances) {
		t.Fatal("the same seed generated different datasets")
	}
	c, _ := Generate(small(6, Eval))
	if reflect.DeepEqual(a.Calls, c.Calls) {
		t.Fatal("different seeds generated the same calls")
	}
}

func TestLabelsConsistentWithCalls(t *testing.T) {
	for _, split := range []Split{Eval, Tune} {
		d, err := Generate(small(9, split))
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Instances) != len(Kinds) {
			t.Fatalf("%d instances, want one per kind", len(d.Instances))
		}
		seen := map[string]bool{}
		for _, in := range d.Instances {
			if seen[in.Principal] {
				t.Errorf("principal %s attacked twice", in.Principal)
			}
			seen[in.Principal] = true
			if in.Start.Before(d.TestStart) || in.End.After(d.TestEnd) || in.End.Before(in.Start) {
				t.Errorf("instance %d (%s) [%s, %s] outside the test phase", in.ID, in.Kind, in.Start, in.End)
			}
		}
		counts := make([]int, len(d.Instances))
		for i, c := range d.Calls {
			if i > 0 && c.Time.Before(d.Calls[i-1].Time) {
				t.Fatal("calls out of time order")
			}
			if c.Instance < 0 {
				if c.Kind != "" {
					t.Errorf("clean call labelled %s", c.Kind)
				}
				continue
			}
			in := d.Instances[c.Instance]
			counts[c.Instance]++
			if c.Kind != in.Kind || c.Principal != in.Principal || c.Time.Before(in.Start) || c.Time.After(in.End) {
				t.Errorf("call %+v does not match its instance %+v", c, in)
			}
		}
		for i, in := range d.Instances {
			if counts[i] != in.Calls || in.Calls == 0 {
				t.Errorf("instance %d (%s): %d calls labelled, %d recorded", i, in.Kind, counts[i], in.Calls)
			}
			p := d.Principals[indexOf(d, in.Principal)]
			if p.InEval() != (split == Eval) {
				t.Errorf("instance %d on %s, outside the split's half", i, in.Principal)
			}
		}
	}
}

func indexOf(d *Dataset, id string) int {
	for i, p := range d.Principals {
		if p.ID() == id {
			return i
		}
	}
	return -1
}

// The stolen token is the owner's token of the day, used from another client and network.
func TestStolenTokenIsTheOwners(t *testing.T) {
	d, err := Generate(small(3, Eval))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range d.Instances {
		if in.Kind != Stolen {
			continue
		}
		var thief, owner []Call
		for _, c := range d.Calls {
			if c.Principal == in.Principal && !c.Time.Before(in.Start) && !c.Time.After(in.End) {
				if c.Instance == in.ID {
					thief = append(thief, c)
				} else {
					owner = append(owner, c)
				}
			}
		}
		if len(thief) == 0 || len(owner) == 0 {
			t.Fatalf("stolen token: %d thief calls, %d owner calls while it was used", len(thief), len(owner))
		}
		if thief[0].TokenID != owner[0].TokenID || thief[0].SrcIP == owner[0].SrcIP || thief[0].UserAgent == owner[0].UserAgent {
			t.Errorf("thief %+v vs owner %+v", thief[0], owner[0])
		}
	}
}
