// Package detectors turns normalized events into findings and threat scores.
//
// Detectors run on event time, never the wall clock: replaying a topic yields the same findings
// with the same ids, so downstream deduplication (the control topic's keys, webhook ids, ClickHouse
// replacing tables) absorbs redelivery.
package detectors

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mcpwatch/mcpwatch/event"
)

// DetectorRate is the [event.Finding.Detector] name of the [Rate] detector.
const DetectorRate = "rate"

// evidenceSample is how many of the latest event ids a finding carries.
const evidenceSample = 20

// Event times outside [1970, ~2116] are ignored as bogus; the bounds also keep the nanosecond
// arithmetic on windows far from int64 overflow.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(0, math.MaxInt64/2)
)

// Rate scores each principal's MCP request rate over a sliding event-time window.
//
// The score is 100·(rate−Baseline)/(Ceiling−Baseline), clamped to 0–100. A score at or above
// Threshold yields a finding, at most one per principal per Cooldown unless the score rises by
// [RearmRise]. Score records are emitted when the score moves by [ScoreDelta] or, for smaller
// changes, at most every ScoreEvery.
//
// Memory is bounded: each principal keeps at most 2·Ceiling·Window timestamps, at most
// MaxPrincipals principals are tracked (least recently seen forgotten first), and [Rate.Expire]
// forgets principals idle for longer than both Window and Cooldown, which changes no future
// finding.
//
// A Rate is not safe for concurrent use.
type Rate struct {
	cfg                          RateConfig
	window, cooldown, scoreEvery int64 // nanoseconds
	idle                         int64 // forget a principal this long after its last event
	windowCap                    int

	byKey map[string]*principalState
	// lru is a list of principals by last touch: lru.next is the most recent, lru.prev the least.
	lru       principalState
	watermark int64 // newest event time seen
	hasMark   bool
	stats     RateStats
}

// RateStats counts what a [Rate] did since it was created.
type RateStats struct {
	Principals      int    // tracked now
	Counted         uint64 // MCP requests counted
	Ignored         uint64 // events that are not MCP requests from the gateway
	Late            uint64 // requests older than their principal's window, not counted
	Findings        uint64
	Scores          uint64
	EvictedIdle     uint64 // principals forgotten by [Rate.Expire]
	EvictedCapacity uint64 // principals forgotten to stay within MaxPrincipals
}

type principalState struct {
	key         string
	tenant, sub string // sub is the principal part of key, the [event.Score] subject
	win         window
	newest      int64
	samples     [evidenceSample]sample
	sampleNext  int

	findingAt    int64 // event time of the last finding; valid when hasFinding
	findingScore float64
	hasFinding   bool
	scoreAt      int64 // event time of the last published score; valid when hasScore
	score        float64
	hasScore     bool

	prev, next *principalState
}

type sample struct {
	t  int64
	id string
}

// NewRate returns a Rate detector, or the config's validation error.
func NewRate(cfg RateConfig) (*Rate, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Rate{
		cfg:        cfg,
		window:     int64(cfg.Window),
		cooldown:   int64(cfg.Cooldown),
		scoreEvery: int64(cfg.ScoreEvery),
		idle:       int64(max(cfg.Window, cfg.Cooldown)),
		windowCap:  cfg.windowCap(),
		byKey:      make(map[string]*principalState),
	}
	r.lru.next, r.lru.prev = &r.lru, &r.lru
	return r, nil
}

// Counts reports whether the rate detector counts e: MCP requests as the gateway saw them,
// whatever the policy decided (a flood of denied calls is an attack too). Spans and kernel events
// describing the same calls are not counted again.
func Counts(e *event.Event) bool {
	return e.Source == event.SourceMCP && e.MCP != nil && e.MCP.Direction == event.DirRequest
}

// Observe counts e and returns a finding when the principal's score crosses the threshold (nil
// otherwise) and a score record when the published score should change (nil otherwise).
func (r *Rate) Observe(e event.Event) (*event.Finding, *event.Score) {
	if e.Time.Before(minTime) || e.Time.After(maxTime) {
		r.stats.Ignored++
		return nil, nil
	}
	t := e.Time.UnixNano()
	if !r.hasMark || t > r.watermark {
		r.watermark, r.hasMark = t, true
	}
	if !Counts(&e) {
		r.stats.Ignored++
		return nil, nil
	}
	key := event.PrincipalKey(e.Tenant, e.Principal)
	p := r.byKey[key]
	switch {
	case p == nil:
		p = r.track(key, e.Tenant)
		p.newest = t
	case t <= p.newest-r.window:
		r.stats.Late++
		return nil, nil
	default:
		r.touch(p)
	}
	r.stats.Counted++
	p.newest = max(p.newest, t)
	p.win.evict(p.newest - r.window)
	p.win.insert(t)
	p.samples[p.sampleNext] = sample{t: t, id: e.ID}
	p.sampleNext = (p.sampleNext + 1) % evidenceSample

	now := p.newest
	calls := p.win.len()
	rate := float64(calls) / r.cfg.Window.Seconds()
	score := r.score(rate)

	var f *event.Finding
	if score >= r.cfg.Threshold &&
		(!p.hasFinding || now-p.findingAt >= r.cooldown || score >= p.findingScore+RearmRise) {
		p.findingAt, p.findingScore, p.hasFinding = now, score, true
		f = r.finding(&e, p, calls, rate, score)
		r.stats.Findings++
	}
	var s *event.Score
	if d := math.Abs(score - p.score); d >= ScoreDelta ||
		(d > 0 && (!p.hasScore || now-p.scoreAt >= r.scoreEvery)) {
		p.score, p.scoreAt, p.hasScore = score, now, true
		s = &event.Score{Time: time.Unix(0, now).UTC(), Tenant: p.tenant, Subject: p.sub, Score: score,
			Components: map[string]float64{DetectorRate: score}}
		r.stats.Scores++
	}
	return f, s
}

// Expire forgets principals whose last request is older than both Window and Cooldown before the
// newest event time seen, and returns a score of 0 for each that had a published score above 0,
// stamped when its window emptied. Call it after each batch of [Rate.Observe] calls.
//
// The newest event time seen is trusted: one event stamped far in the future would expire
// principals early. Events come from mcpwatch's own gateways, whose clocks are assumed synchronised.
func (r *Rate) Expire() []event.Score {
	var out []event.Score
	cut := r.watermark - r.idle
	for p := r.lru.prev; p != &r.lru && p.newest <= cut; p = r.lru.prev {
		if p.score > 0 {
			out = append(out, event.Score{Time: time.Unix(0, p.newest+r.window).UTC(), Tenant: p.tenant,
				Subject: p.sub, Score: 0, Components: map[string]float64{DetectorRate: 0}})
			r.stats.Scores++
		}
		r.forget(p)
		r.stats.EvictedIdle++
	}
	return out
}

// Stats returns counters of what the detector did.
func (r *Rate) Stats() RateStats {
	s := r.stats
	s.Principals = len(r.byKey)
	return s
}

func (r *Rate) score(rate float64) float64 {
	s := 100 * (rate - r.cfg.Baseline) / (r.cfg.Ceiling - r.cfg.Baseline)
	s = math.Round(s*10) / 10 // one decimal: stable comparisons, readable records
	return min(max(s, 0), 100)
}

func (r *Rate) finding(e *event.Event, p *principalState, calls int, rate, score float64) *event.Finding {
	end := p.newest
	start := end - r.window
	ids := make([]string, 0, min(calls, evidenceSample))
	for i := range evidenceSample { // oldest first
		s := p.samples[(p.sampleNext+i)%evidenceSample]
		if s.id != "" && s.t > start {
			ids = append(ids, s.id)
		}
	}
	features := map[string]float64{
		"calls":      float64(calls),
		"rate_per_s": rate,
		"baseline":   r.cfg.Baseline,
		"ceiling":    r.cfg.Ceiling,
		"window_s":   r.cfg.Window.Seconds(),
	}
	atLeast := ""
	if p.win.saturated() {
		features["saturated"] = 1
		atLeast = "at least "
	}
	return &event.Finding{
		ID:          FindingID(DetectorRate, e.ID),
		Time:        time.Unix(0, end).UTC(),
		Tenant:      e.Tenant,
		Principal:   e.Principal,
		Detector:    DetectorRate,
		Score:       score,
		Severity:    int(math.Round(score / 10)),
		Summary:     fmt.Sprintf("%s made %s%d calls in %s (%.1f/s, normal ≤ %g/s)", displayName(e.Principal), atLeast, calls, fmtDuration(r.cfg.Window), rate, r.cfg.Baseline),
		WindowStart: time.Unix(0, start).UTC(),
		WindowEnd:   time.Unix(0, end).UTC(),
		Features:    features,
		EventIDs:    ids,
	}
}

func (r *Rate) track(key, tenant string) *principalState {
	if len(r.byKey) >= r.cfg.MaxPrincipals {
		// The least recently seen principal: it loses its window, and its last published score
		// stays on the scores topic until it is seen again.
		r.forget(r.lru.prev)
		r.stats.EvictedCapacity++
	}
	p := &principalState{key: key, tenant: tenant, sub: strings.TrimPrefix(key, tenant+"/"),
		win: window{cap: r.windowCap}}
	r.byKey[key] = p
	p.prev, p.next = &r.lru, r.lru.next
	p.next.prev, r.lru.next = p, p
	return p
}

func (r *Rate) touch(p *principalState) {
	if r.lru.next == p {
		return
	}
	p.prev.next, p.next.prev = p.next, p.prev
	p.prev, p.next = &r.lru, r.lru.next
	p.next.prev, r.lru.next = p, p
}

func (r *Rate) forget(p *principalState) {
	p.prev.next, p.next.prev = p.next, p.prev
	p.prev, p.next = nil, nil
	delete(r.byKey, p.key)
}

// findingNamespace scopes [FindingID]s; it never changes.
var findingNamespace = uuid.MustParse("7df44479-72df-45fa-a967-732f52273a73")

// FindingID is the id of the finding a detector concluded on the event with id eventID: a
// name-based UUID (RFC 9562 version 5), so that replaying the events yields the same finding id
// and every consumer downstream can deduplicate.
func FindingID(detector, eventID string) string {
	return uuid.NewSHA1(findingNamespace, []byte(detector+"\x00"+eventID)).String()
}

func displayName(p event.Principal) string {
	switch {
	case p.Subject != "":
		return p.Subject
	case p.ClientID != "":
		return "client " + p.ClientID
	}
	return "anonymous"
}

// fmtDuration prints 10s, 1m, 1m30s, 1h rather than Go's 1m0s and 1h0m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
