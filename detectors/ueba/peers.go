package ueba

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/stat"
)

const (
	// peerSlots bounds the member levels a peer group samples (the first members to get a
	// baseline; a sample of the group, enough for percentiles).
	peerSlots = 256
	// peerValues bounds the distinct values per category a group counts users of.
	peerValues = 4096
	// peerResortNs: the sorted level samples are refreshed at most this often (event time).
	peerResortNs = int64(10e9)
)

// groupKey identifies a peer group within a tenant.
type groupKey struct{ tenant, name string }

// peerGroup aggregates the members of a peer group.
type peerGroup struct {
	key     groupKey
	members int // principals held now
	mature  int // of which confidence reached the gate
	// users counts, per category value, the members that used it (first use by each).
	users [nCat]map[string]int32
	// week is the members' time-of-week histogram, decayed when the hour turns.
	week     [weekBins]float32
	weekHour int64
	// levels holds each sampled member's level (by slot); slots are handed out once.
	levels [nLevels][]float32
	// sorted are the levels sorted, refreshed lazily, with the robust baselines over them.
	sorted   [nLevels][]float64
	base     [nLevels]baseline
	sortedAt int64
	dirty    bool

	version uint64
	ckptAt  int64
	changed bool
}

func newPeerGroup(k groupKey) *peerGroup {
	g := &peerGroup{key: k}
	for i := range g.users {
		g.users[i] = map[string]int32{}
	}
	return g
}

// used reports how many members used value name in category c.
func (g *peerGroup) used(c int, name []byte) int {
	if len(name) > nameMax {
		name = name[:nameMax]
	}
	return int(g.users[c][string(name)])
}

// addUser counts a member's first use of name in category c.
func (g *peerGroup) addUser(c int, name []byte) {
	if len(name) > nameMax {
		name = name[:nameMax]
	}
	m := g.users[c]
	if n, ok := m[string(name)]; ok {
		m[string(name)] = n + 1
	} else if len(m) < peerValues {
		m[string(name)] = 1
	}
	g.changed = true
}

// slot hands out a level slot, or -1 when the sample is full.
func (g *peerGroup) slot() int16 {
	n := len(g.levels[0])
	if n >= peerSlots {
		return -1
	}
	for i := range g.levels {
		g.levels[i] = append(g.levels[i], 0)
	}
	return int16(n)
}

func (g *peerGroup) setLevel(slot int16, kind int, v float64) {
	if slot < 0 || int(slot) >= len(g.levels[kind]) {
		return
	}
	g.levels[kind][slot] = float32(v)
	g.dirty, g.changed = true, true
}

// refresh re-sorts the level samples when they changed and the last sort is old enough.
func (g *peerGroup) refresh(now int64, scratch *[]float64) {
	if !g.dirty || now-g.sortedAt < peerResortNs && g.sortedAt != 0 {
		return
	}
	for k := range g.levels {
		s := g.sorted[k][:0]
		for _, v := range g.levels[k] {
			s = append(s, float64(v))
		}
		slices.Sort(s)
		g.sorted[k] = s
		g.base[k] = summarize(s, scratch)
	}
	g.sortedAt, g.dirty = now, false
}

// thick reports whether the group has enough members with levels to be a baseline.
func (g *peerGroup) thick(minPeers int) bool {
	return g != nil && g.mature >= minPeers && len(g.levels[0]) >= minPeers
}

// percentile ranks x among the members' levels of kind (0–100), via gonum's empirical CDF.
func (g *peerGroup) percentile(kind int, x float64) (float64, bool) {
	s := g.sorted[kind]
	if len(s) == 0 {
		return 0, false
	}
	return 100 * stat.CDF(x, stat.Empirical, s, nil), true
}

// decayWeek brings the group's week histogram to hour h.
func (g *peerGroup) decayWeek(h int64, hlSec float64) {
	if h > g.weekHour {
		if g.weekHour != 0 {
			f := decay(float64(h-g.weekHour)*3600, hlSec)
			for i := range g.week {
				g.week[i] *= f
			}
		}
		g.weekHour = h
	}
}

// usage is how much bin b (with half of its neighbours) is used relative to an average used
// bin: 0 for never, 1 for typical. Under a week of history most bins are empty, so the same hour
// on other days counts too, at a discount.
func usage(week *[weekBins]float32, b int) float64 {
	var total float64
	used := 0
	var day [24]float64
	var days [7]bool
	for i, w := range week {
		if w > 0.01 {
			total += float64(w)
			used++
			days[i/24] = true
		}
		day[i%24] += float64(w)
	}
	active := 0
	for _, a := range days {
		if a {
			active++
		}
	}
	if used == 0 {
		return math.NaN()
	}
	avg := total / float64(used)
	w := float64(week[b]) + 0.5*float64(week[(b+1)%weekBins]) + 0.5*float64(week[(b+weekBins-1)%weekBins])
	h := b % 24
	dw := day[h] + 0.5*day[(h+1)%24] + 0.5*day[(h+23)%24]
	return max(w/2/avg, 0.7*dw/2/avg/float64(max(active, 1)))
}
