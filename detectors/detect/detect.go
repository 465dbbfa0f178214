// Package detect is the contract between detectors, the scorer and the detect stage: the
// [Detector] interface, the [Signal]s a detector emits, the score [Component]s they feed, and the
// deterministic [FindingID] every finding carries.
//
// It imports only the event model, so detectors (package rate, and the UEBA and Sigma detectors
// to come) and the scorer (package score) can all import it; package detectors, which wires them
// into the stage, re-exports the main names.
package detect

import (
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/mcpwatch/mcpwatch/event"
)

// Detector turns normalized events into signals and findings. It works on event time only,
// never the wall clock, so replaying a topic yields the same signals and findings with the same
// ids. Its state is partition-local: events are keyed by principal, so one detector instance sees
// every event of the principals it judges.
//
// A Detector is driven by one goroutine and need not be safe for concurrent use.
type Detector interface {
	// Info names the detector and the checks it signals with. It must not change.
	Info() Info
	// Observe judges one event and appends what it concluded to out. It must not keep e or
	// anything e points to past the call, strings included: the stage decodes every record into
	// one reused event whose strings refer to the record's bytes ([event.DecodeReused]), so a
	// string kept in a detector's state must be a copy ([strings.Clone]). The scorer keeps
	// signals, so their strings must not refer to e either; findings may, as the stage encodes
	// them before the next event.
	Observe(e *event.Event, out *Output)
	// Expire forgets the principals idle at event time now (the newest event time seen, which
	// only moves forward) and appends, for each principal it ever signalled, a [Signal.Expired]
	// signal so the scorer forgets it too. A principal forgotten to bound memory rather than for
	// idleness is not retired: the scorer keeps its last value, the safer error.
	//
	// The stage calls Expire whenever the watermark moves, so it must be cheap when nothing is
	// idle (looking at the least recently seen principal only, for example).
	Expire(now time.Time, out *Output)
	// Stats counts what the detector did since it was created; the stage exports it as metrics.
	Stats() Stats
}

// Info describes a [Detector].
type Info struct {
	// Name is the detector's name in findings ([event.Finding.Detector]), signals, metrics and
	// score components. It must not be the name of a [Component].
	Name string
	// Checks are the kinds of signal the detector emits, each feeding one score component. The
	// scorer keeps the latest signal per principal and check, and weighs only the components
	// some enabled detector's check feeds.
	Checks []Check
}

// Check is one kind of signal a detector emits: its name ([Signal.Check]) and the component it
// feeds. A detector with a single check names it after itself.
type Check struct {
	Name      string
	Component Component
}

// Output collects what a detector concluded. The stage resets it before each call.
type Output struct {
	// Signals are the detector's current values for principals. Their slices are handed over:
	// the detector must not change them afterwards.
	Signals []Signal
	// Findings are conclusions worth a responder's attention, keyed on the findings topic by
	// their tenant and principal.
	Findings []*event.Finding
}

// Reset empties o, keeping its capacity.
func (o *Output) Reset() {
	clear(o.Signals)
	clear(o.Findings)
	o.Signals, o.Findings = o.Signals[:0], o.Findings[:0]
}

// Component is a term of the threat score. The source document's formula is
// 0.3·(API call frequency) + 0.4·(data sensitivity) + 0.3·(user risk profile).
type Component string

const (
	// Frequency is how unusual the principal's call rate is (API call frequency).
	Frequency Component = "frequency"
	// Sensitivity is how sensitive the data the principal touches is (data sensitivity).
	Sensitivity Component = "sensitivity"
	// Risk is how far the principal strays from its own profile and its peers (user risk
	// profile).
	Risk Component = "risk"
)

// Components returns every component, in the formula's order.
func Components() []Component { return []Component{Frequency, Sensitivity, Risk} }

// Valid reports whether c is one of [Components].
func (c Component) Valid() bool { return c == Frequency || c == Sensitivity || c == Risk }

// Signal is a detector's current value for one principal on one score component, with the
// evidence behind it. The scorer keeps the latest signal per detector and principal; a new one
// replaces the last.
type Signal struct {
	Detector string // the emitting detector's [Info.Name]
	Tenant   string
	// Subject is the principal's [event.PrincipalID], as in [event.Score.Subject].
	Subject string
	// Check is the detector's check that emitted it: one of [Info.Checks].
	Check     string
	Time      time.Time // the event time the value holds at
	Component Component // the check's component
	Value     float64   // 0–100
	// Expired says the detector has forgotten the principal: the scorer drops this detector's
	// value. Value is 0 and Time is when the detector's evidence ran out (for a window, when it
	// emptied).
	Expired  bool
	Evidence Evidence
}

// Evidence says why a signal has its value: which feature was measured, what it was, what is
// normal for it, over which window of event time, and a sample of the events behind it.
type Evidence struct {
	Feature  string  // e.g. "rate_per_s"
	Observed float64 // the feature's value
	Baseline float64 // the feature's normal value
	// BaselineSource says whose history Baseline comes from: "self", "peers" (the principal's
	// own history is too thin to trust) or "rule" (a fixed threshold).
	BaselineSource string
	// PeerPercentile ranks Observed among the principal's peer group (0–100) when HasPeer.
	PeerPercentile float64
	HasPeer        bool
	// Detail says it in words: "first call of payments/transfer; used by 0 of 12 peers". A
	// detector whose evidence changes with every event may leave it empty and set Words, so
	// that only the evidence that is published is put into words: read it with [Evidence.Text].
	Detail string
	Words  Words
	// WindowStart and WindowEnd bound the events measured: (WindowStart, WindowEnd].
	WindowStart, WindowEnd time.Time
	// EventIDs are a sample of the events measured, oldest first, held compactly: the scorer
	// renders them ([EventIDStrings]) only for what it publishes. Detectors may leave it empty
	// when Value is 0.
	EventIDs []EventID
}

// Words are what an [Evidence]'s sentence is made of beyond the evidence's own fields, and the
// function that says it. Say is a plain function, not a closure, so carrying Words allocates
// nothing; like a signal's other strings, A and B must not refer to the event judged.
type Words struct {
	Say  func(ev Evidence) string // by value: the evidence does not escape to the heap
	A, B string
	X, Y float64
}

// Text is the evidence in words: Detail, else what Words.Say makes of it, else "".
func (ev Evidence) Text() string {
	if ev.Detail == "" && ev.Words.Say != nil {
		return ev.Words.Say(ev)
	}
	return ev.Detail
}

// Stateful is a [Detector] whose per-principal state (its behaviour profiles) outlives the
// process: the stage publishes the profiles it checkpoints on the compacted profiles topic, keyed
// like the events, and restores them from the same partitions when it is assigned them.
type Stateful interface {
	Detector
	// Checkpoint appends the profiles of principals changed since their last checkpoint that are
	// due for one at event time now (the detector bounds how often), and marks them clean.
	Checkpoint(now time.Time, out []*event.Profile) []*event.Profile
	// Restore resumes a principal from a profile Checkpoint wrote, replacing what the detector
	// holds for it unless that is newer. A profile it cannot read is an error, and nothing changes.
	Restore(p *event.Profile) error
	// Forget drops every principal for which keep returns false: their partitions went to
	// another consumer.
	Forget(keep func(tenant, subject string) bool)
}

// Event times outside [1970, ~2116] are bogus: no gateway produces them, and the bounds keep
// nanosecond arithmetic on windows far from int64 overflow.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(0, math.MaxInt64/2)
)

// ValidTime reports whether t is an event time detectors judge. Detectors ignore events at other
// times, and the stage's watermark does not move for them.
func ValidTime(t time.Time) bool { return !t.Before(minTime) && !t.After(maxTime) }

// Stats counts what a [Detector] did since it was created.
type Stats struct {
	Principals      int    // tracked now
	Counted         uint64 // events the detector judged
	Ignored         uint64 // events it does not judge (not its kind, bogus times)
	Late            uint64 // events too old for the principal's state, not judged
	EvictedIdle     uint64 // principals forgotten by [Detector.Expire]
	EvictedCapacity uint64 // principals forgotten to bound memory
}

// findingNamespace scopes [FindingID]s; it never changes.
var findingNamespace = uuid.MustParse("7df44479-72df-45fa-a967-732f52273a73")

// FindingID is the id of the finding a detector concluded on the event with id eventID: a
// name-based UUID (RFC 9562 version 5), so that replaying the events yields the same finding id
// and every consumer downstream can deduplicate.
func FindingID(detector, eventID string) string {
	return uuid.NewSHA1(findingNamespace, []byte(detector+"\x00"+eventID)).String()
}
