package lru

import (
	"fmt"
	"reflect"
	"testing"
)

// keys lists the keys oldest first, walking the order backwards (Each walks it forwards).
func keys(t *Table[string, int]) []string {
	var out []string
	for i := t.links[0].prev; i != 0; i = t.links[i].prev {
		out = append(out, t.links[i].e.Key)
	}
	var fwd []string
	t.Each(func(e *Entry[string, int]) { fwd = append([]string{e.Key}, fwd...) })
	if !reflect.DeepEqual(out, fwd) {
		panic(fmt.Sprintf("order %v backwards, %v forwards", out, fwd))
	}
	return out
}

// The order of use decides who is forgotten first; a wrong order forgets an active principal.
func TestTableOrder(t *testing.T) {
	tb := New[string, int]()
	if tb.Oldest() != nil || tb.Len() != 0 {
		t.Fatal("new table not empty")
	}
	a, b := tb.Add("a"), tb.Add("b")
	tb.Add("c")
	a.Value = 1
	tb.Touch(a)
	tb.Touch(a) // touching the most recent is a no-op
	if got := keys(tb); !reflect.DeepEqual(got, []string{"b", "c", "a"}) {
		t.Fatalf("order %v, want b c a (oldest first)", got)
	}
	tb.Remove(b)
	if tb.Get("b") != nil || tb.Len() != 2 || tb.Oldest().Key != "c" {
		t.Fatalf("after removing b: oldest %v len %d", tb.Oldest().Key, tb.Len())
	}
	if tb.Get("a").Value != 1 {
		t.Fatal("value lost")
	}
	tb.Remove(tb.Oldest())
	tb.Remove(tb.Oldest())
	if tb.Oldest() != nil || tb.Len() != 0 {
		t.Fatal("table not empty after removing everything")
	}
}

// Removed entries' places are reused, and the order stays exact through adds, touches and
// removals in any mix: it decides which principal is forgotten first.
func TestTableReuse(t *testing.T) {
	tb := New[string, int]()
	var want []string // oldest first
	touch := func(k string) {
		for i, x := range want {
			if x == k {
				want = append(want[:i:i], want[i+1:]...)
				break
			}
		}
		want = append(want, k)
	}
	for i := range 200 {
		k := fmt.Sprint(i % 37)
		switch e := tb.Get(k); {
		case e == nil:
			tb.Add(k)
			touch(k)
		case i%5 == 0:
			tb.Remove(e)
			for j, x := range want {
				if x == k {
					want = append(want[:j:j], want[j+1:]...)
					break
				}
			}
		default:
			tb.Touch(e)
			touch(k)
		}
		if got := keys(tb); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("step %d: order %v, want %v", i, got, want)
		}
	}
	if len(tb.links) > 38 {
		t.Errorf("%d links for at most 37 entries: removed places not reused", len(tb.links))
	}
}
