package ueba

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/event"
)

var _ detect.Stateful = (*Detector)(nil)

// A detector restored from checkpoints judges the next events exactly as the uninterrupted one.
func TestCheckpointRoundTrip(t *testing.T) {
	a, b := newWorld(t, nil), newWorld(t, nil)
	ps := team(8)
	a.normalTraffic(ps, t0, 2*time.Hour, 5)
	b.normalTraffic(ps, t0, 2*time.Hour, 5)
	recs := a.d.Checkpoint(t0.Add(2*time.Hour), nil)
	if len(recs) != 9 { // 8 principals and their peer group
		t.Fatalf("%d profiles", len(recs))
	}
	for _, r := range recs {
		if r.Detector != Name || r.Version == 0 || len(r.State) == 0 || (r.Subject != "peer:finance-analysts" && (len(r.WeekHours) != 168 || len(r.Categories) != nCat)) {
			t.Fatalf("bad profile %+v", r)
		}
	}
	if again := a.d.Checkpoint(t0.Add(2*time.Hour+time.Second), nil); len(again) != 0 {
		t.Fatalf("clean profiles checkpointed again: %d", len(again))
	}
	c := newWorld(t, nil)
	c.seq = a.seq
	for i := len(recs) - 1; i >= 0; i-- { // any order
		if err := c.d.Restore(recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	// Continue both with ordinary traffic and attacks.
	b.seq, c.seq = a.seq, a.seq
	after := t0.Add(2 * time.Hour)
	for _, w := range []*world{b, c} {
		w.all, w.finds = nil, nil
		w.normalTraffic(ps, after, 20*time.Minute, 9)
		for i := range 30 {
			w.feed(w.ev(ps[0], after.Add(20*time.Minute+time.Duration(i)*200*time.Millisecond), "db_query"))
		}
		w.feed(w.ev(ps[1], after.Add(21*time.Minute), "payments_transfer"))
	}
	if len(b.all) == 0 || len(b.finds) == 0 {
		t.Fatal("nothing to compare")
	}
	if !reflect.DeepEqual(b.all, c.all) {
		t.Fatalf("signals differ after restore: %d vs %d", len(b.all), len(c.all))
	}
	if !reflect.DeepEqual(b.finds, c.finds) {
		t.Fatalf("findings differ after restore:%s\nvs%s", dump(b.finds), dump(c.finds))
	}
	// Newer wins: an old record does not replace what the detector learned since.
	if err := c.d.Restore(recs[0]); err != nil {
		t.Fatal(err)
	}
	// Forget drops principals of other partitions.
	c.d.Forget(func(_, sub string) bool { return sub == ps[0].sub })
	if n := c.d.Stats().Principals; n != 1 {
		t.Fatalf("%d principals after Forget", n)
	}
}

func TestRestoreRefusesBadState(t *testing.T) {
	w := newWorld(t, nil)
	w.normalTraffic(team(2), t0, 10*time.Minute, 1)
	rec := w.d.Checkpoint(t0.Add(time.Hour), nil)[0]
	bad := *rec
	bad.State = append([]byte(nil), rec.State...)
	bad.State[4] = 99
	if err := newWorld(t, nil).d.Restore(&bad); err == nil {
		t.Fatal("unknown version accepted")
	}
	bad.State = rec.State[:len(rec.State)/2]
	if err := newWorld(t, nil).d.Restore(&bad); err == nil {
		t.Fatal("truncated state accepted")
	}
}

func FuzzRestore(f *testing.F) {
	w := newWorld(f, nil)
	w.normalTraffic(team(6), t0, 30*time.Minute, 1)
	for _, r := range w.d.Checkpoint(t0.Add(time.Hour), nil) {
		f.Add(r.Subject, r.State)
	}
	f.Add("x", []byte("UEBA\x01p"))
	f.Fuzz(func(t *testing.T, sub string, state []byte) {
		d, _ := New(DefaultConfig())
		if d.Restore(&event.Profile{Detector: Name, Tenant: "acme", Subject: sub, Version: 1, State: state}) != nil {
			if d.Stats().Principals != 0 {
				t.Fatal("failed restore changed the detector")
			}
			return
		}
		// A restored state must be usable.
		var out detect.Output
		e := (&world{t: t, d: d}).ev(who{sub: sub, group: "g", client: "c", ip: "10.0.0.1"}, t0.Add(48*time.Hour), "db_query")
		d.Observe(e, &out)
		d.Expire(t0.Add(96*time.Hour), &out)
		d.Checkpoint(t0.Add(97*time.Hour), nil)
	})
}

// A checkpoint of the previous state version (2, before the ring of sensitive reads carried
// their sessions) still restores, its principal-wide read times seeding the ring, so an upgrade
// keeps every learned profile.
func TestRestoreVersion2(t *testing.T) {
	w := newWorld(t, nil)
	p := &profile{}
	p.n.PrevTool, p.n.SensTool, p.n.Slot = -1, -1, -1
	base := t0.UnixNano()
	for i := range cadenceN { // reads a minute apart, the ring's next slot at 3
		p.n.SensTimes[(3+i)%cadenceN] = base + int64(i)*60e9
	}
	p.n.SensNext = 3
	p.n.FirstSeen, p.n.LastSeen = base, base+int64(cadenceN)*60e9
	b := p.encode()
	b = b[:len(b)-sensRingN*4-1] // the version 3 ring: times (varints) and sessions
	for i := range sensRingN {
		b = b[:len(b)-varintLen(p.sens.at[i])]
	}
	b[4] = 2
	rec := &event.Profile{Detector: Name, Subject: "analyst01", Version: 1, State: b}
	if err := w.d.Restore(rec); err != nil {
		t.Fatal(err)
	}
	ent := w.d.principals.Get(key{"", "analyst01"})
	if ent == nil {
		t.Fatal("not restored")
	}
	var gaps [cadenceN]float64 // from a read one more minute later back to the oldest
	first, ok := ent.Value.sens.gaps(base+int64(cadenceN)*60e9, sessionHash("any"), gaps[:])
	if !ok || first != base {
		t.Fatalf("ring from version 2: ok %v, oldest %d, want %d", ok, first, base)
	}
	for _, g := range gaps {
		if g != 60 {
			t.Fatalf("gaps %v, want a minute each", gaps)
		}
	}
	b[4] = 1
	if err := w.d.Restore(rec); err == nil {
		t.Fatal("state version 1 restored")
	}
}

func varintLen(v int64) int { return len(binary.AppendVarint(nil, v)) }

// Profiles share one copy of each category value; the table of copies must stay bounded however
// many distinct values stream by, and hand out equal strings.
func TestInternerBounded(t *testing.T) {
	var in interner
	a, b := in.get([]byte("db_query")), in.get([]byte("db_query"))
	if a != "db_query" || unsafe.StringData(a) != unsafe.StringData(b) || in.share("db_query") != a {
		t.Fatal("the same value got two copies")
	}
	for i := range 3 * internMax {
		if s := in.get(fmt.Appendf(nil, "10.%d.0.0/24", i)); s != fmt.Sprintf("10.%d.0.0/24", i) {
			t.Fatalf("got %q", s)
		}
		if len(in.m) > internMax {
			t.Fatalf("%d values held, bound %d", len(in.m), internMax)
		}
	}
}
