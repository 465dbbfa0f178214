package notify

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// memo remembers deliveries by key, for a window and up to a size (least recently delivered
// forgotten first), and lets one caller at a time deliver a key: a second caller waits for the
// first and then either learns it was delivered or delivers itself.
type memo struct {
	size   int
	window time.Duration

	mu       sync.Mutex
	done     map[string]*list.Element // of entry, most recent at the front
	order    *list.List
	inflight map[string]chan struct{}
}

type entry struct {
	key string
	at  time.Time
}

func newMemo(size int, window time.Duration) *memo {
	return &memo{size: size, window: window, done: map[string]*list.Element{}, order: list.New(),
		inflight: map[string]chan struct{}{}}
}

// acquire claims key at now. It reports dup when key was delivered within the window. Otherwise
// the caller delivers and must call release(delivered) once, which wakes any waiter. It waits
// while another caller holds key, and returns ctx's error if ctx ends first.
func (m *memo) acquire(ctx context.Context, key string, now time.Time) (release func(delivered bool), dup bool, err error) {
	if m.size <= 0 {
		return func(bool) {}, false, nil
	}
	for {
		m.mu.Lock()
		if el, ok := m.done[key]; ok {
			if now.Sub(el.Value.(*entry).at) < m.window {
				m.mu.Unlock()
				return nil, true, nil
			}
			m.order.Remove(el)
			delete(m.done, key)
		}
		wait, busy := m.inflight[key]
		if !busy {
			ch := make(chan struct{})
			m.inflight[key] = ch
			m.mu.Unlock()
			return func(delivered bool) { m.release(key, ch, delivered, now) }, false, nil
		}
		m.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, false, context.Cause(ctx)
		}
	}
}

func (m *memo) release(key string, ch chan struct{}, delivered bool, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.inflight, key)
	close(ch)
	if !delivered {
		return
	}
	m.done[key] = m.order.PushFront(&entry{key: key, at: at})
	for m.order.Len() > m.size {
		old := m.order.Back()
		m.order.Remove(old)
		delete(m.done, old.Value.(*entry).key)
	}
}
