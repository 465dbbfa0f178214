package lru

import (
	"reflect"
	"testing"
)

func keys(t *Table[string, int]) []string {
	var out []string
	for e := t.Oldest(); e != nil; {
		out = append(out, e.Key)
		if e.prev == &t.root {
			break
		}
		e = e.prev
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
