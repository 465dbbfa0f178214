package ueba

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/stat"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
)

// Sizes of the bounded parts of a profile. They fix the memory per principal (see
// TestMemoryPerPrincipal) and the state encoding: changing one changes stateVersion.
const (
	secRing    = 64  // per-second buckets: the 10 s and 60 s windows
	minRing    = 256 // active minutes kept for the robust per-minute baseline
	hourRing   = 64  // active hours kept for the drift baseline
	weekBins   = 168 // hourly bins from Monday 00:00 UTC
	maxTools   = 16  // tools in the profile, and the side of the transition matrix
	nChecks    = 11
	idSample   = 8  // latest event ids kept for evidence
	hourSet    = 64 // distinct resources counted per hour (beyond it: at least 64)
	deniedRing = 16 // recent denials, for distinct tools denied in a window
	recentUses = 4  // recent distinct clients, user agents, networks
	nameMax    = 64 // bytes kept of a category value
)

// Categories of a profile, in [event.Profile.Categories] order.
const (
	catTool = iota
	catServer
	catResource
	catPrompt
	catClass
	catClient
	catAgent
	catNetwork
	catProtocol
	nCat
)

var catNames = [nCat]string{"tool", "server", "resource", "prompt", "data_class", "client", "user_agent", "network", "protocol_version"}

// catCap bounds each category's values; tools also index the transition matrix.
var catCap = [nCat]int{maxTools, 8, 16, 8, 8, 4, 4, 8, 4}

// cadenceN sensitive reads make one cadence: enough gaps for a coefficient of variation that
// tells a machine's steady pace from a person's bursts and pauses.
const cadenceN = 10

// catWeight is how much a first use of a value in the category says (new_value check): what a
// principal touches weighs more than how it connects.
var catWeight = [nCat]float64{1, 0.9, 0.8, 0.7, 0.9, 0.5, 0.4, 0.5, 0.4}

// level kinds sampled from peer members, so a principal's value gets a peer baseline and rank.
const (
	lvCalls    = iota // median calls per active minute
	lvResp            // median response bytes per active minute
	lvSens            // median sensitivity mass per active minute
	lvSensHour        // median sensitive reads per active hour
	lvDistHour        // median distinct resources per active hour
	nLevels
)

// baseline is a robust summary of one ring: median, MAD and p95 (gonum).
type baseline struct {
	Med, MAD, P95, Mean, Std float32
	N                        uint16
}

// recentUse is a client, user agent or network seen recently (by hash).
type recentUse struct {
	Hash uint64
	At   int64
}

// num is the fixed-size numeric part of a profile. Its fields are exported only so the state
// encoding can write it with encoding/binary in one piece.
type num struct {
	FirstSeen, LastSeen int64 // event time, ns
	Calls, Events       uint64

	// Per-second buckets of the last minute; SecHead is the Unix second of the newest.
	SecHead  int64
	SecCalls [secRing]uint16
	SecSens  [secRing]float32
	SecResp  [secRing]float32

	// The open minute, and the ring of closed active minutes behind the baselines.
	MinHead                     int64
	MinCalls                    uint32
	MinSens, MinResp            float32
	RingN, RingNext             uint16
	RingPushes                  uint32
	RingCalls                   [minRing]uint16
	RingSens, RingResp          [minRing]float32
	BaseCalls, BaseSens, BaseRp baseline

	// Call rate EWMAs with 10 s, 1 min, 1 h half-lives (calls/s).
	EWMA   [3]float64
	EWMAAt int64

	// Time-of-week histogram, decayed when the hour turns.
	Week     [weekBins]float32
	WeekHour int64

	// Request and response bytes: decayed mean and variance.
	ReqMean, ReqVar, ReqW    float64
	RespMean, RespVar, RespW float64

	// Denials: decayed counts of calls and denials, the current run, recent denied tools.
	CallW, DenyW float64
	DenyRun      uint32
	DeniedHash   [deniedRing]uint64
	DeniedAt     [deniedRing]int64
	DeniedNext   uint8

	// Egress calls and those carrying personal data (decayed).
	EgressW, EgressPIIW float64
	// EgressPIIMean is the usual number of personal values in an egress call that carries any.
	EgressPIIMean float32

	// The last sensitive read, for the exfiltration check.
	SensAt   int64
	SensVal  float32
	SensTool int8 // index in the tool table, -1 when none

	// Tool transitions: Trans[a][b] counts calls of tool b right after tool a.
	Trans    [maxTools][maxTools]float32
	PrevTool int8

	// Hourly aggregates for drift: the open hour and the ring of closed active hours.
	HourHead             int64
	HourSens, HourDist   uint16
	HourSet              [hourSet]uint32
	HourN, HourNext      uint8
	HourSensR, HourDistR [hourRing]uint16
	BaseHSens, BaseHDist baseline

	Recent [3][recentUses]recentUse // client, user agent, network

	// Per check: the decaying peak, the last value emitted, the last finding.
	PeakV, LastV [nChecks]float32
	// Times of the last sensitive reads of state version 2, which a version 2 checkpoint
	// restores into profile.sens; since version 3 unused. CadenceCV is the principal's usual
	// spread of the gaps between its sensitive reads (coefficient of variation, decayed mean),
	// for the cadence of a low-and-slow read.
	SensTimes [cadenceN]int64
	// SensRun counts the sensitive reads in a row, each within ExfilWindow of the one before.
	SensRun   uint16
	SensNext  uint8
	CadenceCV float32
	CadenceN  uint16
	// The peak's observed value and baseline, which a decaying signal still shows.
	PeakObs, PeakBase [nChecks]float32
	PeakT             [nChecks]int64
	FindingAt         [nChecks]int64
	HasFinding        uint16 // bit per check
	Ever              uint16 // bit per check: signalled once, so retire it when forgetting

	Version uint64 // of the last checkpoint or restore
	CkptAt  int64
	Dirty   bool
	Slot    int16 // sample slot in the peer group, -1 when none
	IDNext  uint8
	IDAt    [idSample]int64
	Mature  bool // confidence reached the gate once: its uses speak for the peer group
}

// catEntry is one value of a category with its decayed count.
type catEntry struct {
	Name  string
	Count float32
	At    int64 // Unix second Count was decayed to
	First int64 // ns
}

type catTable struct {
	Entries []catEntry
	Total   float32
	At      int64
	// Distinct counts values ever added (evicted ones too): the Good–Turing novelty estimate.
	Distinct uint32
}

// profile is one principal's behaviour profile.
type profile struct {
	n     num
	cats  [nCat]catTable
	group *peerGroup
	// groupKey and dept are what the last event said; peer and department of the profile.
	groupKey, dept string
	ids            [idSample]detect.EventID
	sensName       string // the tool or resource of the last sensitive read
	// The evidence of each check's peak, which its signal shows while it decays; nil for a
	// check that never peaked.
	peak [nChecks]*peakWords
	// sens holds the last sensitive reads with their sessions, for the cadence check.
	sens   sensRing
	gone   bool // removed from the table; a stale heap entry
	inHeap bool
}

func decay(dtSec float64, halfLifeSec float64) float32 {
	if dtSec <= 0 {
		return 1
	}
	return float32(math.Exp2(-dtSec / halfLifeSec))
}

// find returns the index of name in t, or -1.
func (t *catTable) find(name []byte) int {
	for i := range t.Entries {
		if t.Entries[i].Name == string(name) {
			return i
		}
	}
	return -1
}

// decayTotal brings Total to Unix second sec.
func (t *catTable) decayTotal(sec int64, hl float64) {
	if sec > t.At {
		t.Total *= decay(float64(sec-t.At), hl)
		t.At = sec
	}
}

// count returns entry i's count decayed to sec.
func (t *catTable) count(i int, sec int64, hl float64) float32 {
	e := &t.Entries[i]
	return e.Count * decay(float64(sec-e.At), hl)
}

// add counts one use of name at time ns, evicting the least used value when full. It returns
// the entry's index and, when a value was evicted to make room, its old index (else -1). A new
// value's name is the copy names hands out. at is name's index in t ([catTable.find]), which the
// caller has looked up.
func (t *catTable) add(at int, name []byte, ns int64, hl float64, capacity int, names *interner) (idx int, reused bool) {
	sec := ns / 1e9
	t.decayTotal(sec, hl)
	t.Total++
	if i := at; i >= 0 {
		e := &t.Entries[i]
		e.Count = e.Count*decay(float64(sec-e.At), hl) + 1
		e.At = max(e.At, sec)
		return i, false
	}
	t.Distinct++
	if len(name) > nameMax {
		name = name[:nameMax]
	}
	ne := catEntry{Name: names.get(name), Count: 1, At: sec, First: ns}
	if len(t.Entries) < capacity {
		t.Entries = append(t.Entries, ne)
		return len(t.Entries) - 1, false
	}
	low, lowC := 0, float32(math.MaxFloat32)
	for i := range t.Entries {
		if c := t.count(i, sec, hl); c < lowC {
			low, lowC = i, c
		}
	}
	t.Entries[low] = ne
	return low, true
}

// internMax bounds the values an [interner] holds.
const internMax = 1 << 16

// interner hands out one shared copy of each category value: principals mostly use the same few
// tools, servers, clients and classes, so their profiles hold one string per value between them
// rather than one each (about 14 per principal), which the garbage collector would mark on
// every cycle. It is bounded: when full it starts over, and profiles keep the copies they have.
type interner struct{ m map[string]string }

// get returns the shared copy of b.
func (in *interner) get(b []byte) string {
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	return in.add(string(b))
}

// share returns the shared copy of s (s itself when it is the first).
func (in *interner) share(s string) string {
	if c, ok := in.m[s]; ok {
		return c
	}
	return in.add(s)
}

func (in *interner) add(s string) string {
	if in.m == nil || len(in.m) >= internMax {
		in.m = make(map[string]string)
	}
	in.m[s] = s
	return s
}

// summarize computes the robust baseline of xs (scratch is reused; xs is not changed).
func summarize(xs []float64, scratch *[]float64) baseline {
	if len(xs) == 0 {
		return baseline{}
	}
	s := append((*scratch)[:0], xs...)
	slices.Sort(s)
	med := stat.Quantile(0.5, stat.Empirical, s, nil)
	p95 := stat.Quantile(0.95, stat.Empirical, s, nil)
	mean, std := stat.MeanStdDev(s, nil)
	if len(s) < 2 {
		std = 0
	}
	for i, x := range s {
		s[i] = math.Abs(x - med)
	}
	slices.Sort(s)
	mad := stat.Quantile(0.5, stat.Empirical, s, nil)
	*scratch = s
	return baseline{Med: float32(med), MAD: float32(mad), P95: float32(p95), Mean: float32(mean), Std: float32(std), N: uint16(len(xs))}
}

// robustZ is how many robust standard deviations x lies above b's median, with the scale
// floored by floor (a Poisson-like floor for counts) so a constant history does not make every
// change infinitely surprising.
func robustZ(x float64, med, mad, floor float64) float64 {
	scale := max(1.4826*mad, floor)
	if scale <= 0 {
		scale = 1
	}
	return (x - med) / scale
}

// grade maps a surprise (a z-score or similar) smoothly onto 0–100: 0 up to z0, then rising
// as 1−e^(−(z−z0)/span), so ordering is kept and nothing saturates abruptly.
func grade(z, z0, span float64) float64 {
	if math.IsNaN(z) || z <= z0 {
		return 0
	}
	return 100 * (1 - math.Exp(-(z-z0)/span))
}

// fnv hashes b (FNV-1a): deterministic across processes, so restored sets still match.
func fnv(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// sensRingN sensitive reads are kept for the cadence: enough for a ten-gap cadence of one
// session while another session of the principal reads in between.
const sensRingN = 16

// sensRing is a ring of the last sensitive reads: when, and in which MCP session (a hash; 0
// for none, which matches any session). A cadence is judged over one session's reads, so a
// script paging slowly in its own session stands apart from its owner's interleaved reads.
type sensRing struct {
	at   [sensRingN]int64
	sess [sensRingN]uint32
	next uint8
}

func (r *sensRing) add(t int64, sess uint32) {
	r.at[r.next], r.sess[r.next] = t, sess
	r.next = (r.next + 1) % sensRingN
}

// gaps fills dst (its length is how many) with the gaps in seconds between now and the reads
// of session sess before it, newest first, and returns the time of the oldest read used; ok is
// false when the ring holds fewer such reads.
func (r *sensRing) gaps(now int64, sess uint32, dst []float64) (first int64, ok bool) {
	prev, k := now, 0
	for i := range sensRingN {
		if k == len(dst) {
			break
		}
		j := (int(r.next) + sensRingN - 1 - i) % sensRingN
		t, s := r.at[j], r.sess[j]
		if t == 0 || t > prev {
			return 0, false
		}
		if sess != 0 && s != 0 && s != sess {
			continue
		}
		dst[k] = float64(prev-t) / 1e9
		prev, k = t, k+1
	}
	return prev, k == len(dst)
}

// sessionHash is the ring's tag of an MCP session id: 0 for none, never 0 for one.
func sessionHash(id string) uint32 {
	if id == "" {
		return 0
	}
	h := fnv([]byte(id))
	return uint32(h) ^ uint32(h>>32) | 1
}
