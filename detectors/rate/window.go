package rate

// window is one principal's event times (Unix nanoseconds) in ascending order, in a ring buffer
// that grows by doubling up to a fixed cap. At the cap the oldest entry is dropped to make room,
// and the window remembers that it is saturated until the dropped times age out.
type window struct {
	buf  []int64
	head int // index of the oldest entry
	n    int
	cap  int
	// dropped is the newest time dropped for capacity rather than age; while it is inside the
	// window the count is a lower bound.
	dropped int64
	hasDrop bool
}

func (w *window) len() int { return w.n }

func (w *window) at(i int) int64 { return w.buf[(w.head+i)%len(w.buf)] }

func (w *window) set(i int, t int64) { w.buf[(w.head+i)%len(w.buf)] = t }

// evict drops entries at or before cut: the window is (cut, newest].
func (w *window) evict(cut int64) {
	for w.n > 0 && w.buf[w.head] <= cut {
		w.head = (w.head + 1) % len(w.buf)
		w.n--
	}
	if w.hasDrop && w.dropped <= cut {
		w.hasDrop = false
	}
	if w.n == 0 {
		w.head = 0
	}
}

// saturated reports whether entries still inside the window were dropped for capacity.
func (w *window) saturated() bool { return w.hasDrop }

// insert adds t in order. Times arrive almost always in order, so the insertion scan from the
// newest end is O(1) in the common case.
func (w *window) insert(t int64) {
	if w.n == w.cap {
		old := w.buf[w.head]
		if !w.hasDrop || old > w.dropped {
			w.dropped = old
		}
		w.hasDrop = true
		w.head = (w.head + 1) % len(w.buf)
		w.n--
	}
	if w.n == len(w.buf) {
		w.grow()
	}
	i := w.n
	for i > 0 && w.at(i-1) > t {
		w.set(i, w.at(i-1))
		i--
	}
	w.set(i, t)
	w.n++
}

func (w *window) grow() {
	size := min(max(2*len(w.buf), 8), w.cap)
	buf := make([]int64, size)
	for i := range w.n {
		buf[i] = w.at(i)
	}
	w.buf, w.head = buf, 0
}
