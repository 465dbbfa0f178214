package mcp

import "sync"

// boundedMap is a map that holds at most a fixed number of entries, evicting the oldest insertion
// when full. The gateway keeps state a client controls (pending request ids, session metadata) in
// it, so a client that never reads its responses cannot grow the gateway's memory. Insert, Get and
// Take are O(1): insertions go into a ring, and a slot reused by a newer insertion evicts the entry
// that was written there if it has not been taken already.
type boundedMap[K comparable, V any] struct {
	mu   sync.Mutex
	m    map[K]slotted[V]
	ring []ringSlot[K]
	next int
	seq  uint64
}

type slotted[V any] struct {
	v   V
	seq uint64
}

type ringSlot[K comparable] struct {
	k   K
	seq uint64 // 0: empty
}

func newBoundedMap[K comparable, V any](capacity int) *boundedMap[K, V] {
	return &boundedMap[K, V]{m: make(map[K]slotted[V]), ring: make([]ringSlot[K], max(capacity, 1))}
}

// Put stores v under k, replacing any entry there, and reports whether an older entry was evicted
// to make room.
func (b *boundedMap[K, V]) Put(k K, v V) (evicted bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	slot := &b.ring[b.next]
	if slot.seq != 0 {
		if old, ok := b.m[slot.k]; ok && old.seq == slot.seq {
			delete(b.m, slot.k)
			evicted = true
		}
	}
	*slot = ringSlot[K]{k: k, seq: b.seq}
	b.next = (b.next + 1) % len(b.ring)
	b.m[k] = slotted[V]{v: v, seq: b.seq}
	return evicted
}

// Get returns the entry under k.
func (b *boundedMap[K, V]) Get(k K) (V, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.m[k]
	return e.v, ok
}

// Take removes and returns the entry under k.
func (b *boundedMap[K, V]) Take(k K) (V, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.m[k]
	if ok {
		delete(b.m, k)
	}
	return e.v, ok
}

// Len returns the number of entries.
func (b *boundedMap[K, V]) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
