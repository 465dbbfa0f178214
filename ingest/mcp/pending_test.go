package mcp

import "testing"

// The map must never exceed its capacity whatever the client does, and must not forget an entry
// that is still within capacity.
func TestBoundedMap(t *testing.T) {
	m := newBoundedMap[int, string](3)
	for i := range 3 {
		if m.Put(i, "v") {
			t.Fatalf("eviction below capacity at %d", i)
		}
	}
	if _, ok := m.Take(1); !ok {
		t.Fatal("entry lost")
	}
	// Slot of 0 is reused: 0 is evicted. Slot of 1 was taken: nothing to evict.
	if !m.Put(3, "v") {
		t.Fatal("oldest entry not evicted when full")
	}
	if m.Put(4, "v") {
		t.Fatal("reusing the slot of a taken entry evicted something")
	}
	if _, ok := m.Get(0); ok {
		t.Fatal("evicted entry still present")
	}
	for _, k := range []int{2, 3, 4} {
		if _, ok := m.Get(k); !ok {
			t.Fatalf("entry %d lost", k)
		}
	}
	// Replacing a key keeps one entry, and the stale slot does not evict the new value.
	m.Put(2, "new")
	m.Put(5, "v")
	m.Put(6, "v")
	if v, ok := m.Get(2); !ok || v != "new" {
		t.Fatalf("replaced entry: %q %v", v, ok)
	}
	for i := range 1000 {
		m.Put(100+i, "v")
		if m.Len() > 3 {
			t.Fatalf("len %d over capacity", m.Len())
		}
	}
}
