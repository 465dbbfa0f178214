package ueba

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/event"
)

// State encoding: "UEBA", a version byte, a kind byte ('p' principal, 'g' peer group), then the
// fixed numeric part (encoding/binary, little endian) and the variable parts (uvarint lengths).
// A new layout is a new stateVersion; Restore reads the previous one (version 2: no ring of
// sensitive reads with their sessions, which it seeds from the principal-wide times) and
// refuses versions it does not know.
const (
	stateMagic   = "UEBA"
	stateVersion = 3
	peerPrefix   = "peer:"
)

var errState = errors.New("ueba: unreadable profile state")

// Checkpoint appends the profiles of principals (and peer groups) changed since their last
// checkpoint and due for one, and marks them clean.
func (d *Detector) Checkpoint(now time.Time, out []*event.Profile) []*event.Profile {
	nowNs := now.UnixNano()
	every := int64(d.cfg.CheckpointEvery)
	for len(d.dirty) > 0 && d.dirty[0].at <= nowNs {
		ent := heap.Pop(&d.dirty).(deadline).ent
		p := &ent.Value
		if p.gone || !p.n.Dirty {
			continue
		}
		if p.n.CkptAt != 0 && nowNs-p.n.CkptAt < every { // restored since it was queued
			heap.Push(&d.dirty, deadline{p.n.CkptAt + every, ent})
			continue
		}
		p.n.Dirty, p.n.CkptAt = false, nowNs
		p.n.Version = max(p.n.Version+1, uint64(p.n.LastSeen/1e6))
		out = append(out, d.record(ent))
	}
	for _, g := range d.groups {
		if !g.changed || (g.ckptAt != 0 && nowNs-g.ckptAt < every) {
			continue
		}
		g.changed, g.ckptAt = false, nowNs
		g.version = max(g.version+1, uint64(g.weekHour*3600e3))
		out = append(out, g.record())
	}
	return out
}

func feature(name string, b baseline, f func(float64) float64) event.ProfileFeature {
	return event.ProfileFeature{Name: name, Mean: f(float64(b.Mean)), Stddev: float64(b.Std), P50: f(float64(b.Med)), P95: f(float64(b.P95))}
}

func ident(x float64) float64 { return x }

// normalFeature summarises a decayed mean and variance; its quantiles are the normal
// approximation's.
func normalFeature(name string, mean, vr float64) event.ProfileFeature {
	sd := math.Sqrt(max(vr, 0))
	return event.ProfileFeature{Name: name, Mean: mean, Stddev: sd, P50: mean, P95: mean + 1.645*sd}
}

func (d *Detector) record(ent *entry) *event.Profile {
	p := &ent.Value
	n := &p.n
	hl := d.cfg.CategoryHalfLife.Seconds()
	sec := n.LastSeen / 1e9
	rec := &event.Profile{Schema: event.SchemaVersion, Time: time.Unix(0, n.LastSeen).UTC(), Tenant: ent.Key.tenant,
		Subject: ent.Key.sub, Detector: Name, Version: n.Version, FirstSeen: time.Unix(0, n.FirstSeen).UTC(),
		Observations: n.Calls, Confidence: d.confidence(p), Department: p.dept, PeerGroup: p.groupKey,
		Features: []event.ProfileFeature{
			feature("calls_per_min", n.BaseCalls, ident),
			normalFeature("request_bytes", n.ReqMean, n.ReqVar),
			normalFeature("response_bytes", n.RespMean, n.RespVar),
			feature("response_bytes_per_min", n.BaseRp, math.Expm1),
			{Name: "denial_ratio", Mean: n.DenyW / max(n.CallW, 1)},
			feature("sensitivity_per_min", n.BaseSens, ident),
			feature("sensitive_reads_per_hour", n.BaseHSens, ident),
			feature("distinct_resources_per_hour", n.BaseHDist, ident),
		},
		WeekHours: make([]float64, weekBins),
	}
	for i, w := range n.Week {
		rec.WeekHours[i] = float64(w)
	}
	for c := range p.cats {
		t := &p.cats[c]
		pc := event.ProfileCategory{Name: catNames[c], Values: make([]event.ProfileValue, len(t.Entries))}
		for i, e := range t.Entries {
			pc.Values[i] = event.ProfileValue{Value: e.Name, Count: float64(t.count(i, sec, hl)), FirstSeen: time.Unix(0, e.First).UTC()}
		}
		rec.Categories = append(rec.Categories, pc)
	}
	rec.State = p.encode()
	return rec
}

func (g *peerGroup) record() *event.Profile {
	rec := &event.Profile{Schema: event.SchemaVersion, Time: time.Unix(g.weekHour*3600, 0).UTC(), Tenant: g.key.tenant,
		Subject: peerPrefix + g.key.name, Detector: Name, Version: g.version, Observations: uint64(g.members),
		PeerGroup: g.key.name, WeekHours: make([]float64, weekBins),
		Features: []event.ProfileFeature{
			feature("calls_per_min", g.base[lvCalls], ident),
			feature("response_bytes_per_min", g.base[lvResp], math.Expm1),
			feature("sensitivity_per_min", g.base[lvSens], ident),
			feature("sensitive_reads_per_hour", g.base[lvSensHour], ident),
			feature("distinct_resources_per_hour", g.base[lvDistHour], ident),
		}}
	if g.members > 0 {
		rec.Confidence = float64(g.mature) / float64(g.members)
	}
	for i, w := range g.week {
		rec.WeekHours[i] = float64(w)
	}
	for c := range g.users {
		pc := event.ProfileCategory{Name: catNames[c]}
		for v, u := range g.users[c] {
			pc.Values = append(pc.Values, event.ProfileValue{Value: v, Count: float64(u)})
		}
		rec.Categories = append(rec.Categories, pc)
	}
	rec.State = g.encode()
	return rec
}

func header(kind byte) []byte { return append([]byte(stateMagic), stateVersion, kind) }

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendF32(b []byte, f float32) []byte {
	return binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
}

func (p *profile) encode() []byte {
	b := header('p')
	b, err := binary.Append(b, binary.LittleEndian, &p.n)
	if err != nil {
		panic(err) // num is fixed-size by construction
	}
	for c := range p.cats {
		t := &p.cats[c]
		b = binary.AppendUvarint(b, uint64(len(t.Entries)))
		for _, e := range t.Entries {
			b = appendString(b, e.Name)
			b = appendF32(b, e.Count)
			b = binary.AppendVarint(b, e.At)
			b = binary.AppendVarint(b, e.First)
		}
		b = appendF32(b, t.Total)
		b = binary.AppendVarint(b, t.At)
		b = binary.AppendUvarint(b, uint64(t.Distinct))
	}
	b = appendString(b, p.groupKey)
	b = appendString(b, p.dept)
	b = appendString(b, p.sensName)
	for _, id := range p.ids {
		b = appendString(b, id.String())
	}
	for _, w := range p.peak {
		var feature, detail string
		if w != nil {
			feature, detail = w.feature, w.text()
		}
		b = appendString(b, feature)
		b = appendString(b, detail)
	}
	for i := range sensRingN {
		b = binary.AppendVarint(b, p.sens.at[i])
		b = binary.LittleEndian.AppendUint32(b, p.sens.sess[i])
	}
	return append(b, p.sens.next)
}

func (g *peerGroup) encode() []byte {
	b := header('g')
	for _, w := range g.week {
		b = appendF32(b, w)
	}
	b = binary.AppendVarint(b, g.weekHour)
	b = binary.AppendUvarint(b, uint64(len(g.levels[0])))
	for k := range g.levels {
		for _, v := range g.levels[k] {
			b = appendF32(b, v)
		}
	}
	for k := range g.sorted {
		b = binary.AppendUvarint(b, uint64(len(g.sorted[k])))
		for _, v := range g.sorted[k] {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
		var err error
		if b, err = binary.Append(b, binary.LittleEndian, &g.base[k]); err != nil {
			panic(err)
		}
	}
	b = binary.AppendVarint(b, g.sortedAt)
	if g.dirty {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	for c := range g.users {
		b = binary.AppendUvarint(b, uint64(len(g.users[c])))
		for v, u := range g.users[c] {
			b = appendString(b, v)
			b = binary.AppendUvarint(b, uint64(u))
		}
	}
	return b
}

// reader decodes a state, remembering the first error instead of panicking.
type reader struct {
	b       []byte
	err     error
	version byte
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errState
	}
	r.b = nil
}

func (r *reader) uvarint(limit uint64) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str(limit int) string {
	n := r.uvarint(uint64(limit))
	if r.err != nil || uint64(len(r.b)) < n {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// take returns the next n bytes, or zeros (and fails) when fewer are left.
func (r *reader) take(n int) []byte {
	if len(r.b) < n {
		r.fail()
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.take(8)) }

func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.take(4)) }

func (r *reader) byte() byte { return r.take(1)[0] }

func (r *reader) f32() float32 {
	v := math.Float32frombits(r.u32())
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		r.fail()
	}
	return v
}

func (r *reader) fixed(v any) {
	if r.err != nil {
		return
	}
	n, err := binary.Decode(r.b, binary.LittleEndian, v)
	if err != nil {
		r.fail()
		return
	}
	r.b = r.b[n:]
}

func openState(b []byte, kind byte) (*reader, error) {
	h := header(kind)
	if len(b) < len(h) || string(b[:4]) != stateMagic || b[5] != kind {
		return nil, fmt.Errorf("%w: not a %c state", errState, kind)
	}
	if b[4] != stateVersion && b[4] != stateVersion-1 {
		return nil, fmt.Errorf("%w: state version %d, this build reads %d and %d", errState, b[4], stateVersion-1, stateVersion)
	}
	return &reader{b: b[len(h):], version: b[4]}, nil
}

func decodeProfile(b []byte) (*profile, error) {
	r, err := openState(b, 'p')
	if err != nil {
		return nil, err
	}
	p := &profile{}
	r.fixed(&p.n)
	for c := range p.cats {
		t := &p.cats[c]
		n := r.uvarint(uint64(catCap[c]))
		for range n {
			e := catEntry{Name: r.str(nameMax), Count: r.f32(), At: r.varint(), First: r.varint()}
			if r.err != nil {
				break
			}
			t.Entries = append(t.Entries, e)
		}
		t.Total, t.At, t.Distinct = r.f32(), r.varint(), uint32(r.uvarint(math.MaxUint32))
	}
	p.groupKey, p.dept, p.sensName = r.str(1<<12), r.str(1<<12), r.str(nameMax)
	for i := range p.ids {
		p.ids[i] = detect.MakeEventID(r.str(1 << 10))
	}
	for ci := range nChecks {
		p.peak[ci] = nil
		if feature, detail := r.str(1<<8), r.str(1<<12); feature != "" || detail != "" {
			p.peak[ci] = &peakWords{feature: feature, detail: detail}
		}
	}
	if r.version >= 3 {
		for i := range sensRingN {
			p.sens.at[i], p.sens.sess[i] = r.varint(), r.u32()
		}
		p.sens.next = r.byte()
	} else { // version 2: the principal-wide ring, oldest first, matching any session
		for i := range cadenceN {
			if t := p.n.SensTimes[(int(p.n.SensNext)+i)%cadenceN]; t != 0 {
				p.sens.add(t, 0)
			}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	if r.err != nil {
		return nil, r.err
	}
	n := &p.n
	ok := n.RingN <= minRing && n.RingNext < minRing && n.HourN <= hourRing && n.HourNext < hourRing &&
		n.DeniedNext < deniedRing && n.IDNext < idSample && p.sens.next < sensRingN && n.Slot >= -1 && n.Slot < peerSlots &&
		n.PrevTool >= -1 && int(n.PrevTool) < len(p.cats[catTool].Entries) &&
		n.SensTool >= -1 && int(n.SensTool) < len(p.cats[catTool].Entries) &&
		n.SecHead >= 0 && n.MinHead >= 0 && n.HourHead >= 0 && n.LastSeen >= n.FirstSeen
	for ci := range nChecks {
		ok = ok && !math.IsNaN(float64(n.PeakV[ci])) && !math.IsNaN(float64(n.LastV[ci]))
	}
	if !ok {
		return nil, fmt.Errorf("%w: inconsistent principal state", errState)
	}
	return p, nil
}

func decodeGroup(b []byte, g *peerGroup) error {
	r, err := openState(b, 'g')
	if err != nil {
		return err
	}
	for i := range g.week {
		g.week[i] = r.f32()
	}
	g.weekHour = r.varint()
	n := r.uvarint(peerSlots)
	for k := range g.levels {
		g.levels[k] = make([]float32, 0, n)
		for range n {
			g.levels[k] = append(g.levels[k], r.f32())
		}
	}
	for k := range g.sorted {
		m := r.uvarint(peerSlots)
		g.sorted[k] = make([]float64, 0, m)
		for range m {
			g.sorted[k] = append(g.sorted[k], math.Float64frombits(r.u64()))
		}
		r.fixed(&g.base[k])
	}
	g.sortedAt = r.varint()
	if len(r.b) < 1 {
		r.fail()
	} else {
		g.dirty = r.b[0] == 1
		r.b = r.b[1:]
	}
	for c := range g.users {
		m := r.uvarint(peerValues)
		g.users[c] = make(map[string]int32, m)
		for range m {
			v := r.str(nameMax)
			g.users[c][v] = int32(r.uvarint(math.MaxInt32))
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	return r.err
}

// Restore resumes a principal or a peer group from a record Checkpoint wrote, unless what the
// detector holds is newer. An unreadable record is an error and changes nothing.
func (d *Detector) Restore(rec *event.Profile) error {
	if rec.Detector != Name {
		return fmt.Errorf("ueba: profile of detector %q", rec.Detector)
	}
	if name, ok := strings.CutPrefix(rec.Subject, peerPrefix); ok {
		g := newPeerGroup(groupKey{rec.Tenant, name})
		if err := decodeGroup(rec.State, g); err != nil {
			return err
		}
		g.version = rec.Version
		old := d.groups[g.key]
		switch {
		case old != nil && old.version >= rec.Version:
			return nil
		case old != nil:
			g.members, g.mature = old.members, old.mature
			*old = *g
		case len(d.groups) < d.cfg.MaxPeerGroups:
			d.groups[g.key] = g
		}
		return nil
	}
	p, err := decodeProfile(rec.State)
	if err != nil {
		return err
	}
	k := key{rec.Tenant, rec.Subject}
	if old := d.principals.Get(k); old != nil {
		if old.Value.n.LastSeen > p.n.LastSeen || old.Value.n.Version >= p.n.Version {
			return nil
		}
		d.remove(old)
	}
	for c := range p.cats {
		for i := range p.cats[c].Entries {
			e := &p.cats[c].Entries[i]
			e.Name = d.names.share(e.Name)
		}
	}
	ent := d.track(k, p.n.FirstSeen)
	slot := p.n.Slot
	ent.Value = *p
	ent.Value.n.Dirty = false
	if ent.Value.groupKey != "" {
		d.enter(&ent.Value, ent.Key.tenant)
		ent.Value.n.Slot = slot
		if ent.Value.group == nil {
			ent.Value.n.Slot = -1
		}
	}
	d.schedule(ent)
	return nil
}

// Forget drops the principals keep refuses (their partitions moved), without retiring their
// signals: the new owner resumes them.
func (d *Detector) Forget(keep func(tenant, subject string) bool) {
	for range d.principals.Len() {
		ent := d.principals.Oldest()
		if keep(ent.Key.tenant, ent.Key.sub) {
			d.principals.Touch(ent) // rotate: after Len steps the order is as before
		} else {
			d.remove(ent)
		}
	}
	for k, g := range d.groups {
		if g.members <= 0 && !keep(k.tenant, peerPrefix+k.name) {
			delete(d.groups, k)
		}
	}
}
