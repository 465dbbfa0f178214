// Package lru is the per-principal state table of detectors and the scorer: a map from
// principal to state, in order of last use, so that idle principals can be found from the
// least recently used end and the table bounded by forgetting them first.
package lru

// Table maps keys to values of type T, ordered by last use. The zero Table is not usable; call
// [New]. A Table is not safe for concurrent use.
type Table[K comparable, T any] struct {
	byKey map[K]*Entry[K, T]
	// The order of use is a circular doubly linked list over links, a dense array indexed by
	// [Entry.at]; links[0] is the sentinel: its next is the most recently used entry, its prev
	// the least. Touching an entry rewires its neighbours here, in an array small enough to stay
	// in the cache, rather than in the neighbours' entries, which lie anywhere in a large heap.
	links []link[K, T]
	free  []int32 // unused indices of links
}

type link[K comparable, T any] struct {
	prev, next int32
	e          *Entry[K, T]
}

// Entry is one key's value in a [Table]. Its address is stable until it is removed.
type Entry[K comparable, T any] struct {
	Key   K
	Value T
	at    int32 // index in the table's links, 0 once removed
}

// New returns an empty table.
func New[K comparable, T any]() *Table[K, T] {
	return &Table[K, T]{byKey: make(map[K]*Entry[K, T]), links: make([]link[K, T], 1)}
}

// Len is the number of entries.
func (t *Table[K, T]) Len() int { return len(t.byKey) }

// Get returns key's entry, or nil. It does not count as a use.
func (t *Table[K, T]) Get(key K) *Entry[K, T] { return t.byKey[key] }

// Add inserts a zero value under key as the most recently used entry and returns it. The key must
// not be present.
func (t *Table[K, T]) Add(key K) *Entry[K, T] {
	e := &Entry[K, T]{Key: key}
	t.byKey[key] = e
	if n := len(t.free); n > 0 {
		e.at = t.free[n-1]
		t.free = t.free[:n-1]
		t.links[e.at].e = e
	} else {
		e.at = int32(len(t.links))
		t.links = append(t.links, link[K, T]{e: e})
	}
	t.link(e.at)
	return e
}

// Touch makes e the most recently used entry.
func (t *Table[K, T]) Touch(e *Entry[K, T]) {
	if e.at == 0 {
		panic("lru: touch of a removed entry")
	}
	if t.links[0].next == e.at {
		return
	}
	t.unlink(e.at)
	t.link(e.at)
}

// Oldest returns the least recently used entry, or nil when the table is empty.
func (t *Table[K, T]) Oldest() *Entry[K, T] {
	return t.links[t.links[0].prev].e // the sentinel's e is nil
}

// Remove deletes e from the table.
func (t *Table[K, T]) Remove(e *Entry[K, T]) {
	if e.at == 0 {
		panic("lru: removal of a removed entry")
	}
	t.unlink(e.at)
	t.links[e.at] = link[K, T]{}
	t.free = append(t.free, e.at)
	e.at = 0
	delete(t.byKey, e.Key)
}

// link makes i the most recently used.
func (t *Table[K, T]) link(i int32) {
	l, root := &t.links[i], &t.links[0]
	l.prev, l.next = 0, root.next
	t.links[root.next].prev = i
	root.next = i
}

func (t *Table[K, T]) unlink(i int32) {
	l := &t.links[i]
	t.links[l.prev].next, t.links[l.next].prev = l.next, l.prev
}

// Each calls fn for every entry, the most recently used first. fn must not add, touch or remove
// entries.
func (t *Table[K, T]) Each(fn func(*Entry[K, T])) {
	for i := t.links[0].next; i != 0; i = t.links[i].next {
		fn(t.links[i].e)
	}
}
