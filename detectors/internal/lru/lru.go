// Package lru is the per-principal state table of detectors and the scorer: a map from
// principal to state, in order of last use, so that idle principals can be found from the
// least recently used end and the table bounded by forgetting them first.
package lru

// Table maps keys to values of type T, ordered by last use. The zero Table is not usable; call
// [New]. A Table is not safe for concurrent use.
type Table[K comparable, T any] struct {
	byKey map[K]*Entry[K, T]
	// root is the sentinel of a circular list: root.next is the most recently used entry,
	// root.prev the least.
	root Entry[K, T]
}

// Entry is one key's value in a [Table]. Its address is stable until it is removed.
type Entry[K comparable, T any] struct {
	Key        K
	Value      T
	prev, next *Entry[K, T]
}

// New returns an empty table.
func New[K comparable, T any]() *Table[K, T] {
	t := &Table[K, T]{byKey: make(map[K]*Entry[K, T])}
	t.root.next, t.root.prev = &t.root, &t.root
	return t
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
	t.link(e)
	return e
}

// Touch makes e the most recently used entry.
func (t *Table[K, T]) Touch(e *Entry[K, T]) {
	if t.root.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	t.link(e)
}

// Oldest returns the least recently used entry, or nil when the table is empty.
func (t *Table[K, T]) Oldest() *Entry[K, T] {
	if t.root.prev == &t.root {
		return nil
	}
	return t.root.prev
}

// Remove deletes e from the table.
func (t *Table[K, T]) Remove(e *Entry[K, T]) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(t.byKey, e.Key)
}

func (t *Table[K, T]) link(e *Entry[K, T]) {
	e.prev, e.next = &t.root, t.root.next
	e.next.prev, t.root.next = e, e
}

// Each calls fn for every entry, the most recently used first. fn must not add, touch or remove
// entries.
func (t *Table[K, T]) Each(fn func(*Entry[K, T])) {
	for e := t.root.next; e != &t.root; e = e.next {
		fn(e)
	}
}
