// Package rate is the call-rate detector: it scores each principal's MCP request rate over a
// sliding event-time window, feeding the threat score's frequency component, and reports bursts
// as findings.
package rate

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/detectors/internal/intern"
	"github.com/mcpwatch/mcpwatch/detectors/internal/lru"
	"github.com/mcpwatch/mcpwatch/event"
)

// Name is the [event.Finding.Detector] and [detect.Signal.Detector] name of the [Rate] detector.
const Name = "rate"

// evidenceSample is how many of the latest event ids a finding or signal carries.
const evidenceSample = 20

// Rate scores each principal's MCP request rate over a sliding event-time window. It implements
// [detect.Detector].
//
// The score is 100·(rate−Baseline)/(Ceiling−Baseline), clamped to 0–100 and rounded to one
// decimal. Every request counted yields a [detect.Frequency] signal with the principal's score;
// the scorer decides what is published. A score at or above Threshold yields a finding, at most
// one per principal per Cooldown unless the score rises by [RearmRise].
//
// Memory is bounded: each principal keeps at most 2·Ceiling·Window timestamps, at most
// MaxPrincipals principals are tracked (least recently seen forgotten first), and [Rate.Expire]
// forgets principals idle for longer than both Window and Cooldown, which changes no future
// finding.
//
// A Rate is not safe for concurrent use.
type Rate struct {
	cfg              Config
	window, cooldown int64 // nanoseconds
	idle             int64 // forget a principal this long after its last event
	windowCap        int

	principals *lru.Table[key, principal]
	tenants    intern.Table // the keys' tenants, shared
	stats      detect.Stats
}

// key is a principal: its tenant and [event.PrincipalID] (the score's subject).
type key struct{ tenant, sub string }

type principal struct {
	win        window
	newest     int64
	samples    [evidenceSample]sample
	sampleNext int

	findingAt    int64 // event time of the last finding; valid when hasFinding
	findingScore float64
	hasFinding   bool
}

type sample struct {
	t  int64
	id detect.EventID
}

// New returns a Rate detector, or the config's validation error.
func New(cfg Config) (*Rate, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rate: %w", err)
	}
	return &Rate{
		cfg:        cfg,
		window:     int64(cfg.Window),
		cooldown:   int64(cfg.Cooldown),
		idle:       int64(max(cfg.Window, cfg.Cooldown)),
		windowCap:  cfg.windowCap(),
		principals: lru.New[key, principal](),
	}, nil
}

// Info names the detector and says it feeds the frequency component.
func (r *Rate) Info() detect.Info {
	return detect.Info{Name: Name, Checks: []detect.Check{{Name: Name, Component: detect.Frequency}}}
}

// Counts reports whether the rate detector counts e: MCP requests as the gateway saw them,
// whatever the policy decided (a flood of denied calls is an attack too). Spans and kernel events
// describing the same calls are not counted again.
func Counts(e *event.Event) bool {
	return e.Source == event.SourceMCP && e.MCP != nil && e.MCP.Direction == event.DirRequest
}

// Observe counts e and appends the principal's frequency signal to out, and a finding when its
// score crosses the threshold. Events that are not counted, or are older than their principal's
// window, yield nothing.
func (r *Rate) Observe(e *event.Event, out *detect.Output) {
	if !detect.ValidTime(e.Time) || !Counts(e) {
		r.stats.Ignored++
		return
	}
	t := e.Time.UnixNano()
	k := key{e.Tenant, event.PrincipalID(e.Principal)}
	ent := r.principals.Get(k)
	switch {
	case ent == nil:
		ent = r.track(k)
		ent.Value.newest = t
	case t <= ent.Value.newest-r.window:
		r.stats.Late++
		return
	default:
		r.principals.Touch(ent)
	}
	p := &ent.Value
	r.stats.Counted++
	p.newest = max(p.newest, t)
	p.win.evict(p.newest - r.window)
	p.win.insert(t)
	p.samples[p.sampleNext] = sample{t: t, id: detect.MakeEventID(e.ID)}
	p.sampleNext = (p.sampleNext + 1) % evidenceSample

	now := p.newest
	calls := p.win.len()
	perSec := float64(calls) / r.cfg.Window.Seconds()
	score := r.score(perSec)

	if score >= r.cfg.Threshold &&
		(!p.hasFinding || now-p.findingAt >= r.cooldown || score >= p.findingScore+RearmRise) {
		p.findingAt, p.findingScore, p.hasFinding = now, score, true
		out.Findings = append(out.Findings, r.finding(e, p, calls, perSec, score))
	}
	sig := detect.Signal{Detector: Name, Tenant: ent.Key.tenant, Subject: ent.Key.sub, Check: Name,
		Time: time.Unix(0, now).UTC(), Component: detect.Frequency, Value: score,
		Evidence: detect.Evidence{Feature: "rate_per_s", Observed: perSec, Baseline: r.cfg.Baseline, BaselineSource: "rule",
			WindowStart: time.Unix(0, now-r.window).UTC(), WindowEnd: time.Unix(0, now).UTC()}}
	if score > 0 {
		sig.Evidence.EventIDs = r.eventIDs(p, calls)
	}
	out.Signals = append(out.Signals, sig)
}

// Expire forgets principals whose last request is older than both Window and Cooldown before
// now, and appends for each an expired signal stamped when its window emptied.
func (r *Rate) Expire(now time.Time, out *detect.Output) {
	cut := now.UnixNano() - r.idle
	for ent := r.principals.Oldest(); ent != nil && ent.Value.newest <= cut; ent = r.principals.Oldest() {
		p := &ent.Value
		end := p.newest + r.window
		out.Signals = append(out.Signals, detect.Signal{Detector: Name, Tenant: ent.Key.tenant, Subject: ent.Key.sub,
			Check: Name, Time: time.Unix(0, end).UTC(), Component: detect.Frequency, Expired: true,
			Evidence: detect.Evidence{Feature: "rate_per_s", Baseline: r.cfg.Baseline, BaselineSource: "rule",
				WindowStart: time.Unix(0, p.newest).UTC(), WindowEnd: time.Unix(0, end).UTC()}})
		r.principals.Remove(ent)
		r.stats.EvictedIdle++
	}
}

// Stats returns counters of what the detector did.
func (r *Rate) Stats() detect.Stats {
	s := r.stats
	s.Principals = r.principals.Len()
	return s
}

func (r *Rate) score(perSec float64) float64 {
	s := 100 * (perSec - r.cfg.Baseline) / (r.cfg.Ceiling - r.cfg.Baseline)
	s = math.Round(s*10) / 10 // one decimal: stable comparisons, readable records
	return min(max(s, 0), 100)
}

// eventIDs returns the ids of the sampled requests inside p's window, oldest first.
func (r *Rate) eventIDs(p *principal, calls int) []detect.EventID {
	start := p.newest - r.window
	ids := make([]detect.EventID, 0, min(calls, evidenceSample))
	for i := range evidenceSample {
		s := p.samples[(p.sampleNext+i)%evidenceSample]
		if !s.id.IsZero() && s.t > start {
			ids = append(ids, s.id)
		}
	}
	return ids
}

func (r *Rate) finding(e *event.Event, p *principal, calls int, perSec, score float64) *event.Finding {
	end := p.newest
	start := end - r.window
	features := map[string]float64{
		"calls":      float64(calls),
		"rate_per_s": perSec,
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
		ID:          detect.FindingID(Name, e.ID),
		Time:        time.Unix(0, end).UTC(),
		Tenant:      e.Tenant,
		Principal:   e.Principal,
		Detector:    Name,
		Score:       score,
		Severity:    int(math.Round(score / 10)),
		Summary:     fmt.Sprintf("%s made %s%d calls in %s (%.1f/s, normal ≤ %g/s)", displayName(e.Principal), atLeast, calls, fmtDuration(r.cfg.Window), perSec, r.cfg.Baseline),
		WindowStart: time.Unix(0, start).UTC(),
		WindowEnd:   time.Unix(0, end).UTC(),
		Features:    features,
		EventIDs:    detect.EventIDStrings(r.eventIDs(p, calls)),
	}
}

func (r *Rate) track(k key) *lru.Entry[key, principal] {
	if r.principals.Len() >= r.cfg.MaxPrincipals {
		// The least recently seen principal loses its window. It is not retired: the scorer keeps
		// its last value until it is seen again.
		r.principals.Remove(r.principals.Oldest())
		r.stats.EvictedCapacity++
	}
	// The key's strings may refer to the record being judged: the table keeps copies.
	ent := r.principals.Add(key{r.tenants.Copy(k.tenant), strings.Clone(k.sub)})
	ent.Value = principal{win: window{cap: r.windowCap}}
	return ent
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
